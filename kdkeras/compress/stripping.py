"""Stripping: a plain copy of a pruned or clustered model, with its effective weights.

:func:`strip` removes TF-MOT's pruning and clustering wrappers, giving each layer what the
wrapper computed with: pruned weights times their masks (:func:`masked_weights`), clustered
weights replaced by their centroids (:func:`clustered_weights`). :func:`kdkeras.compress.prune`,
:func:`kdkeras.compress.cluster` and :func:`kdkeras.compress.quantize_aware` start from it, so
they never modify or share variables with the caller's model.
"""

from __future__ import annotations

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from kdkeras.compress._tfmot import ClusterWeights, PruneLowMagnitude
from kdkeras.compress.layers import check_tf_keras_model, rebuild


def masked_weights(wrapper: PruneLowMagnitude) -> list:
    """The wrapped layer's weights with the pruning masks applied (weights * mask)."""
    masks = {id(weight): mask for weight, mask, _ in getattr(wrapper, "pruning_vars", [])}
    return [w.numpy() * masks[id(w)].numpy() if id(w) in masks else w.numpy()
            for w in wrapper.layer.weights]


def clustered_weights(wrapper: ClusterWeights) -> list:
    """The weights of the layer inside a clustering ``wrapper``, clustered values in place.

    As TF-MOT's ``strip_clustering`` does, the cluster associations are refreshed from the
    latest trained weights first (the wrapper's next forward pass would do the same); nothing
    else of the wrapper changes.
    """
    wrapper.update_clustered_weights_associations()
    weights = wrapper.layer.get_weights()
    for position, name in sorted(wrapper.position_original_weights.items()):
        weights.insert(position, np.asarray(wrapper.get_weight_from_layer(name)))
    return weights


def _unwrap(layer):
    """(plain layer to copy, its effective weights) for :func:`strip`."""
    if isinstance(layer, PruneLowMagnitude):
        return layer.layer, masked_weights(layer)
    if isinstance(layer, ClusterWeights):
        return layer.layer, clustered_weights(layer)
    return layer, layer.get_weights()


def strip(model: keras.Model) -> keras.Model:
    """Returns a plain copy of ``model``: pruning and clustering wrappers removed, zeros kept.

    Every layer is rebuilt from its config and given the effective weights: pruned weights times
    their masks (TF-MOT's own ``strip_pruning`` keeps whatever the last optimizer step wrote
    under the mask), clustered weights replaced by their centroids. The result shares no
    variable with ``model``; a model without wrappers comes back as an independent copy.
    Quantization (QAT) wrappers are not removed: export a QAT model as it is. The result
    saves to ``.keras`` / ``.h5`` without TF-MOT custom objects, and is what TFLite export and
    ``quantize_aware`` take.

    Args:
        model: tf_keras.Model. A pruned, clustered or plain tf-keras model.

    Returns:
        A new tf-keras model with the same layers as the original student.

    Raises:
        TypeError: ``model`` is not a tf-keras model.

    Example:

    >>> import kdkeras as kd
    >>> plain = kd.keras.Sequential([kd.keras.layers.Dense(1, input_shape=(2,))])
    >>> stripped = strip(plain)
    >>> stripped is plain, [l.name for l in stripped.layers] == [l.name for l in plain.layers]
    (False, True)
    """
    check_tf_keras_model(model)
    with tfmot.quantization.keras.quantize_scope():  # QAT wrappers are copied as they are
        return rebuild(model, _unwrap)
