"""Magnitude pruning of tf-keras students, layer by layer, with TF-MOT.

TF-MOT's whole-model ``prune_low_magnitude`` refuses a model that holds any layer it does not
know (a residual ``x + y`` becomes a ``TFOpLambda`` layer, for one), so transformer students fail.
:func:`prune` instead copies the student and wraps, through
``keras.models.clone_model(clone_function=...)``, only the layers that have prunable weights:
``Dense``, ``Conv*``, ``SeparableConv*`` (pointwise kernel), ``Embedding``, ``LocallyConnected*``
and ``MultiHeadAttention`` (TF-MOT's registry makes it a prunable layer exposing its query, key,
value and output kernels), plus any custom layer implementing
``tfmot.sparsity.keras.PrunableLayer``. Every other layer is left as it is.

Example:

>>> import numpy as np, kdkeras as kd
>>> from kdkeras.compress import prune, strip, sparsity_report
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
    compression", 2017 (polynomial schedule). Mishra et al., "Accelerating Sparse Deep Neural
    Networks", 2021 (2:4 structured sparsity).
"""

from __future__ import annotations

import importlib.util
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import tensorflow_model_optimization as tfmot
import tf_keras as keras
from tensorflow_model_optimization.python.core.sparsity.keras import (
    prunable_layer,
    prune_registry,
    pruning_wrapper,
)

from kdkeras.compress._utils import check_tf_keras_model, logger, rebuild, walk_layers
from kdkeras.registry import Registry

PruneLowMagnitude = pruning_wrapper.PruneLowMagnitude
UpdatePruningStep = tfmot.sparsity.keras.UpdatePruningStep
PruningSummaries = tfmot.sparsity.keras.PruningSummaries

#: Default (and largest) number of steps between two mask updates, as in TF-MOT.
DEFAULT_FREQUENCY = 100

# --------------------------------------------------------------------------------- schedules

pruning_schedules = Registry("pruning schedule")


@pruning_schedules.register("polynomial")
def polynomial_schedule(target_sparsity: float, begin_step: int, end_step: int,
                        frequency: int, initial_sparsity: float = 0.0, power: int = 3):
    """Sparsity rising from ``initial_sparsity`` to ``target_sparsity`` as a cubic (Zhu & Gupta).

    Args:
        target_sparsity: float. Final fraction of zeros, reached at ``end_step``.
        begin_step: int. First step at which masks are updated.
        end_step: int. Step at which ``target_sparsity`` is reached.
        frequency: int. Steps between two mask updates.
        initial_sparsity: float. Sparsity at ``begin_step``.
        power: int. Exponent of the decay.

    Returns:
        A ``tfmot.sparsity.keras.PolynomialDecay``.
    """
    return tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=initial_sparsity, final_sparsity=target_sparsity,
        begin_step=begin_step, end_step=end_step, power=power, frequency=frequency)


@pruning_schedules.register("constant")
def constant_schedule(target_sparsity: float, begin_step: int, end_step: int, frequency: int):
    """``target_sparsity`` from ``begin_step`` on (one-shot pruning, then masks refreshed).

    Args:
        target_sparsity: float. Fraction of zeros.
        begin_step: int. First step at which masks are updated.
        end_step: int. Last step at which masks are updated, ``-1`` for never stopping.
        frequency: int. Steps between two mask updates.

    Returns:
        A ``tfmot.sparsity.keras.ConstantSparsity``.
    """
    return tfmot.sparsity.keras.ConstantSparsity(
        target_sparsity=target_sparsity, begin_step=begin_step, end_step=end_step,
        frequency=frequency)


def default_frequency(begin_step: int, end_step: int) -> int:
    """The largest divisor of ``end_step - begin_step`` that is at most 100.

    TF-MOT only updates masks on steps where ``(step - begin_step) % frequency == 0``; with a
    frequency that divides the pruning span, the last update falls exactly on ``end_step``, so
    the target sparsity is reached instead of the value of the last earlier update.

    >>> default_frequency(0, 1875), default_frequency(0, 40), default_frequency(0, -1)
    (75, 40, 100)
    """
    span = end_step - begin_step
    if end_step < 0 or span <= 0:
        return DEFAULT_FREQUENCY
    return max(d for d in range(1, min(DEFAULT_FREQUENCY, span) + 1) if span % d == 0)


# --------------------------------------------------------------------------- layer policy

def prunable_weight_names(layer: keras.layers.Layer) -> List[str]:
    """Names of the weights TF-MOT would prune in ``layer`` (empty when it prunes none).

    >>> prunable_weight_names(keras.layers.Dense(3))
    ['kernel']
    >>> prunable_weight_names(keras.layers.LayerNormalization())
    []
    """
    if isinstance(layer, prunable_layer.PrunableLayer):
        return ["<PrunableLayer.get_prunable_weights>"]
    weights_map = prune_registry.PruneRegistry._LAYERS_WEIGHTS_MAP  # pylint: disable=protected-access
    if type(layer) in weights_map:
        return list(weights_map[type(layer)])
    if type(layer) in prune_registry.PruneRegistry._RNN_LAYERS and (  # pylint: disable=protected-access
            prune_registry.PruneRegistry.supports(layer)):
        return ["kernel", "recurrent_kernel"]
    return []


def prunable_weights(layer: keras.layers.Layer) -> list:
    """The weight variables of a (built, unwrapped) ``layer`` that pruning would act on."""
    if isinstance(layer, prunable_layer.PrunableLayer):
        return list(layer.get_prunable_weights())
    found = []
    for name in prunable_weight_names(layer):
        obj = layer
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            if type(layer) in prune_registry.PruneRegistry._RNN_LAYERS:  # pylint: disable=protected-access
                return [w for w in layer.weights if "kernel" in w.name]
            continue
        found.append(obj)
    return found


def is_prunable(layer: keras.layers.Layer) -> bool:
    """True when ``layer`` has weights that TF-MOT can prune."""
    return bool(prunable_weight_names(layer))


def _resolve_skip(model: keras.Model, skip) -> Tuple[set, tuple]:
    """Splits ``skip`` into layer names and layer classes, checking each entry matches a layer."""
    if skip is None:
        return set(), ()
    if isinstance(skip, (str, type)):
        skip = (skip,)
    names, classes = set(), []
    all_layers = list(walk_layers(model))
    known = [layer.name for layer in all_layers]
    for entry in skip:
        if isinstance(entry, str):
            if entry not in known:
                raise ValueError(
                    f"skip entry {entry!r} names no layer of model {model.name!r}. Use layer "
                    f"names from `[l.name for l in model.layers]` or layer classes such as "
                    f"`kd.keras.layers.Embedding`. Known layer names: {', '.join(known)}. "
                    f"Received: skip={tuple(skip)!r}")
            names.add(entry)
        elif isinstance(entry, type) and issubclass(entry, keras.layers.Layer):
            if not any(isinstance(layer, entry) for layer in all_layers):
                raise ValueError(
                    f"skip entry {entry.__name__} matches no layer of model {model.name!r} "
                    f"(its layer types: {', '.join(sorted({type(l).__name__ for l in all_layers}))}"
                    f"). Remove it or check it is a tf-keras (`kd.keras.layers`) class. "
                    f"Received: skip={tuple(skip)!r}")
            classes.append(entry)
        else:
            hint = (" (a Keras 3 class never matches a tf-keras layer: use "
                    f"`kd.keras.layers.{entry.__name__}`)" if isinstance(entry, type) else "")
            raise TypeError(
                f"skip entries must be layer names (str) or tf-keras layer classes{hint}. "
                f"Received: skip entry {entry!r} of type {type(entry).__name__}")
    return names, tuple(classes)


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
    :func:`ensure_pruning_callbacks`), then :func:`kdkeras.compress.strip` it.

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
    >>> [l.name for l in pruned.layers if has_pruning_wrappers_layer(l)]
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

    skip_names, skip_classes = _resolve_skip(model, skip)

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
        if isinstance(layer, keras.Model):
            return keras.models.clone_model(layer, clone_function=_wrap)
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

    pruned = keras.models.clone_model(work, clone_function=_wrap)
    logger.info("Pruning %d layer(s): %s", len(candidates),
                ", ".join(layer.name for layer in candidates))
    return pruned


# ------------------------------------------------------------------------------- callbacks

def has_pruning_wrappers_layer(layer) -> bool:
    """True when ``layer`` itself is a TF-MOT pruning wrapper."""
    return isinstance(layer, PruneLowMagnitude)


def has_pruning_wrappers(model) -> bool:
    """True when ``model`` (or any model nested in it, e.g. a Distiller's student) is being pruned.

    >>> import kdkeras as kd
    >>> has_pruning_wrappers(kd.keras.Sequential([kd.keras.layers.Dense(1, input_shape=(2,))]))
    False
    """
    if isinstance(model, PruneLowMagnitude):
        return True
    return any(isinstance(layer, PruneLowMagnitude) for layer in walk_layers(model))


def _final_sparsity(schedule) -> Optional[float]:
    """The sparsity a TF-MOT schedule ends at, or None for a schedule kdkeras does not know."""
    if isinstance(schedule, tfmot.sparsity.keras.PolynomialDecay):
        return float(schedule.final_sparsity)
    if isinstance(schedule, tfmot.sparsity.keras.ConstantSparsity):
        return float(schedule.target_sparsity)
    return None


class PruningTargetCheck(keras.callbacks.Callback):
    """Warns at the end of training when a pruned layer is short of its schedule's target.

    Masks only change on the schedule's turns (``begin_step`` + k * ``frequency``, up to
    ``end_step``); a fine-tune shorter than that ends with a less sparse model than asked for.
    This says so (logger ``kdkeras.compress``), with the steps trained and the step needed,
    instead of letting the run finish silently. ``shortfalls`` keeps the last findings.
    """

    def __init__(self, tolerance: float = 0.01):
        super().__init__()
        self.tolerance = float(tolerance)
        self.shortfalls: List[dict] = []

    def on_train_end(self, logs=None):
        self.shortfalls = []
        for layer in walk_layers(self.model):
            if not isinstance(layer, PruneLowMagnitude) or not layer.built:
                continue
            if layer.sparsity_m_by_n:
                continue
            target = _final_sparsity(layer.pruning_schedule)
            if target is None:
                continue
            for weight, mask, _ in layer.pruning_vars:
                reached = float(1.0 - mask.numpy().mean())
                if reached < target - self.tolerance:
                    self.shortfalls.append(dict(layer=layer.name, weight=weight.name,
                                                reached=reached, target=target,
                                                step=int(layer.pruning_step.numpy())))
        if self.shortfalls:
            schedule = next(l for l in walk_layers(self.model)
                            if isinstance(l, PruneLowMagnitude)).pruning_schedule
            cfg = schedule.get_config()["config"]
            first = self.shortfalls[0]
            logger.warning(
                "Pruning fell short of its target: %d weight tensor(s) below it, e.g. %s at "
                "%.1f%% instead of %.1f%% after %d training steps. The schedule (begin_step=%s, "
                "end_step=%s, frequency=%s) only updates masks on its turns: train for at least "
                "end_step steps, or prune with a smaller end_step / frequency.",
                len(self.shortfalls), first["weight"], 100 * first["reached"],
                100 * first["target"], first["step"], cfg.get("begin_step"),
                cfg.get("end_step"), cfg.get("frequency"))


def ensure_pruning_callbacks(model, callbacks=None, log_dir: Optional[str] = None) -> list:
    """Returns a new callback list that trains ``model``'s pruning wrappers correctly.

    Without TF-MOT's ``UpdatePruningStep`` a pruning run fails (or, with a reloaded model, never
    updates its masks). This adds it when ``model`` holds pruning wrappers and the list has
    none, adds a :class:`PruningTargetCheck` (a warning when training ended before the
    schedule reached its target), and adds ``PruningSummaries`` when a log directory is given,
    either as ``log_dir`` or through a ``keras.callbacks.TensorBoard`` in ``callbacks``
    (``<log_dir>/pruning``).

    Args:
        model: tf_keras.Model. The model being trained (a student, or a Distiller holding one).
        callbacks: list of callbacks or None. Not modified.
        log_dir: str or None. Where to write pruning summaries (sparsity, thresholds).

    Returns:
        A new list: the given callbacks plus the ones needed.

    Raises:
        ImportError: ``log_dir`` given but TensorBoard (which writes the summaries) is not
            installed. With a ``TensorBoard`` callback instead, the summaries are skipped with a
            logged warning.

    Example:

    >>> import kdkeras as kd
    >>> plain = kd.keras.Sequential([kd.keras.layers.Dense(1, input_shape=(2,))])
    >>> ensure_pruning_callbacks(plain, [])
    []
    """
    callbacks = list(callbacks or [])
    if not has_pruning_wrappers(model):
        return callbacks
    if not any(isinstance(cb, UpdatePruningStep) for cb in callbacks):
        callbacks.append(UpdatePruningStep())
    if not any(isinstance(cb, PruningTargetCheck) for cb in callbacks):
        callbacks.append(PruningTargetCheck())
    if any(isinstance(cb, PruningSummaries) for cb in callbacks):
        return callbacks
    if log_dir is not None:
        if not tensorboard_available():
            raise ImportError(
                "Pruning summaries are written with TensorBoard, which is not installed: "
                f"`pip install tensorboard`, or drop log_dir. Received: log_dir={log_dir!r}")
        callbacks.append(PruningSummaries(log_dir=str(log_dir)))
        return callbacks
    for cb in callbacks:
        if isinstance(cb, keras.callbacks.TensorBoard):
            if tensorboard_available():
                callbacks.append(PruningSummaries(log_dir=f"{cb.log_dir}/pruning"))
            else:
                logger.warning("TensorBoard is not installed: no pruning summaries "
                               "(`pip install tensorboard` to get them).")
            break
    return callbacks


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package (needed to write summaries) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


# ----------------------------------------------------------------------------------- strip

def _masked_weights(wrapper: PruneLowMagnitude) -> list:
    """The wrapped layer's weights with the pruning masks applied (weights * mask)."""
    masks = {id(weight): mask for weight, mask, _ in getattr(wrapper, "pruning_vars", [])}
    return [w.numpy() * masks[id(w)].numpy() if id(w) in masks else w.numpy()
            for w in wrapper.layer.weights]


def _unwrap(layer):
    """(plain layer to copy, its effective weights) for :func:`strip`."""
    from kdkeras.compress.clustering import clustered_weights, is_clustering_wrapper

    if isinstance(layer, PruneLowMagnitude):
        return layer.layer, _masked_weights(layer)
    if is_clustering_wrapper(layer):
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
