"""Initialise a transformer student from a BERT teacher: copy where shapes allow, project
where they do not (the article's stage 3; DistilBERT, Sanh et al. 2019).

:func:`init_from_teacher` copies a :func:`kdkeras.models.build_transformer_student` student and
fills it from a keras-hub BERT backbone (or a :func:`kdkeras.models.build_bert_classifier`):

* **embeddings**: when the widths match, the teacher's token rows (the kept ids of a
  ``token_map``), position rows (plus the segment-0 row, since segment ids are always 0) and
  embedding LayerNorm are copied. When the student is narrower (or factorized), the token
  matrix ``E`` (kept rows) is projected by truncated SVD ``E ≈ U_k S_k V_kᵀ``: the student's
  rows are ``U_k S_k = E V_k``, the best rank-k approximation (Eckart-Young); positions are
  projected on the same basis ``V_d`` so the summed embeddings share one space. A factorized
  student gets ``E V_e`` and the projection kernel ``V_eᵀ V_d``.
* **blocks** (only when the widths match): student block ``i`` takes teacher block
  ``layer_map[i]`` (default :func:`uniform_layer_map`, TinyBERT's ``(i + 1) * L_teacher //
  L_student - 1``: every other layer for 6 → 3, as DistilBERT, ending on the teacher's last
  block, the same map the hints distil toward); each sub-layer (attention, its LayerNorm, FFN in / out, FFN LayerNorm) is copied
  when all its shapes match (same heads, same intermediate size) and left at its
  initialisation otherwise.
* **head**: the teacher classifier's ``output`` Dense is copied when its shape matches.

Everything not filled is listed, with the reason, in the returned :class:`InitReport`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import tf_keras as keras

from kdkeras.models.bert import bert_parts, load_backbone

logger = logging.getLogger("kdkeras.models")

#: student layer (format with the block index) -> teacher encoder sub-layer it copies.
BLOCK_LAYERS = (
    ("self_attention_{i}", "self_attention_layer"),
    ("attention_layer_norm_{i}", "self_attention_layer_norm"),
    ("intermediate_{i}", "feedforward_intermediate_dense"),
    ("ffn_output_{i}", "feedforward_output_dense"),
    ("ffn_layer_norm_{i}", "feedforward_layer_norm"),
)


@dataclasses.dataclass
class InitReport:
    """What :func:`init_from_teacher` did to each student layer.

    Attributes:
        copied: ``{student layer: teacher source}`` copied unchanged.
        projected: ``{student layer: how}`` projected (SVD) from the teacher.
        left: ``{student layer: reason}`` left at its initialisation.
    """

    copied: Dict[str, str] = dataclasses.field(default_factory=dict)
    projected: Dict[str, str] = dataclasses.field(default_factory=dict)
    left: Dict[str, str] = dataclasses.field(default_factory=dict)

    def summary(self) -> str:
        """One line per layer: ``copied|projected|left  layer  <- source or reason``."""
        lines = [f"{kind:9s} {name} <- {why}" for kind, table in
                 (("copied", self.copied), ("projected", self.projected), ("left", self.left))
                 for name, why in table.items()]
        return "\n".join(lines)


def _np(variable) -> np.ndarray:
    return np.array(variable, dtype=np.float32)


def _teacher_weights(layer) -> Dict[str, np.ndarray]:
    """``{"sublayer/weight": array}`` from a Keras 3 layer's variable paths."""
    return {"/".join(w.path.split("/")[-2:]): _np(w) for w in layer.weights}


def _student_layer(student, name: str):
    try:
        return student.get_layer(name)
    except ValueError:
        raise ValueError(
            f"The student has no layer {name!r}: init_from_teacher takes an unwrapped student "
            "from build_transformer_student (initialise before pruning or quantizing). "
            f"Its layers: {', '.join(l.name for l in student.layers)}") from None


def _check_vocabulary(student, teacher_rows: int) -> Optional[np.ndarray]:
    names = [l.name for l in student.layers]
    embedding = _student_layer(student, "token_embedding")
    if "token_map" in names:
        token_map = student.get_layer("token_map")
        if token_map.vocab_size != teacher_rows:
            raise ValueError(
                f"The student's token_map indexes a vocabulary of {token_map.vocab_size} tokens "
                f"but the teacher's has {teacher_rows}: they must share the tokenizer.")
        return np.asarray(token_map.token_map)
    if embedding.input_dim != teacher_rows:
        raise ValueError(
            f"The student's vocabulary has {embedding.input_dim} tokens and the teacher's "
            f"{teacher_rows}: token ids do not match, so embeddings cannot be copied. Build the "
            f"student with vocab_size={teacher_rows} (the teacher's tokenizer), optionally "
            "with a token_map from vocabulary_cut.")
    return None


def uniform_layer_map(student_blocks: int, teacher_blocks: int) -> Dict[int, int]:
    """TinyBERT's uniform mapping: student block ``i`` -> teacher block ``(i+1)·Lt/Ls − 1``.

    Each student block learns from the last block of its share of the teacher (the last
    student block from the last teacher block). A student deeper than its teacher maps several
    blocks to one teacher block (clipped at 0).

    The one default layer map of kdkeras: :func:`init_from_teacher` copies from these teacher
    blocks and :func:`kdkeras.distill.transformer_hints` distils toward them, so an
    initialised student starts where its hints pull it.

    >>> uniform_layer_map(2, 6)
    {0: 2, 1: 5}
    """
    for name, value in (("student_blocks", student_blocks), ("teacher_blocks", teacher_blocks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1. Received: {name}={value!r}")
    return {i: max(0, (i + 1) * teacher_blocks // student_blocks - 1) for i in range(student_blocks)}


def _check_layer_map(layer_map: Mapping[int, int], student_depth: int,
                     teacher_depth: int) -> Dict[int, int]:
    out = {}
    for s, t in dict(layer_map).items():
        if not (isinstance(s, (int, np.integer)) and 0 <= s < student_depth
                and isinstance(t, (int, np.integer)) and 0 <= t < teacher_depth):
            raise ValueError(
                f"layer_map maps student blocks 0..{student_depth - 1} to teacher blocks "
                f"0..{teacher_depth - 1}. Received: layer_map={dict(layer_map)}")
        out[int(s)] = int(t)
    return out


def _student_depth(student) -> int:
    return sum(1 for l in student.layers if l.name.startswith("self_attention_"))


def init_from_teacher(student: keras.Model, teacher, layer_map: Optional[Mapping[int, int]] = None,
                      embeddings: Optional[str] = "svd") -> Tuple[keras.Model, InitReport]:
    """A copy of ``student`` with weights taken from ``teacher`` where they fit.

    Args:
        student: tf_keras.Model. From :func:`kdkeras.models.build_transformer_student`
            (unwrapped); it is not modified.
        teacher: a Keras 3 classifier from :func:`kdkeras.models.build_bert_classifier`, a
            keras-hub ``BertBackbone``, or a preset name / folder (``str``).
        layer_map: ``{student block: teacher block}`` or None for :func:`uniform_layer_map`
            (every other layer, ending on the last, when the teacher is twice as deep).
        embeddings: ``"svd"`` (copy, or project by truncated SVD when the widths differ) or
            None to leave the embeddings at their initialisation.

    Returns:
        ``(new_student, report)``: the initialised copy and an :class:`InitReport`.

    Raises:
        ValueError: vocabularies that differ (naming both sizes), a bad ``layer_map`` or
            ``embeddings``, a student that is not a transformer student.

    Example:

    >>> import keras_hub
    >>> from kdkeras.models.transformer import build_transformer_student
    >>> bb = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=2, num_heads=2,
    ...                                    hidden_dim=16, intermediate_dim=32,
    ...                                    max_sequence_length=8)
    >>> s = build_transformer_student((8,), 2, vocab_size=50, width=8, depth=1, heads=2)
    >>> new, report = init_from_teacher(s, bb)
    >>> sorted(report.projected)
    ['position_embedding', 'token_embedding']
    """
    if embeddings not in ("svd", None):
        raise ValueError(f"embeddings must be 'svd' or None. Received: embeddings={embeddings!r}")
    if isinstance(teacher, str):
        teacher = load_backbone(teacher)
    parts = bert_parts(teacher)
    token_matrix = _np(parts["token_embedding"].embeddings)
    teacher_width = token_matrix.shape[1]
    token_map = _check_vocabulary(student, token_matrix.shape[0])
    encoders = parts["encoders"]
    depth = _student_depth(student)
    layer_map = _check_layer_map(layer_map if layer_map is not None
                                 else uniform_layer_map(depth, len(encoders)),
                                 depth, len(encoders))

    new = keras.models.clone_model(student)
    new.set_weights(student.get_weights())
    report = InitReport()
    width = int(_student_layer(new, "embeddings_layer_norm").gamma.shape[0])
    same_width = width == teacher_width
    if embeddings is None:
        for name in ("token_embedding", "embedding_projection", "position_embedding",
                     "embeddings_layer_norm"):
            if name in [l.name for l in new.layers]:
                report.left[name] = "embeddings=None"
    else:
        _init_embeddings(new, parts, token_matrix, token_map, width, report)

    for i in range(depth):
        source = layer_map.get(i)
        for fmt, sub in BLOCK_LAYERS:
            name = fmt.format(i=i)
            if source is None:
                report.left[name] = "not in layer_map"
            elif not same_width:
                report.left[name] = (f"student width {width} != teacher width {teacher_width} "
                                     "(block weights are not projected)")
            else:
                _copy_sublayer(new.get_layer(name), encoders[source], sub,
                               f"transformer_layer_{source}/{sub}", report)
    if "output" in [l.name for l in teacher.layers]:
        head, target = teacher.get_layer("output"), new.get_layer("output")
        arrays = [_np(w) for w in head.weights]
        if [a.shape for a in arrays] == [tuple(w.shape) for w in target.weights]:
            target.set_weights(arrays)
            report.copied["output"] = "teacher output"
        else:
            report.left["output"] = "shape differs from the teacher's output"
    logger.info("init_from_teacher: %d copied, %d projected, %d left\n%s", len(report.copied),
                len(report.projected), len(report.left), report.summary())
    return new, report


def _copy_sublayer(target, encoder, sub: str, label: str, report: InitReport) -> None:
    weights = _teacher_weights(encoder)
    arrays = []
    for w in target.weights:
        parts = w.name.split(":")[0].split("/")
        key = "/".join(parts[-2:]) if sub == "self_attention_layer" else f"{sub}/{parts[-1]}"
        arrays.append(weights.get(key))
    shapes = [tuple(w.shape) for w in target.weights]
    if any(a is None for a in arrays) or [a.shape for a in arrays] != shapes:
        found = [None if a is None else a.shape for a in arrays]
        report.left[target.name] = f"shapes {shapes} != teacher {label} {found}"
        return
    target.set_weights(arrays)
    report.copied[target.name] = label


def svd_basis(matrix: np.ndarray, rank: int) -> np.ndarray:
    """The top-``rank`` right singular vectors ``V_k`` ``[d, rank]`` of ``matrix [n, d]``:
    ``matrix @ V_k @ V_kᵀ`` is its best rank-``rank`` approximation."""
    _, _, vt = np.linalg.svd(matrix, full_matrices=False)
    return vt[:rank].T


def _init_embeddings(new, parts, token_matrix, token_map, width, report: InitReport) -> None:
    rows = token_matrix if token_map is None else token_matrix[token_map]
    kept = "" if token_map is None else f", rows of the {len(token_map)} kept ids"
    teacher_width = token_matrix.shape[1]
    token_layer = new.get_layer("token_embedding")
    dim = int(token_layer.output_dim)
    factorized = "embedding_projection" in [l.name for l in new.layers]
    same = width == teacher_width
    needed = max(dim if factorized else 0, 0 if same else width)
    if needed > min(rows.shape):
        for name in ("token_embedding", "embedding_projection", "position_embedding",
                     "embeddings_layer_norm"):
            report.left[name] = (f"needs an SVD of rank {needed} but the teacher's token matrix "
                                 f"{rows.shape} has rank <= {min(rows.shape)}")
        return
    basis = np.eye(teacher_width, dtype=np.float32) if same else svd_basis(rows, width)
    if factorized:
        small = svd_basis(rows, dim)
        token_layer.set_weights([rows @ small])
        projection = new.get_layer("embedding_projection")
        projection.set_weights([small.T @ basis, np.zeros(width, np.float32)])
        report.projected["token_embedding"] = f"teacher token_embedding, SVD rank {dim}{kept}"
        report.projected["embedding_projection"] = (f"V_{dim}ᵀ V_{width} of the SVD "
                                                    "(teacher basis)" if not same
                                                    else f"V_{dim}ᵀ of the SVD")
    elif same:
        token_layer.set_weights([rows])
        report.copied["token_embedding"] = f"teacher token_embedding{kept}"
    else:
        token_layer.set_weights([rows @ basis])
        report.projected["token_embedding"] = f"teacher token_embedding, SVD rank {width}{kept}"
    positions_layer = new.get_layer("position_embedding")
    teacher_positions = _np(parts["position_embedding"].position_embeddings)
    steps = positions_layer.max_length
    if steps > teacher_positions.shape[0]:
        report.left["position_embedding"] = (f"max_length {steps} > the teacher's "
                                             f"{teacher_positions.shape[0]} positions")
    else:
        segment0 = _np(parts["segment_embedding"].embeddings)[0]
        positions_layer.set_weights([(teacher_positions[:steps] + segment0) @ basis])
        how = "teacher position_embedding + segment_embedding[0]"
        if same:
            report.copied["position_embedding"] = how
        else:
            report.projected["position_embedding"] = f"{how}, on the token SVD basis V_{width}"
    norm = new.get_layer("embeddings_layer_norm")
    if same:
        norm.set_weights([_np(w) for w in parts["embeddings_layer_norm"].weights])
        report.copied["embeddings_layer_norm"] = "teacher embeddings_layer_norm"
    else:
        report.left["embeddings_layer_norm"] = (f"student width {width} != teacher width "
                                                f"{teacher_width}")
