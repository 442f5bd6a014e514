"""Text students on phones: the three-input layout ``ids``, ``mask``, ``segment_ids``.

A kdkeras text student takes ONE int32 array of WordPiece ids ``[batch, T]`` (``[CLS] pieces
[SEP]`` then 0 padding) and builds its padding mask inside the graph. Android text runtimes
(TFLite Support ``BertNLClassifier``, MediaPipe ``TextClassifier``) call a BERT-style model with
three int32 tensors instead. At export time :func:`text_phone_model` wraps the trained student
into that layout, sharing its weights:

* ``ids`` ``[batch, T]`` int32: token ids; ``mask`` ``[batch, T]`` int32: 1 for real tokens,
  0 for padding; ``segment_ids`` ``[batch, T]`` int32: sentence A/B ids.
* The student runs on ``ids * mask``: a position the app masks becomes padding id 0, which the
  student masks itself, so the app's mask is honoured exactly.
* ``segment_ids`` is accepted and ignored: kdkeras students classify single sentences (all
  segment ids 0, as in training). It stays an input of the file so runtimes find all three.

When is a model a text student? :func:`text_layout`: a tf-keras model with a single integer
input of rank 2 and a fixed length ``T`` (``"ids"``; wrapped), or a model whose inputs are
already named ``ids``, ``mask``, ``segment_ids`` (``"phone"``; converted as it is).
``kdkeras.export.convert(..., text_inputs=None)`` wraps such models automatically;
``text_inputs=False`` keeps the single ``ids`` input, ``text_inputs=True`` insists (an error
for a model that is not a text student).

Names inside the file: the converter names input tensors ``serving_default_ids:0`` etc. and
orders them as it likes; :func:`finalize_text_file` renames them to exactly ``ids``, ``mask``,
``segment_ids`` and puts them in that order (index 0, 1, 2, BertNLClassifier's default). The
signature ``serving_default`` has the input keys ``ids``, ``mask``, ``segment_ids`` and the
output key ``output``. On Android: ``interpreter.runSignature({"ids": ..., "mask": ...,
"segment_ids": ...}, outputs)`` or ``interpreter.getInputIndex("ids")``.

Example:

>>> import numpy as np, kdkeras as kd
>>> ids = kd.keras.Input((6,), dtype="int32")
>>> x = kd.keras.layers.GlobalAveragePooling1D()(kd.keras.layers.Embedding(20, 4)(ids))
>>> student = kd.keras.Model(ids, kd.keras.layers.Dense(2, name="output")(x))
>>> text_layout(student)
'ids'
>>> phone = text_phone_model(student)
>>> phone.input_names
['ids', 'mask', 'segment_ids']
>>> sorted(text_feeds(np.array([[101, 7, 102, 0, 0, 0]])))
['ids', 'mask', 'segment_ids']
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from kdkeras._keras_kind import is_tf_keras_model

TEXT_INPUTS = ("ids", "mask", "segment_ids")
"""The input names (signature keys and tensor names) of a text file, in file order."""

_PREFIX = "serving_default_"


def _int_dtype(tensor: Any) -> bool:
    dtype = getattr(tensor, "dtype", None)
    return bool(getattr(dtype, "is_integer", False)) or str(dtype).startswith(("int", "uint"))


def text_layout(model: Any) -> Optional[str]:
    """``"ids"`` for a text student (one integer input ``[batch, T]``, ``T`` fixed), ``"phone"``
    for a model whose inputs are named ``ids``, ``mask``, ``segment_ids``, else None.

    Only tf-keras models are recognised (a Keras 3 model, e.g. a keras-hub teacher, is
    converted with the inputs it has).
    """
    if not is_tf_keras_model(model):
        return None
    inputs = list(getattr(model, "inputs", None) or [])
    names = [getattr(t, "name", "").split(":")[0] for t in inputs]
    if len(inputs) == 3 and sorted(names) == sorted(TEXT_INPUTS):
        return "phone"
    if len(inputs) == 1 and _int_dtype(inputs[0]):
        shape = tuple(inputs[0].shape)
        if len(shape) == 2 and shape[1] is not None:
            return "ids"
    return None


def resolve_text_inputs(model: Any, text_inputs: Optional[bool]) -> Optional[str]:
    """The text layout to export ``model`` with: None (not text), ``"ids"`` or ``"phone"``.

    Args:
        model: the model to convert.
        text_inputs: None (detect, see :func:`text_layout`), True (must be a text student) or
            False (export the model's own inputs).

    Raises:
        ValueError: ``text_inputs=True`` for a model that is not a text student.
    """
    if text_inputs is not None and not isinstance(text_inputs, bool):
        raise ValueError(f"text_inputs must be None, True or False. Received: "
                         f"text_inputs={text_inputs!r}")
    if text_inputs is False:
        return None
    layout = text_layout(model)
    if text_inputs and layout is None:
        inputs = [(getattr(t, "name", "?"), tuple(t.shape), getattr(t.dtype, "name", t.dtype))
                  for t in (getattr(model, "inputs", None) or [])]
        raise ValueError(
            "text_inputs=True needs a tf-keras text student: one integer input of shape "
            f"[batch, T] with T fixed (or inputs named {list(TEXT_INPUTS)}). Received: model "
            f"{getattr(model, 'name', type(model).__name__)!r} with inputs {inputs}. Pass "
            "text_inputs=None to detect it, or build the student on int32 token ids.")
    return layout


def text_phone_model(student: Any, *, batch_size: Optional[int] = None) -> Any:
    """The student in the phone layout: int32 inputs ``ids``, ``mask``, ``segment_ids``.

    Args:
        student: tf_keras.Model. A text student taking int32 ids ``[batch, T]``; its weights
            are shared, not copied (the wrapper calls it as a layer).
        batch_size: None (any batch; the file's default shape is ``[1, T]``) or 1 (a file
            whose batch axis is fixed at 1).

    Returns:
        A tf-keras model computing ``student(ids * mask)`` (``segment_ids`` ignored) whose
        output layer is named ``output``.

    Raises:
        ValueError: ``student`` is not a text student, or a bad ``batch_size``.
    """
    import tf_keras as keras

    if text_layout(student) != "ids":
        resolve_text_inputs(student, True)  # raises with the model's inputs named
        raise ValueError(f"The model {student.name!r} is already in the phone layout "
                         f"{list(TEXT_INPUTS)}: convert it as it is.")
    if batch_size is not None and batch_size != 1:
        raise ValueError(f"batch_size must be None or 1. Received: batch_size={batch_size!r}")
    length = int(student.inputs[0].shape[1])
    inputs = [keras.Input((length,), batch_size=batch_size, dtype="int32", name=n)
              for n in TEXT_INPUTS]
    masked = keras.layers.Lambda(_masked_ids, name="masked_ids")(inputs)
    ids_dtype = student.inputs[0].dtype
    if ids_dtype != masked.dtype:
        masked = keras.layers.Lambda(lambda t: keras.backend.cast(t, ids_dtype),
                                     name="ids_cast")(masked)
    out = student(masked)
    if isinstance(out, (list, tuple)):
        out = out[0]
    out = keras.layers.Activation("linear", name="output")(out)
    return keras.Model(inputs, out, name=f"{student.name}_phone")


def _masked_ids(tensors):
    """``ids * mask``; ``segment_ids`` is ignored (single-segment students)."""
    ids, mask, _ = tensors
    return ids * mask


def text_feeds(ids: np.ndarray) -> Dict[str, np.ndarray]:
    """The three phone inputs for an ids array ``[N, T]``: ``mask = ids != 0``,
    ``segment_ids = 0``, all int32."""
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.dtype.kind not in "iu":
        raise ValueError(
            f"A text model is fed int token ids of shape [N, T]. Received: array of shape "
            f"{ids.shape}, dtype {ids.dtype}. Pass the ids array (e.g. data.x_test).")
    ids = ids.astype(np.int32)
    return {"ids": ids, "mask": (ids != 0).astype(np.int32), "segment_ids": np.zeros_like(ids)}


def text_representative_dataset(rep: Callable[[], Any]) -> Callable[[], Any]:
    """Calibration batches ``[ids]`` (the ``tf.lite`` convention) as dicts keyed by signature.

    The converter matches a *list* to its own input order (``ids``, ``segment_ids``,
    ``mask`` here, not the Keras order): measured, a list calibrates the mask's ranges on the
    segment ids and costs a toy model half its accuracy. Dicts are matched by name.
    """
    def gen():
        for batch in rep():
            if isinstance(batch, dict):
                yield batch
            else:
                yield text_feeds(np.asarray(batch[0]))

    return gen


def text_input_details(details: List[Dict[str, Any]]) -> Optional[List[Dict[str, Any]]]:
    """The interpreter's input details in the order ``ids``, ``mask``, ``segment_ids`` when the
    file is a text file (names exact or ``serving_default_<name>:0``), else None."""
    by_name = {}
    for d in details:
        name = d["name"].split(":")[0]
        by_name[name[len(_PREFIX):] if name.startswith(_PREFIX) else name] = d
    if len(details) != 3 or sorted(by_name) != sorted(TEXT_INPUTS):
        return None
    return [by_name[n] for n in TEXT_INPUTS]


def _rename(buf: bytearray, tensor: Any, new: str) -> None:
    """Overwrites a tensor's name in place with the shorter ``new`` (same string slot)."""
    tab = tensor._tab
    field = tab.Offset(10)  # Tensor.name (vtable slot 3), as schema.Tensor.Name reads it
    if not field:
        return
    start = field + tab.Pos
    at = start + struct.unpack_from("<I", buf, start)[0]
    old = struct.unpack_from("<I", buf, at)[0]
    data = new.encode()
    if len(data) < old and at + 4 + old < len(buf):
        struct.pack_into("<I", buf, at, len(data))
        buf[at + 4 : at + 5 + old] = data + b"\0" * (old + 1 - len(data))


def _file_names(data: bytes) -> Optional[Dict[str, Any]]:
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAsModel(data, 0).Subgraphs(0)
    return {"inputs": [graph.Tensors(graph.Inputs(j)).Name().decode()
                       for j in range(graph.InputsLength())],
            "outputs": [graph.Tensors(graph.Outputs(j)).Name().decode()
                        for j in range(graph.OutputsLength())]}


def finalize_text_file(data: bytes) -> bytes:
    """Renames the input tensors of a converted text file to exactly ``ids``, ``mask``,
    ``segment_ids`` (and a single output to ``output``) and orders the subgraph inputs that
    way; the signature keys already are these names.

    The flatbuffer is patched in place: the new names are shorter than
    ``serving_default_<name>:0`` (a string's length prefix is rewritten) and the input vector
    is permuted; nothing moves. The result is read back: a file whose inputs are not
    recognised, or whose patch does not read back as intended, is returned unchanged.
    """
    from ai_edge_litert import schema_py_generated as schema

    buf = bytearray(data)
    graph = schema.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    names = {}
    for j in range(graph.InputsLength()):
        name = graph.Tensors(graph.Inputs(j)).Name().decode().split(":")[0]
        names[name[len(_PREFIX):] if name.startswith(_PREFIX) else name] = graph.Inputs(j)
    if sorted(names) != sorted(TEXT_INPUTS):
        return data
    for short, index in names.items():
        _rename(buf, graph.Tensors(index), short)
    if graph.OutputsLength() == 1:
        _rename(buf, graph.Tensors(graph.Outputs(0)), "output")
    vec = graph._tab.Vector(graph._tab.Offset(6))  # SubGraph.inputs, as SubGraph.Inputs reads
    for j, short in enumerate(TEXT_INPUTS):
        struct.pack_into("<i", buf, vec + 4 * j, names[short])
    patched = bytes(buf)
    try:
        ok = _file_names(patched)["inputs"] == list(TEXT_INPUTS)
    except Exception:  # noqa: BLE001 - an unreadable patch is refused below
        ok = False
    return patched if ok else data


def embedding_rows(data: bytes) -> Optional[int]:
    """Rows of the largest table a ``GATHER`` / ``EMBEDDING_LOOKUP`` op reads in a TFLite
    flatbuffer: the token-id range the file accepts (its vocabulary size), None if none."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    wanted = {schema.BuiltinOperator.GATHER, schema.BuiltinOperator.EMBEDDING_LOOKUP}
    codes = [max(model.OperatorCodes(i).BuiltinCode(),
                 model.OperatorCodes(i).DeprecatedBuiltinCode())
             for i in range(model.OperatorCodesLength())]
    rows = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            if codes[op.OpcodeIndex()] in wanted:
                table = graph.Tensors(op.Inputs(0 if codes[op.OpcodeIndex()] ==
                                                schema.BuiltinOperator.GATHER else 1))
                if table.ShapeLength():
                    rows.append(int(table.Shape(0)))
    return max(rows) if rows else None



def check_vocabulary_tokens(vocabulary: Any) -> list:
    """``vocabulary`` as a list, or a ValueError: it must be a non-empty list of non-empty
    one-line strings (``vocab.txt`` holds one per line; index = token id)."""
    if isinstance(vocabulary, str) or not isinstance(vocabulary, (list, tuple)) or not vocabulary:
        raise ValueError(f"vocabulary must be a non-empty list of tokens (index = token id). "
                         f"Received: {type(vocabulary).__name__}.")
    bad = [(i, t) for i, t in enumerate(vocabulary)
           if not isinstance(t, str) or not t or "\n" in t or "\r" in t][:3]
    if bad:
        raise ValueError("Every vocabulary token must be a non-empty one-line str (vocab.txt "
                         f"has one per line). Received: (id, token) {bad}.")
    return list(vocabulary)

def check_text_bundle(data: bytes, text: bool, vocabulary: Any, tokenizer: Any,
                      normalization: Any = None) -> Optional[Dict[str, Any]]:
    """Checks the text arguments of an Android bundle; returns its ``tokenizer`` section and
    the tokens of its ``vocab.txt``.

    A word-level vocabulary (:func:`kdkeras.data.build_vocabulary`: ``""`` at id 0, ``[UNK]``
    at 1) needs no tokenizer: it is described by :func:`kdkeras.data.text.describe_words` and
    its padding token written ``[PAD]``.

    Args:
        data: bytes. The ``.tflite`` file.
        text: bool. Whether the file has the text inputs ``ids``, ``mask``, ``segment_ids``.
        vocabulary: list of str or None. One token per id.
        tokenizer: dict or None. The tokenizer description (``SplitData.tokenizer``).
        normalization: must be None (or the identity) for a text model.

    Returns:
        ``(tokenizer, tokens)``: the tokenizer dict with ``vocabulary_file``,
        ``vocabulary_size`` and ``max_length`` filled in, and the vocabulary to write; or
        ``(None, None)`` for a model that is not a text model.

    Raises:
        ValueError: vocabulary/tokenizer missing for a text model or given for another, a
            token that is empty or spans lines, a ``vocabulary_size`` or ``max_length`` that
            differs from the vocabulary / file, a vocabulary smaller than the file's embedding
            table, normalization for a text model.
    """
    if not text:
        if vocabulary is not None or tokenizer is not None:
            raise ValueError(
                "vocabulary and tokenizer describe a text model's inputs, but this model has "
                f"no text inputs {list(TEXT_INPUTS)}. Received: vocabulary "
                f"{'given' if vocabulary is not None else 'None'}, tokenizer={tokenizer!r}. "
                "Leave them out, or export the text student (int32 ids [batch, T]).")
        return None, None
    if (tokenizer is None and isinstance(vocabulary, (list, tuple)) and len(vocabulary) > 2
            and list(vocabulary[:2]) == ["", "[UNK]"]):  # a word-level SplitData.vocabulary
        from kdkeras.data.text import describe_words

        graph_length = _input_length(data)
        tokenizer = describe_words(graph_length, len(vocabulary))
    if tokenizer is not None and tokenizer.get("type") == "word" and vocabulary \
            and vocabulary[0] == "":
        vocabulary = ["[PAD]"] + list(vocabulary[1:])  # vocab.txt: one non-empty token per line
    if vocabulary is None or tokenizer is None:
        raise ValueError(
            "A text model's bundle needs vocabulary= (the WordPiece tokens, index = id) and "
            "tokenizer= (e.g. data.tokenizer: {'type': 'wordpiece', 'lowercase': True, "
            "'max_length': T, 'cls_id': 101, 'sep_id': 102, 'pad_id': 0, 'unk_id': 100, "
            "'vocabulary_size': 30522}) so the app tokenises as training did. Received: "
            f"vocabulary {'given' if vocabulary is not None else 'None'}, tokenizer={tokenizer!r}.")
    if normalization is not None and normalization != {"mean": 0, "std": 1}:
        raise ValueError(f"A text model takes token ids: no normalization applies. Received: "
                         f"normalization={normalization!r}. Leave it out.")
    check_vocabulary_tokens(vocabulary)
    if not isinstance(tokenizer, dict):
        raise ValueError(f"tokenizer must be a dict. Received: tokenizer={tokenizer!r}.")
    size = tokenizer.get("vocabulary_size", len(vocabulary))
    if size != len(vocabulary):
        raise ValueError(
            f"The vocabulary has {len(vocabulary)} tokens but tokenizer['vocabulary_size'] is "
            f"{size}. Pass the vocabulary the tokenizer was built with.")
    rows = embedding_rows(data)
    if rows is not None and len(vocabulary) < rows:
        raise ValueError(
            f"The vocabulary has {len(vocabulary)} tokens but the model's embedding takes "
            f"{rows} token ids. Pass the full vocabulary the student was trained with.")
    length = _input_length(data)
    if tokenizer.get("max_length", length) != length:
        raise ValueError(
            f"tokenizer['max_length'] is {tokenizer['max_length']} but the model takes "
            f"sequences of {length} tokens. Pass the tokenizer the student was trained with.")
    return dict(tokenizer, vocabulary_size=len(vocabulary), max_length=length,
                vocabulary_file="vocab.txt"), list(vocabulary)


def _input_length(data: bytes) -> int:
    """The sequence length ``T`` of a text file's first input ``[batch, T]``."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.Model.GetRootAsModel(data, 0).Subgraphs(0)
    return int(graph.Tensors(graph.Inputs(0)).Shape(1))


__all__ = ["TEXT_INPUTS", "check_text_bundle", "text_layout", "resolve_text_inputs", "text_phone_model",
           "text_feeds", "text_representative_dataset", "text_input_details",
           "finalize_text_file", "embedding_rows"]
