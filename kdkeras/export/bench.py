"""Latency on this CPU, median and p90 ms per example, of a ``.tflite`` file or a Keras model.

:func:`benchmark_tflite` runs the file with ``ai_edge_litert.interpreter.Interpreter`` at batch
size 1 (how a phone app calls a classifier), after ``warmup`` untimed calls;
:func:`benchmark_keras` times batch-1 calls of a Keras model through one ``tf.function``.
Latency on a shared machine is noisy: compare models measured in the same run, and report the
median, not the mean.

Example:

>>> import kdkeras as kd
>>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(3)])
>>> lat = kd.benchmark_tflite(kd.export_tflite(m, "/tmp/kd_doc/b.tflite"), runs=20)
>>> lat.runs, lat.num_threads, lat.batch_size, lat.median_ms > 0
(20, 1, 1, True)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from kdkeras.export.evaluate import make_interpreter, quantize_input
from kdkeras.export.text import text_feeds, text_input_details
from kdkeras.export.tflite_file import check_tflite_file
from kdkeras.validation import check_int


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Latency of one ``.tflite`` file or Keras model, milliseconds per example (batch size 1).

    ``num_threads`` is the TFLite interpreter's thread count; it is None for a Keras model,
    which runs on TensorFlow's own thread pools. Also readable as a mapping:
    ``result["median_ms"]``.
    """

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    num_threads: Optional[int]
    batch_size: int = 1

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def keys(self):  # noqa: D401 - mapping protocol for dict(result)
        return self.to_dict().keys()


def _result(times_ms: np.ndarray, warmup: int, num_threads: Optional[int]) -> BenchmarkResult:
    return BenchmarkResult(
        median_ms=float(np.median(times_ms)),
        p90_ms=float(np.percentile(times_ms, 90)),
        mean_ms=float(np.mean(times_ms)),
        min_ms=float(np.min(times_ms)),
        runs=int(len(times_ms)),
        warmup=int(warmup),
        num_threads=None if num_threads is None else int(num_threads),
        batch_size=1,
    )


def _sample_input(detail: Dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    shape = [1] + [int(d) for d in detail["shape"][1:]]
    return quantize_input(rng.random(shape, dtype=np.float32), detail)


def benchmark_tflite(
    path: str,
    num_threads: int = 1,
    warmup: int = 10,
    runs: int = 100,
    *,
    x: Optional[np.ndarray] = None,
) -> BenchmarkResult:
    """Measures the latency of ``path`` at batch size 1.

    Args:
        path: str. A ``.tflite`` file.
        num_threads: int. Interpreter CPU threads (>= 1).
        warmup: int. Untimed calls first (>= 0).
        runs: int. Timed calls (>= 1).
        x: optional float input of shape ``(1,) + input_shape`` (default: uniform random in
            [0, 1), quantized for integer inputs). Latency of these models does not depend on
            the values. A text file (inputs ``ids``, ``mask``, ``segment_ids``) takes int ids
            ``(1, T)`` (default: all 1), mask and segment ids derived from them.

    Returns:
        :class:`BenchmarkResult` with ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms``,
        ``runs``, ``warmup``, ``num_threads``, ``batch_size``.

    Raises:
        ValueError: bad counts (echoed) or a path that is not a TFLite file.
    """
    path = check_tflite_file(path)
    check_int(num_threads, "num_threads", 1)
    check_int(warmup, "warmup", 0)
    check_int(runs, "runs", 1)
    interp = make_interpreter(path, num_threads=int(num_threads))
    interp.allocate_tensors()
    inputs = interp.get_input_details()
    rng = np.random.default_rng(0)
    feeds = []
    text = text_input_details(inputs)
    if text is not None:  # ids (given, or all 1: a valid id of any vocabulary), mask, segments
        ids = np.ones([1] + [int(v) for v in text[0]["shape"][1:]], np.int32)
        values = text_feeds(ids if x is None else np.asarray(x).reshape(ids.shape)).values()
        feeds = [(d["index"], v) for d, v in zip(text, values)]
        inputs = []
    for i, d in enumerate(inputs):
        if x is not None and i == 0:
            feeds.append((d["index"], quantize_input(np.asarray(x).reshape(d["shape"]), d)))
        else:
            feeds.append((d["index"], _sample_input(d, rng)))
    times = np.empty(runs, dtype=np.float64)
    for i in range(warmup + runs):
        for index, value in feeds:
            interp.set_tensor(index, value)
        t0 = time.perf_counter()
        interp.invoke()
        dt = time.perf_counter() - t0
        if i >= warmup:
            times[i - warmup] = dt * 1e3
    return _result(times, warmup, num_threads)


def _keras_inputs(model, input_shape, dtype, rng: np.random.Generator) -> List[Any]:
    """One batch-1 sample per model input: uniform [0, 1) floats, 0/1 integers or booleans."""
    import tensorflow as tf

    if input_shape is not None:
        if isinstance(input_shape, (int, np.integer)):
            input_shape = (int(input_shape),)
        dims = list(input_shape)
        if not dims or any(not isinstance(d, (int, np.integer)) or d < 1 for d in dims):
            raise ValueError(
                "input_shape must be the shape of one example without the batch axis, positive "
                f"integers, e.g. (28, 28, 1). Received: input_shape={input_shape!r}"
            )
        specs = [(dims, dtype or "float32")]
        n_inputs = len(getattr(model, "inputs", None) or [None])
        if n_inputs > 1:
            raise ValueError(
                f"input_shape describes one input but the model has {n_inputs}; leave "
                f"input_shape=None to use model.inputs. Received: input_shape={input_shape!r}"
            )
    else:
        inputs = getattr(model, "inputs", None)
        if not inputs:
            raise ValueError(
                "benchmark_keras needs the input shape: the model has no .inputs (a subclassed "
                "model that was never called); pass input_shape=(...) without the batch axis. "
                f"Received: model={type(model).__name__}"
            )
        specs = []
        for tensor in inputs:
            dims = tf.TensorShape(tensor.shape).as_list()[1:]
            if any(d is None for d in dims):
                raise ValueError(
                    f"Input {getattr(tensor, 'name', '')!r} has unknown dimensions {dims}; pass "
                    f"input_shape=(...) with every dimension set. Received: input_shape=None"
                )
            specs.append((dims, dtype or tensor.dtype))
    samples = []
    for dims, dt in specs:
        dt = tf.as_dtype(dt)
        shape = [1] + [int(d) for d in dims]
        if dt.is_floating:
            value = rng.random(shape, dtype=np.float32)
        elif dt.is_integer:
            value = rng.integers(0, 2, size=shape)  # valid ids for any embedding
        elif dt.is_bool:
            value = rng.random(shape) < 0.5
        else:
            raise ValueError(
                f"benchmark_keras makes numeric inputs only; the model takes {dt.name}. Received: "
                f"dtype={dt.name!r}"
            )
        samples.append(tf.constant(value, dtype=dt))
    return samples


def benchmark_keras(
    model,
    input_shape: Optional[Sequence[int]] = None,
    *,
    warmup: int = 10,
    runs: int = 100,
    seed: int = 0,
    dtype: Optional[str] = None,
) -> BenchmarkResult:
    """Measures the latency of ``model(x, training=False)`` at batch size 1, on this CPU.

    The call is wrapped in one ``tf.function``, traced before the first call, so neither the
    timed runs nor the warmup pay for tracing; each timed run includes copying the output to
    numpy. Pruning and QAT wrappers are timed as they are (strip a pruned model first to time
    what ships). Works for tf-keras and Keras 3 models.

    Args:
        model: a Keras model (tf-keras or Keras 3).
        input_shape: tuple of ints or None. Shape of one example without the batch axis; None
            reads it from ``model.inputs`` (one sample per input).
        warmup: int. Untimed calls first (>= 0).
        runs: int. Timed calls (>= 1).
        seed: int. Seed of the random input (uniform [0, 1) floats, 0/1 for integer inputs).
        dtype: str or None. Input dtype; None uses the model's input dtype (float32 with
            ``input_shape``).

    Returns:
        :class:`BenchmarkResult` with ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms``,
        ``runs``, ``warmup``, ``num_threads=None``, ``batch_size=1``.

    Raises:
        ValueError: bad counts (echoed), a model whose input shape is unknown without
            ``input_shape``, or non-numeric inputs.
        TypeError: if ``model`` is not callable.

    Example:

    >>> import kdkeras as kd
    >>> m = kd.keras.Sequential([kd.keras.layers.Input((4,)), kd.keras.layers.Dense(3)])
    >>> lat = benchmark_keras(m, runs=20)
    >>> lat.runs, lat.num_threads, lat.batch_size, lat.median_ms > 0
    (20, None, 1, True)
    """
    import tensorflow as tf

    if not callable(model):
        raise TypeError(
            f"benchmark_keras needs a Keras model. Received: model={type(model).__name__}"
        )
    check_int(warmup, "warmup", 0)
    check_int(runs, "runs", 1)
    samples = _keras_inputs(model, input_shape, dtype, np.random.default_rng(seed))
    x = samples[0] if len(samples) == 1 else samples
    step = tf.function(lambda inputs: model(inputs, training=False), autograph=False)
    step.get_concrete_function(x)  # trace now: tracing is not latency
    times = np.empty(runs, dtype=np.float64)
    for i in range(warmup + runs):
        t0 = time.perf_counter()
        tf.nest.map_structure(lambda t: t.numpy(), step(x))
        dt = time.perf_counter() - t0
        if i >= warmup:
            times[i - warmup] = dt * 1e3
    return _result(times, warmup, None)
