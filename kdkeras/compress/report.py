"""Sparsity report: per-layer and total parameters, nonzeros and sparsity of a student.

Works on plain, pruned (wrapped), stripped, clustered and QAT models. For a pruned model the
effective weights (weights times masks) are counted, i.e. what :func:`kdkeras.compress.strip`
would export. Two sparsities are reported: over all of a layer's parameters (biases and
normalization scales included) and over its *prunable* tensors only (the kernels that pruning
acts on), which is the one a ``target_sparsity`` refers to.

Example:

>>> import numpy as np, kdkeras as kd
>>> inputs = kd.keras.Input((4,))
>>> model = kd.keras.Model(inputs, kd.keras.layers.Dense(2, name="d")(inputs))
>>> model.layers[1].set_weights([np.array([[1., 0], [0, 0], [0, 2], [0, 0]]), np.zeros(2)])
>>> report = sparsity_report(model)
>>> report.total_params, report.total_nonzeros, report.sparsity
(10, 2, 0.8)
>>> report.layers[0].prunable_sparsity
0.75
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List

import numpy as np
import tf_keras as keras

from kdkeras.compress._tfmot import QuantizeLayer, QuantizeWrapper
from kdkeras.compress.callbacks import has_pruning_wrappers
from kdkeras.compress.clustering import has_clustering_wrappers
from kdkeras.compress.layers import check_tf_keras_model, walk_layers
from kdkeras.compress.pruning import prunable_weight_names, prunable_weights
from kdkeras.compress.stripping import strip


def _ratio(zeros: int, total: int) -> float:
    return float(zeros) / total if total else 0.0


@dataclasses.dataclass(frozen=True)
class LayerSparsity:
    """One row of a :class:`SparsityReport`.

    Attributes:
        name: str. Layer name (of the unwrapped layer).
        kind: str. Layer class name.
        params: int. All parameters of the layer.
        nonzeros: int. Parameters that are not zero.
        prunable_params: int. Parameters in the tensors pruning acts on (kernels).
        prunable_nonzeros: int. Nonzeros among them.
    """

    name: str
    kind: str
    params: int
    nonzeros: int
    prunable_params: int
    prunable_nonzeros: int

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all parameters."""
        return _ratio(self.params - self.nonzeros, self.params)

    @property
    def prunable_sparsity(self) -> float:
        """Fraction of zeros over the prunable tensors (0.0 when there are none)."""
        return _ratio(self.prunable_params - self.prunable_nonzeros, self.prunable_params)

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict, sparsities included."""
        row = dataclasses.asdict(self)
        row.update(sparsity=self.sparsity, prunable_sparsity=self.prunable_sparsity)
        return row


@dataclasses.dataclass(frozen=True)
class SparsityReport:
    """Per-layer rows (layers holding parameters) and model totals.

    Attributes:
        model_name: str. Name of the reported model.
        layers: list of LayerSparsity. One row per layer with parameters, in model order.
    """

    model_name: str
    layers: List[LayerSparsity]

    @property
    def total_params(self) -> int:
        return sum(row.params for row in self.layers)

    @property
    def total_nonzeros(self) -> int:
        return sum(row.nonzeros for row in self.layers)

    @property
    def sparsity(self) -> float:
        """Fraction of zeros over all parameters of the model."""
        return _ratio(self.total_params - self.total_nonzeros, self.total_params)

    @property
    def prunable_params(self) -> int:
        return sum(row.prunable_params for row in self.layers)

    @property
    def prunable_nonzeros(self) -> int:
        return sum(row.prunable_nonzeros for row in self.layers)

    @property
    def prunable_sparsity(self) -> float:
        """Fraction of zeros over all prunable tensors of the model."""
        return _ratio(self.prunable_params - self.prunable_nonzeros, self.prunable_params)

    def layer(self, name: str) -> LayerSparsity:
        """The row of layer ``name``.

        Raises:
            KeyError: naming the unknown layer and the known ones.
        """
        for row in self.layers:
            if row.name == name:
                return row
        raise KeyError(f"No layer {name!r} in the report. Known: "
                       f"{', '.join(r.name for r in self.layers)}")

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-ready dict: ``model``, ``layers`` rows and totals."""
        return {
            "model": self.model_name,
            "layers": [row.to_dict() for row in self.layers],
            "total_params": self.total_params,
            "total_nonzeros": self.total_nonzeros,
            "sparsity": self.sparsity,
            "prunable_params": self.prunable_params,
            "prunable_nonzeros": self.prunable_nonzeros,
            "prunable_sparsity": self.prunable_sparsity,
        }

    def to_markdown(self) -> str:
        """The report as a Markdown table."""
        head = ("| layer | type | params | nonzeros | sparsity | prunable sparsity |\n"
                "|---|---|---:|---:|---:|---:|")
        rows = [f"| {r.name} | {r.kind} | {r.params:,} | {r.nonzeros:,} | {r.sparsity:.1%} | "
                + (f"{r.prunable_sparsity:.1%} |" if r.prunable_params else "- |")
                for r in self.layers]
        total = (f"| **total** | | {self.total_params:,} | {self.total_nonzeros:,} | "
                 f"{self.sparsity:.1%} | {self.prunable_sparsity:.1%} |")
        return "\n".join([head, *rows, total])

    def __str__(self) -> str:
        width = max([len("total")] + [len(r.name) for r in self.layers])
        kind_w = max([4] + [len(r.kind) for r in self.layers])
        lines = [f"{'layer':<{width}}  {'type':<{kind_w}}  {'params':>10}  {'nonzeros':>10}  "
                 f"{'sparsity':>8}  {'prunable':>8}"]
        for r in self.layers:
            prunable = f"{r.prunable_sparsity:>8.1%}" if r.prunable_params else f"{'-':>8}"
            lines.append(f"{r.name:<{width}}  {r.kind:<{kind_w}}  {r.params:>10,}  "
                         f"{r.nonzeros:>10,}  {r.sparsity:>8.1%}  {prunable}")
        lines.append(f"{'total':<{width}}  {'':<{kind_w}}  {self.total_params:>10,}  "
                     f"{self.total_nonzeros:>10,}  {self.sparsity:>8.1%}  "
                     f"{self.prunable_sparsity:>8.1%}")
        return "\n".join(lines)


def _layer_weights(layer):
    """(the layer doing the work, its own weights, the ids of its prunable ones).

    A QAT wrapper moves the wrapped layer's kernel into its own weights (next to quantizer
    min/max variables): those are picked by the wrapped layer's name prefix.
    """
    if not isinstance(layer, QuantizeWrapper):
        return layer, layer.weights, {id(w) for w in prunable_weights(layer)}
    inner = layer.layer
    own = [w for w in layer.weights if not _is_quantizer_variable(w)]
    names = {n.split(".")[-1] for n in prunable_weight_names(inner)}
    prunable = {id(w) for w in own if _short_name(w) in names}
    return inner, own, prunable


def _short_name(weight) -> str:
    return weight.name.rsplit("/", 1)[-1].split(":")[0]


def _is_quantizer_variable(weight) -> bool:
    """TF-MOT's bookkeeping in a QAT wrapper: ``optimizer_step`` and the ``*_min``/``*_max``
    ranges. Matched by name, not prefix: a model reloaded from .h5 names its kernel
    ``quant_<layer>/kernel`` instead of ``<layer>/kernel``."""
    name = _short_name(weight)
    return name == "optimizer_step" or name.endswith(("_min", "_max"))


def sparsity_report(model: keras.Model) -> SparsityReport:
    """Counts parameters, nonzeros and sparsity per layer and in total.

    Args:
        model: tf_keras.Model. Plain, pruned, clustered, stripped or QAT tf-keras model.

    Returns:
        A :class:`SparsityReport` (``.layers`` rows, ``.total_params``, ``.total_nonzeros``,
        ``.sparsity``, ``.prunable_sparsity``, ``to_dict()``, ``to_markdown()``, a table as
        ``str``).

    Raises:
        TypeError: ``model`` is not a tf-keras model.
    """
    check_tf_keras_model(model)
    view = strip(model) if (has_pruning_wrappers(model) or has_clustering_wrappers(model)) \
        else model
    rows = []
    for layer in walk_layers(view):
        if isinstance(layer, (keras.Model, QuantizeLayer)):
            continue
        inner, weights, prunable_ids = _layer_weights(layer)
        if not weights:
            continue
        params = nonzeros = p_params = p_nonzeros = 0
        for weight in weights:
            value = np.asarray(weight.numpy())
            size, nz = int(value.size), int(np.count_nonzero(value))
            params += size
            nonzeros += nz
            if id(weight) in prunable_ids:
                p_params += size
                p_nonzeros += nz
        rows.append(LayerSparsity(name=inner.name, kind=type(inner).__name__, params=params,
                                  nonzeros=nonzeros, prunable_params=p_params,
                                  prunable_nonzeros=p_nonzeros))
    return SparsityReport(model_name=model.name, layers=rows)
