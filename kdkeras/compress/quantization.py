"""Quantization-aware training (QAT) models for tf-keras students, with TF-MOT.

:func:`quantize_aware` returns a model with fake-quantization (int8 weights and activations)
inserted, to be fine-tuned with :class:`kdkeras.Distiller` and then converted to an int8 TFLite
model. On a model TF-MOT supports whole it is ``tfmot.quantization.keras.quantize_model``; on a
student it cannot take whole (``LayerNormalization``, ``MultiHeadAttention``, residual
``TFOpLambda`` adds) only the supported layers are annotated and the others stay float, which
is logged as a warning and can be listed afterwards with :func:`float_layers`.

Collaborative optimization (TF-MOT):

* ``preserve_sparsity=True``: prune-preserving QAT (PQAT), the zeros of a pruned student stay
  zero (``Default8BitPrunePreserveQuantizeScheme``).
* ``preserve_clusters=True``: cluster-preserving QAT (CQAT), the clustered weights keep their
  number of distinct values (``Default8BitClusterPreserveQuantizeScheme``); together with
  ``preserve_sparsity=True`` it is PCQAT.

Example:

>>> import kdkeras as kd
>>> inputs = kd.keras.Input((8,))
>>> student = kd.keras.Model(inputs, kd.keras.layers.Dense(4)(
...     kd.keras.layers.Dense(16, activation="relu")(inputs)))
>>> qat = quantize_aware(student)
>>> float_layers(qat)
[]

References:
    Jacob et al., "Quantization and Training of Neural Networks for Efficient
    Integer-Arithmetic-Only Inference", CVPR 2018.
"""

from __future__ import annotations

import logging
from typing import List

import numpy as np
import tensorflow_model_optimization as tfmot
import tf_keras as keras

from kdkeras.compress._tfmot import QuantizeLayer, QuantizeWrapper, default_8bit_registry
from kdkeras.compress.layers import check_tf_keras_model, clone_layers, walk_layers
from kdkeras.compress.pruning import prunable_weights
from kdkeras.compress.stripping import strip

logger = logging.getLogger("kdkeras.compress")

_combine = tfmot.experimental.combine
_qk = tfmot.quantization.keras

# Layers that carry no computation a converter would keep in float: never reported.
_NO_COMPUTE = (keras.layers.InputLayer, keras.layers.Dropout, keras.layers.SpatialDropout1D,
               keras.layers.SpatialDropout2D, keras.layers.GaussianNoise,
               keras.layers.GaussianDropout, keras.layers.AlphaDropout,
               keras.layers.ActivityRegularization)


def quantize_scheme(preserve_sparsity: bool = False, preserve_clusters: bool = False):
    """The TF-MOT 8-bit quantize scheme for the requested collaborative optimization.

    >>> type(quantize_scheme(preserve_sparsity=True)).__name__
    'Default8BitPrunePreserveQuantizeScheme'
    """
    if preserve_clusters:
        return _combine.Default8BitClusterPreserveQuantizeScheme(
            preserve_sparsity=bool(preserve_sparsity))
    if preserve_sparsity:
        return _combine.Default8BitPrunePreserveQuantizeScheme()
    return _qk.default_8bit.Default8BitQuantizeScheme()


def _supported(layer, registry) -> bool:
    try:
        return bool(registry.supports(layer))
    except Exception:  # pylint: disable=broad-except  (a registry probing an odd layer)
        return False


class _SupportedByBoth(_qk.QuantizeScheme):
    """``scheme`` whose registry supports a layer only when the plain 8-bit registry does too.

    TF-MOT's prune- and cluster-preserving registries call every weight-free layer supported
    and then have no config for a custom one (a padding mask, a probe): ``quantize_apply``
    asks them for the output quantization of such a layer when it feeds a quantized one and
    fails. With this scheme that layer stays float, as it does under the plain scheme.
    """

    def __init__(self, scheme, plain):
        self._scheme, self._plain = scheme, plain

    def get_layout_transformer(self):
        return self._scheme.get_layout_transformer()

    def get_quantize_registry(self):
        inner, plain = self._scheme.get_quantize_registry(), self._plain

        class Registry(_qk.QuantizeRegistry):
            def supports(self, layer):
                return _supported(layer, inner) and _supported(layer, plain)

            def get_quantize_config(self, layer):
                return inner.get_quantize_config(layer)

        return Registry()


def quantize_aware(model: keras.Model, preserve_sparsity: bool = False,
                   preserve_clusters: bool = False) -> keras.Model:
    """Returns a quantization-aware-training copy of ``model`` (int8 fake-quant).

    Pruning and clustering wrappers are stripped first (:func:`kdkeras.compress.strip`); the
    caller's model is untouched.

    Args:
        model: tf_keras.Model. A built Functional or Sequential tf-keras student.
        preserve_sparsity: bool. Keep the zeros of a pruned model at zero during QAT (PQAT).
        preserve_clusters: bool. Keep a clustered model's weight values shared during QAT
            (CQAT; PCQAT with ``preserve_sparsity``).

    Returns:
        A new tf-keras model wrapped for QAT. Layers TF-MOT cannot quantize stay float: they
        are logged (warning, logger ``kdkeras.compress``) and listed by :func:`float_layers`.

    Raises:
        TypeError: ``model`` is not a tf-keras model.
        ValueError: no layer of ``model`` can be quantized.

    Example:

    >>> import kdkeras as kd
    >>> inputs = kd.keras.Input((4,))
    >>> x = kd.keras.layers.Dense(8)(inputs)
    >>> outputs = kd.keras.layers.Dense(2)(kd.keras.layers.LayerNormalization(name="ln")(x))
    >>> qat = quantize_aware(kd.keras.Model(inputs, outputs))
    >>> float_layers(qat)
    ['ln']
    """
    check_tf_keras_model(model)
    work = strip(model)
    scheme = quantize_scheme(preserve_sparsity, preserve_clusters)

    nested = [layer.name for layer in work.layers if isinstance(layer, keras.Model)]
    if not nested:
        try:  # TF-MOT's whole-model path (it also folds Conv+BatchNorm, fuses activations)
            with _qk.quantize_scope():
                if not preserve_sparsity and not preserve_clusters:
                    return _qk.quantize_model(work)
                return _qk.quantize_apply(_qk.quantize_annotate_model(work), scheme=scheme)
        except Exception as err:  # pylint: disable=broad-except  (TF-MOT fails many ways)
            logger.info("TF-MOT cannot quantize model %r whole (%s); annotating the layers "
                        "it supports.", model.name, str(err).splitlines()[0][:200])
    else:
        raise ValueError(
            f"Model {model.name!r} nests models ({', '.join(nested)}); QAT needs a flat model. "
            "Rebuild the student without nested models, e.g. by calling the inner model's "
            "layers directly on the outer tensors.")

    registry = scheme.get_quantize_registry()
    plain = default_8bit_registry()
    layers = [layer for layer in walk_layers(work) if not isinstance(layer, _NO_COMPUTE)]
    left_float = [layer.name for layer in layers
                  if not (_supported(layer, registry) and _supported(layer, plain))]
    if len(left_float) == len(layers):
        raise ValueError(
            f"No layer of model {model.name!r} can be quantized by TF-MOT "
            f"(layers: {', '.join(f'{l.name} ({type(l).__name__})' for l in layers)}). Use "
            "post-training quantization at export instead.")

    if left_float:
        logger.warning(
            "QAT: %d layer(s) that TF-MOT cannot quantize stay float: %s. Their weights and "
            "activations are not fake-quantized; convert with a representative data set so "
            "the converter quantizes what it can, or replace them.", len(left_float),
            ", ".join(left_float))
    keep_float = set(left_float)

    def _annotate(layer):
        if isinstance(layer, _NO_COMPUTE) or layer.name in keep_float:
            return layer
        return _qk.quantize_annotate_layer(layer)

    annotated = clone_layers(work, _annotate)
    with _qk.quantize_scope():
        qat = _qk.quantize_apply(annotated, scheme=_SupportedByBoth(scheme, plain))
    if preserve_sparsity or preserve_clusters:
        _freeze_float_layers(qat, keep_float, preserve_sparsity, preserve_clusters)
    return qat


def _freeze_float_layers(model: keras.Model, names, sparsity: bool, clusters: bool) -> List[str]:
    """Freezes the layers left float whose zeros (or shared values) QAT must keep.

    TF-MOT's prune- and cluster-preserving schemes only act on the layers they wrap; a layer
    left float (an ``Embedding``, for one) would be trained freely and lose its zeros, undoing
    the pruning in the file that ships. It is frozen instead, and the log says so.
    """
    frozen = []
    for layer in walk_layers(model):
        if layer.name not in names or not layer.trainable:
            continue
        weights = [w.numpy() for w in prunable_weights(layer)]
        sparse = sparsity and any((w == 0).any() for w in weights)
        shared = clusters and any(w.size and len(np.unique(w)) < w.size / 2 for w in weights)
        if sparse or shared:
            layer.trainable = False
            frozen.append(layer.name)
    if frozen:
        logger.warning(
            "QAT: %d float layer(s) frozen so their %s stay as they are (TF-MOT cannot "
            "fake-quantize them and its preserving schemes do not cover them): %s.",
            len(frozen), "zeros" if sparsity else "shared values", ", ".join(frozen))
    return frozen


def float_layers(model: keras.Model) -> List[str]:
    """Names of the computing layers of a QAT model that are not quantization-wrapped.

    Args:
        model: tf_keras.Model. A model returned by :func:`quantize_aware`.

    Returns:
        Layer names, in model order (input and dropout-like layers excluded).
    """
    names = []
    for layer in walk_layers(model):
        if isinstance(layer, (keras.Model, QuantizeWrapper, QuantizeLayer) + _NO_COMPUTE):
            continue
        names.append(layer.name)
    return names


def has_quantization_wrappers(model) -> bool:
    """True when ``model`` (or a model nested in it) holds TF-MOT QAT layers.

    Those are the ``QuantizeWrapper`` around each quantized layer and the ``QuantizeLayer`` on
    the inputs, i.e. a model made by :func:`quantize_aware` (or TF-MOT's ``quantize_model``),
    also once saved and reloaded. Such a model already carries its quantization ranges.

    Args:
        model: object. A tf-keras model (a Distiller holding one, any other object: False).

    Returns:
        bool.

    Example:

    >>> import kdkeras as kd
    >>> inputs = kd.keras.Input((4,))
    >>> student = kd.keras.Model(inputs, kd.keras.layers.Dense(2)(inputs))
    >>> has_quantization_wrappers(student), has_quantization_wrappers(quantize_aware(student))
    (False, True)
    """
    qat_layers = (QuantizeWrapper, QuantizeLayer)
    if isinstance(model, qat_layers):
        return True
    return any(isinstance(layer, qat_layers) for layer in walk_layers(model))
