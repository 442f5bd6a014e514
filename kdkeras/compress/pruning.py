"""Magnitude pruning of tf-keras students, layer by layer, with TF-MOT.

TF-MOT's whole-model ``prune_low_magnitude`` refuses a model that holds any layer it does not
know (a residual ``x + y`` becomes a ``TFOpLambda`` layer, for one), so transformer students fail.
:func:`prune` instead copies the student and wraps, through
``keras.models.clone_model(clone_function=...)``, only the layers that have prunable weights:
``Dense``, ``Conv*``, ``SeparableConv*`` (pointwise kernel), ``Embedding``, ``LocallyConnected*``
and ``MultiHeadAttention`` (TF-MOT's registry makes it a prunable layer exposing its query, key,
value and output kernels), plus any custom layer implementing
``tfmot.sparsity.keras.PrunableLayer``. Every other layer is left as it is. The schedules
are in :mod:`kdkeras.compress.schedules`, the training callbacks in
:mod:`kdkeras.compress.callbacks`, unwrapping in :mod:`kdkeras.compress.stripping`.

Example:

>>> import numpy as np, kdkeras as kd
>>> from kdkeras.compress import ensure_pruning_callbacks, prune, strip, sparsity_report
>>> inputs = kd.keras.Input((8,))
>>> outputs = kd.keras.layers.Dense(4, name="output")(
...     kd.keras.layers.Dense(16, activation="relu")(inputs))
>>> student = kd.keras.Model(inputs, outputs)
>>> pruned = prune(student, target_sparsity=0.5, schedule="constant", skip=("output",),
...                frequency=1)
>>> pruned.compile("adam", "mse")
>>> cbs = ensure_pruning_callbacks(pruned)
>>> _ = pruned.fit(np.ones((8, 8)), np.ones((8, 4)), epochs=1, verbose=0, callbacks=cbs)
>>> small = strip(pruned)
>>> round(sparsity_report(small).layers[0].prunable_sparsity, 2)
0.5

References:
    Zhu & Gupta, "To prune, or not to prune: exploring the efficacy of pruning for model
    compression", 2017. Mishra et al., "Accelerating Sparse Deep Neural Networks", 2021 (2:4
    structured sparsity).
"""

from __future__ import annotations

import logging
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import tensorflow_model_optimization as tfmot
import tf_keras as keras

from kdkeras.compress._tfmot import (
    PrunableLayer,
    PruneLowMagnitude,
    prune_registry_supports,
    prune_weights_map,
    rnn_layer_types,
)
from kdkeras.compress.layers import check_tf_keras_model, clone_layers, resolve_skip, walk_layers
from kdkeras.compress.schedules import default_frequency, pruning_schedules
from kdkeras.compress.stripping import strip

logger = logging.getLogger("kdkeras.compress")

# --------------------------------------------------------------------------- layer policy

def prunable_weight_names(layer: keras.layers.Layer) -> List[str]:
    """Names of the weights TF-MOT would prune in ``layer`` (empty when it prunes none).

    >>> prunable_weight_names(keras.layers.Dense(3))
    ['kernel']
    >>> prunable_weight_names(keras.layers.LayerNormalization())
    []
    """
    if isinstance(layer, PrunableLayer):
        return ["<PrunableLayer.get_prunable_weights>"]
    weights_map = prune_weights_map()
    if type(layer) in weights_map:
        return list(weights_map[type(layer)])
    if type(layer) in rnn_layer_types() and prune_registry_supports(layer):
        return ["kernel", "recurrent_kernel"]
    return []


def prunable_weights(layer: keras.layers.Layer) -> list:
    """The weight variables of a (built, unwrapped) ``layer`` that pruning would act on."""
    if isinstance(layer, PrunableLayer):
        return list(layer.get_prunable_weights())
    found = []
    for name in prunable_weight_names(layer):
        obj = layer
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            if type(layer) in rnn_layer_types():
                return [w for w in layer.weights if "kernel" in w.name]
            continue
        found.append(obj)
    return found


def is_prunable(layer: keras.layers.Layer) -> bool:
    """True when ``layer`` has weights that TF-MOT can prune."""
    return bool(prunable_weight_names(layer))


# ---------------------------------------------------------------------------------- prune

def _pair(value, arg: str) -> Tuple[int, int]:
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{arg} must be a pair of positive ints. Received: {arg}={value!r}")
    if a < 1 or b < 1 or int(a) != a:
        raise ValueError(f"{arg} must be a pair of positive ints. Received: {arg}={value!r}")
    return a, b


def _steps(begin_step, end_step, steps_per_epoch, begin_epoch, end_epoch, schedule):
    """Resolves the step range, converting epochs with ``steps_per_epoch`` when given."""
    if begin_epoch is not None or end_epoch is not None:
        if steps_per_epoch is None or int(steps_per_epoch) < 1:
            raise ValueError(
                "begin_epoch/end_epoch need steps_per_epoch (e.g. "
                "`math.ceil(len(x_train) / batch_size)`) to be converted to steps. "
                f"Received: steps_per_epoch={steps_per_epoch}")
        if end_epoch is not None and end_step is not None:
            raise ValueError(
                "Give either end_step or end_epoch, not both. "
                f"Received: end_step={end_step}, end_epoch={end_epoch}")
        if begin_epoch is not None:
            begin_step = int(round(begin_epoch * steps_per_epoch))
        if end_epoch is not None:
            end_step = int(round(end_epoch * steps_per_epoch))
    begin_step = int(begin_step)
    if begin_step < 0:
        raise ValueError(f"begin_step must be >= 0. Received: begin_step={begin_step}")
    if end_step is None:
        if schedule == "polynomial":
            raise ValueError(
                "The polynomial schedule needs the step at which it reaches the target: pass "
                "end_step=<steps>, or end_epoch=<epochs> with steps_per_epoch=<batches per "
                "epoch>. Received: end_step=None")
        end_step = -1
    end_step = int(end_step)
    if end_step != -1 and end_step <= begin_step:
        raise ValueError(
            f"end_step must be after begin_step (or -1 for a constant schedule that never "
            f"stops). Received: begin_step={begin_step}, end_step={end_step}")
    if end_step == -1 and schedule == "polynomial":
        raise ValueError(
            "The polynomial schedule needs a finite end_step > begin_step. "
            f"Received: end_step={end_step}")
    return begin_step, end_step


def prune(
    model: keras.Model,
    target_sparsity: float = 0.8,
    schedule: Union[str, "tfmot.sparsity.keras.PruningSchedule"] = "polynomial",
    begin_step: int = 0,
    end_step: Optional[int] = None,
    m_by_n: Optional[Sequence[int]] = None,
    skip: Iterable[Union[str, type]] = (),
    *,
    block_size: Sequence[int] = (1, 1),
    block_pooling_type: str = "AVG",
    frequency: Optional[int] = None,
    initial_sparsity: float = 0.0,
    steps_per_epoch: Optional[int] = None,
    begin_epoch: Optional[float] = None,
    end_epoch: Optional[float] = None,
) -> keras.Model:
    """Returns a copy of ``model`` whose prunable layers are wrapped for magnitude pruning.

    The caller's model is untouched: the copy has its own variables (a model that is already
    pruned or clustered is stripped first). Train the result with
    :class:`kdkeras.Distiller` (it adds TF-MOT's ``UpdatePruningStep`` callback itself, see
    :func:`kdkeras.compress.ensure_pruning_callbacks`), then :func:`kdkeras.compress.strip` it.

    Args:
        model: tf_keras.Model. A built Functional or Sequential tf-keras student.
        target_sparsity: float in [0, 1). Fraction of zeros in each pruned weight tensor.
        schedule: str or PruningSchedule. ``"polynomial"`` (cubic ramp from
            ``initial_sparsity`` at ``begin_step`` to the target at ``end_step``) or
            ``"constant"`` (the target from ``begin_step`` on); known names are in
            ``pruning_schedules``. A ``tfmot.sparsity.keras.PruningSchedule`` is used as is and
            then ``target_sparsity``, the steps and ``frequency`` are ignored.
        begin_step: int. Training step at which pruning starts.
        end_step: int. Step at which the polynomial schedule reaches the target (required for
            it, or use ``end_epoch``); for ``"constant"``, the last mask update (default: never
            stops). Train for at least ``end_step`` batches: masks only change while training.
        m_by_n: (m, n) or None. Structured sparsity, e.g. ``(2, 4)``: ``m`` zeros in every ``n``
            consecutive weights along the input channel (NVIDIA / XNNPACK 2:4), replacing the
            magnitude threshold (the sparsity is then m/n). Applies to rank-2 (Dense,
            Embedding) and rank-4 (Conv2D) kernels; others are pruned unstructured, with a
            logged warning.
        skip: iterable of layer names (str) or tf-keras layer classes. Layers never pruned, e.g.
            the classifier ``("output",)`` or ``(kd.keras.layers.Embedding,)``.
        block_size: (rows, cols). Block sparsity: zero whole blocks, e.g. ``(1, 4)``; applies to
            rank-2 kernels (Dense, Embedding) whose sizes divide by the block, others are
            pruned element-wise (with a logged warning).
        block_pooling_type: str. ``"AVG"`` or ``"MAX"``: how a block's magnitude is pooled.
        frequency: int or None. Steps between mask updates; default: the largest divisor of
            ``end_step - begin_step`` that is <= 100, so the last update lands on ``end_step``.
        initial_sparsity: float. Start of the polynomial ramp.
        steps_per_epoch: int or None. Batches per epoch, to give the range in epochs.
        begin_epoch: float or None. ``begin_step = begin_epoch * steps_per_epoch``.
        end_epoch: float or None. ``end_step = end_epoch * steps_per_epoch``.

    Returns:
        A new tf-keras model: the prunable layers wrapped in ``PruneLowMagnitude``.

    Raises:
        TypeError: ``model`` is not a tf-keras model (e.g. a Keras 3 model).
        ValueError: sparsity outside [0, 1), ``end_step`` not after ``begin_step``, a skip entry
            naming no layer, nothing prunable, an unknown schedule name.

    Example:

    >>> import kdkeras as kd
    >>> inputs = kd.keras.Input((4,))
    >>> student = kd.keras.Model(inputs, kd.keras.layers.Dense(2, name="output")(
    ...     kd.keras.layers.Dense(8, name="hidden")(inputs)))
    >>> pruned = prune(student, target_sparsity=0.8, end_step=100, skip=("output",))
    >>> [l.name for l in pruned.layers if isinstance(l, PruneLowMagnitude)]
    ['prune_low_magnitude_hidden']
    """
    check_tf_keras_model(model)
    if not isinstance(target_sparsity, (int, float)) or not 0.0 <= float(target_sparsity) < 1.0:
        raise ValueError(
            "target_sparsity is the fraction of weights set to zero and must be in [0, 1), "
            f"e.g. 0.8. Received: target_sparsity={target_sparsity!r}")
    if not 0.0 <= float(initial_sparsity) <= float(target_sparsity):
        raise ValueError(
            "initial_sparsity must be in [0, target_sparsity]. "
            f"Received: initial_sparsity={initial_sparsity}, target_sparsity={target_sparsity}")
    block_size = _pair(block_size, "block_size")
    if m_by_n is not None:
        m_by_n = _pair(m_by_n, "m_by_n")
        if m_by_n[0] >= m_by_n[1]:
            raise ValueError(
                f"m_by_n=(m, n) asks for m zeros in every n weights, so m < n, e.g. (2, 4). "
                f"Received: m_by_n={m_by_n}")
        if block_size != (1, 1):
            raise ValueError(
                "m_by_n and block_size are two different structures; give one. "
                f"Received: m_by_n={m_by_n}, block_size={block_size}")
    if block_pooling_type not in ("AVG", "MAX"):
        raise ValueError(
            f"block_pooling_type must be 'AVG' or 'MAX'. "
            f"Received: block_pooling_type={block_pooling_type!r}")

    if isinstance(schedule, tfmot.sparsity.keras.PruningSchedule):
        pruning_schedule = schedule
    else:
        builder = pruning_schedules.get(schedule)
        begin_step, end_step = _steps(begin_step, end_step, steps_per_epoch, begin_epoch,
                                      end_epoch, schedule)
        if frequency is None:
            frequency = default_frequency(begin_step, end_step)
        elif int(frequency) < 1:
            raise ValueError(f"frequency must be >= 1. Received: frequency={frequency}")
        kwargs = dict(target_sparsity=float(target_sparsity), begin_step=begin_step,
                      end_step=end_step, frequency=int(frequency))
        if schedule == "polynomial":
            kwargs["initial_sparsity"] = float(initial_sparsity)
        pruning_schedule = builder(**kwargs)

    skip_names, skip_classes = resolve_skip(model, skip)

    def _selected(layer) -> bool:
        return (is_prunable(layer) and layer.name not in skip_names
                and not isinstance(layer, skip_classes)
                and not isinstance(layer, (PruneLowMagnitude, keras.Model)))

    candidates = [layer for layer in walk_layers(model) if _selected(layer)]
    if not candidates:
        raise ValueError(
            f"Nothing to prune in model {model.name!r}: no layer with prunable weights "
            "(Dense, Conv*, Embedding, MultiHeadAttention, LocallyConnected*, PrunableLayer) is "
            f"left after skip={tuple(skip or ())!r}. Layers: "
            f"{', '.join(f'{l.name} ({type(l).__name__})' for l in walk_layers(model))}. "
            "Skip fewer layers or add a prunable layer.")

    work = strip(model)  # private copy (an already pruned model is stripped, masks applied)

    def _wrap(layer):
        if not _selected(layer):
            return layer
        weights = prunable_weights(layer)
        ranks = {len(w.shape) for w in weights}
        params = dict(pruning_schedule=pruning_schedule)
        if block_size != (1, 1):
            if ranks == {2} and all(w.shape[0] % block_size[0] == 0
                                    and w.shape[1] % block_size[1] == 0 for w in weights):
                params.update(block_size=block_size, block_pooling_type=block_pooling_type)
            else:
                logger.warning(
                    "Layer %r (%s): block sparsity %s needs rank-2 kernels whose sizes divide "
                    "by the block (shapes %s); pruning it element-wise instead.", layer.name,
                    type(layer).__name__, block_size, [tuple(w.shape) for w in weights])
        if m_by_n is not None:
            if ranks <= {2, 4} and all(w.shape[-2 if len(w.shape) == 4 else 0] % m_by_n[1] == 0
                                       for w in weights):
                params.update(sparsity_m_by_n=m_by_n)
            else:
                logger.warning(
                    "Layer %r (%s): %s structured sparsity needs rank-2/4 kernels whose input "
                    "channels divide by %d (shapes %s); pruning it unstructured instead.",
                    layer.name, type(layer).__name__, f"{m_by_n[0]}:{m_by_n[1]}", m_by_n[1],
                    [tuple(w.shape) for w in weights])
        return PruneLowMagnitude(layer, **params)

    pruned = clone_layers(work, _wrap)
    logger.info("Pruning %d layer(s): %s", len(candidates),
                ", ".join(layer.name for layer in candidates))
    return pruned
