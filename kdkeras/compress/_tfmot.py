"""Adapter: the one place kdkeras touches TF-MOT's private API.

TF-MOT's public API (``tfmot.sparsity.keras``, ``tfmot.clustering.keras``,
``tfmot.quantization.keras``) has no name for its pruning and clustering wrapper classes, for
the QAT input layer, or for the tables saying which weights of a layer are pruned or
clustered. kdkeras needs them to prune layer by layer, strip, report and recognise wrapped
models, so this module takes them from ``tensorflow_model_optimization.python.core...`` (and
the registries' underscore attributes) and exposes them under plain names. Every other compress
module imports these names from here and otherwise uses the public ``tfmot.*`` API only.
``tests/compress/test_tfmot.py`` fails, naming the attribute, when a TF-MOT upgrade moves one.

>>> import tf_keras as keras
>>> prune_weights_map()[keras.layers.Dense], cluster_weights_map()[keras.layers.Dense]
(['kernel'], ['kernel'])
"""

from __future__ import annotations

import types
from typing import Any, Mapping, Sequence

from tensorflow_model_optimization.python.core.clustering.keras import (
    cluster_wrapper,
    clusterable_layer,
    clustering_registry,
)
from tensorflow_model_optimization.python.core.quantization.keras import (
    quantize_layer,
    quantize_wrapper,
)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
    default_8bit_quantize_registry,
)
from tensorflow_model_optimization.python.core.sparsity.keras import (
    prunable_layer,
    prune_registry,
    pruning_wrapper,
)

# ------------------------------------------------------------------------------- pruning

#: The wrapper ``prune_low_magnitude`` puts around a layer (``.layer``, ``.pruning_vars``).
PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude
#: The contract of a custom layer that names its own prunable weights.
PrunableLayer = prunable_layer.PrunableLayer


def prune_weights_map() -> Mapping[type, Sequence[str]]:
    """Layer class -> names of the weights TF-MOT prunes in it (read-only view).

    Names may be dotted (``"_query_dense.kernel"`` for ``MultiHeadAttention``).
    """
    return types.MappingProxyType(
        prune_registry.PruneRegistry._LAYERS_WEIGHTS_MAP)  # pylint: disable=protected-access


def rnn_layer_types() -> frozenset:
    """The recurrent layer classes TF-MOT prunes (their cells' kernels)."""
    return frozenset(prune_registry.PruneRegistry._RNN_LAYERS)  # pylint: disable=protected-access


def prune_registry_supports(layer) -> bool:
    """True when TF-MOT's prune registry supports ``layer`` (for an RNN: all of its cells)."""
    return bool(prune_registry.PruneRegistry.supports(layer))


# ---------------------------------------------------------------------------- clustering

#: The wrapper ``cluster_weights`` puts around a layer.
ClusterWeights = cluster_wrapper.ClusterWeights
#: The contract of a custom layer that names its own clusterable weights.
ClusterableLayer = clusterable_layer.ClusterableLayer


def cluster_weights_map() -> Mapping[type, Sequence[str]]:
    """Layer class -> names of the weights TF-MOT clusters in it (read-only view)."""
    registry = clustering_registry.ClusteringRegistry
    return types.MappingProxyType(registry._LAYERS_WEIGHTS_MAP)  # pylint: disable=protected-access


# -------------------------------------------------------------------------- quantization

#: The QAT wrapper around a quantized layer (``QuantizeWrapperV2`` is a subclass).
QuantizeWrapper = quantize_wrapper.QuantizeWrapper
#: The layer QAT inserts to quantize a model's inputs.
QuantizeLayer = quantize_layer.QuantizeLayer


def default_8bit_registry() -> Any:
    """A new ``Default8BitQuantizeRegistry``: which layers plain 8-bit QAT supports."""
    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()
