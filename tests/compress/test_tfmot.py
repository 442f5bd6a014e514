"""The TF-MOT private API that kdkeras.compress._tfmot adapts is still where it expects it.

Each check names the TF-MOT module and attribute, so a TF-MOT upgrade that moves one fails
here with what to fix in ``kdkeras/compress/_tfmot.py``, not deep inside a pruning run.
"""

import importlib
import pathlib

import pytest
import tensorflow_model_optimization as tfmot
import tf_keras as keras

CORE = "tensorflow_model_optimization.python.core"
# (module, attribute path) of every private TF-MOT name kdkeras.compress._tfmot touches
PRIVATE_API = [
    (f"{CORE}.sparsity.keras.pruning_wrapper", "PruneLowMagnitude"),
    (f"{CORE}.sparsity.keras.prunable_layer", "PrunableLayer"),
    (f"{CORE}.sparsity.keras.prune_registry", "PruneRegistry._LAYERS_WEIGHTS_MAP"),
    (f"{CORE}.sparsity.keras.prune_registry", "PruneRegistry._RNN_LAYERS"),
    (f"{CORE}.sparsity.keras.prune_registry", "PruneRegistry.supports"),
    (f"{CORE}.clustering.keras.cluster_wrapper", "ClusterWeights"),
    (f"{CORE}.clustering.keras.clusterable_layer", "ClusterableLayer"),
    (f"{CORE}.clustering.keras.clustering_registry", "ClusteringRegistry._LAYERS_WEIGHTS_MAP"),
    (f"{CORE}.quantization.keras.quantize_wrapper", "QuantizeWrapper"),
    (f"{CORE}.quantization.keras.quantize_layer", "QuantizeLayer"),
    (f"{CORE}.quantization.keras.default_8bit.default_8bit_quantize_registry",
     "Default8BitQuantizeRegistry"),
]
FIX = "update kdkeras/compress/_tfmot.py (and this list) for TF-MOT {version}"


@pytest.mark.parametrize("module,attr", PRIVATE_API, ids=[a for _, a in PRIVATE_API])
def test_private_name_is_where_the_adapter_takes_it(module, attr):
    fix = FIX.format(version=tfmot.__version__)
    try:
        obj = importlib.import_module(module)
    except ImportError as err:
        pytest.fail(f"TF-MOT module {module} is gone ({err}): {fix}")
    path = module
    for part in attr.split("."):
        path = f"{path}.{part}"
        assert hasattr(obj, part), f"TF-MOT attribute {path} is gone: {fix}"
        obj = getattr(obj, part)


def test_adapter_imports_exactly_the_listed_modules():
    from kdkeras.compress import _tfmot

    used = {value.__name__ for value in vars(_tfmot).values()
            if type(value).__name__ == "module" and value.__name__.startswith(CORE)}
    assert used == {module for module, _ in PRIVATE_API}


def test_no_other_compress_module_touches_tfmot_private_api():
    package = pathlib.Path(__file__).parents[2] / "kdkeras" / "compress"
    offenders = [path.name for path in sorted(package.glob("*.py"))
                 if path.name != "_tfmot.py" and "tensorflow_model_optimization.python"
                 in path.read_text()]
    assert offenders == [], f"{offenders}: go through kdkeras.compress._tfmot instead"


# ----------------------------------------------------- what the adapter's names still mean

def test_pruning_names():
    from kdkeras.compress._tfmot import (
        PrunableLayer,
        PruneLowMagnitude,
        prune_registry_supports,
        prune_weights_map,
        rnn_layer_types,
    )

    assert PrunableLayer is tfmot.sparsity.keras.PrunableLayer
    weights_map = prune_weights_map()
    assert weights_map[keras.layers.Dense] == ["kernel"], \
        "PruneRegistry._LAYERS_WEIGHTS_MAP no longer maps Dense to its kernel"
    assert list(weights_map[keras.layers.MultiHeadAttention]) == [
        "_query_dense.kernel", "_key_dense.kernel", "_value_dense.kernel",
        "_output_dense.kernel"], "PruneRegistry._LAYERS_WEIGHTS_MAP changed for MultiHeadAttention"
    assert {keras.layers.LSTM, keras.layers.GRU} <= rnn_layer_types(), \
        "PruneRegistry._RNN_LAYERS no longer lists LSTM and GRU"
    unknown = type("Unknown", (keras.layers.Layer,), {})()
    assert prune_registry_supports(keras.layers.LSTM(2)), "PruneRegistry.supports(LSTM) is False"
    assert not prune_registry_supports(unknown), "PruneRegistry.supports(a custom layer) is True"

    wrapper = tfmot.sparsity.keras.prune_low_magnitude(
        keras.layers.Dense(4), pruning_schedule=tfmot.sparsity.keras.ConstantSparsity(0.5, 0))
    assert isinstance(wrapper, PruneLowMagnitude), \
        f"prune_low_magnitude returns a {type(wrapper)}, not pruning_wrapper.PruneLowMagnitude"
    wrapper.build((None, 3))
    # the wrapper internals kdkeras reads (strip, PruningTargetCheck)
    for attr in ("layer", "pruning_vars", "pruning_step", "pruning_schedule", "sparsity_m_by_n"):
        assert hasattr(wrapper, attr), f"PruneLowMagnitude has no attribute {attr!r} any more"
    [(weight, mask, threshold)] = wrapper.pruning_vars
    assert weight is wrapper.layer.kernel and tuple(mask.shape) == (3, 4), \
        "PruneLowMagnitude.pruning_vars is no longer [(weight, mask, threshold)]"


def test_clustering_names():
    from kdkeras.compress._tfmot import ClusterableLayer, ClusterWeights, cluster_weights_map

    assert ClusterableLayer is tfmot.clustering.keras.ClusterableLayer
    assert cluster_weights_map()[keras.layers.Conv2D] == ["kernel"], \
        "ClusteringRegistry._LAYERS_WEIGHTS_MAP no longer maps Conv2D to its kernel"
    wrapper = tfmot.clustering.keras.cluster_weights(
        keras.layers.Dense(4), number_of_clusters=2,
        cluster_centroids_init=tfmot.clustering.keras.CentroidInitialization.LINEAR)
    assert isinstance(wrapper, ClusterWeights), \
        f"cluster_weights returns a {type(wrapper)}, not cluster_wrapper.ClusterWeights"
    wrapper.build((None, 3))
    # the wrapper internals kdkeras reads (stripping.clustered_weights)
    for attr in ("layer", "update_clustered_weights_associations", "position_original_weights",
                 "get_weight_from_layer"):
        assert hasattr(wrapper, attr), f"ClusterWeights has no attribute {attr!r} any more"


def test_quantization_names():
    from kdkeras.compress._tfmot import QuantizeLayer, QuantizeWrapper, default_8bit_registry

    assert QuantizeWrapper is tfmot.quantization.keras.QuantizeWrapper
    inputs = keras.Input((3,))
    qat = tfmot.quantization.keras.quantize_model(
        keras.Model(inputs, keras.layers.Dense(2)(inputs)))
    kinds = [type(layer) for layer in qat.layers]
    assert QuantizeLayer in kinds, f"quantize_model adds no quantize_layer.QuantizeLayer: {kinds}"
    assert any(issubclass(k, QuantizeWrapper) for k in kinds), \
        f"quantize_model adds no quantize_wrapper.QuantizeWrapper: {kinds}"
    registry = default_8bit_registry()
    assert registry.supports(keras.layers.Dense(2)), \
        "Default8BitQuantizeRegistry().supports(Dense) is no longer True"
    assert not registry.supports(keras.layers.LayerNormalization()), \
        "Default8BitQuantizeRegistry().supports(LayerNormalization) is no longer False"
