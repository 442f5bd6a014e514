"""Latency of a ``.tflite`` file on this CPU: median and p90 milliseconds per example.

Runs the file with ``ai_edge_litert.interpreter.Interpreter`` at batch size 1 (how a phone app
calls a classifier), after ``warmup`` untimed calls. Latency on a shared machine is noisy:
compare files measured in the same run, and report the median, not the mean.

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
from typing import Any, Dict, Optional

import numpy as np

from kdkeras.export.evaluate import make_interpreter, quantize_input
from kdkeras.export.tflite import check_tflite_file


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """Latency of one ``.tflite`` file, milliseconds per example (batch size 1).

    Also readable as a mapping: ``result["median_ms"]``.
    """

    median_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    runs: int
    warmup: int
    num_threads: int
    batch_size: int = 1

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def keys(self):  # noqa: D401 - mapping protocol for dict(result)
        return self.to_dict().keys()


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
            the values.

    Returns:
        :class:`BenchmarkResult` with ``median_ms``, ``p90_ms``, ``mean_ms``, ``min_ms``,
        ``runs``, ``warmup``, ``num_threads``, ``batch_size``.

    Raises:
        ValueError: bad counts (echoed) or a path that is not a TFLite file.
    """
    path = check_tflite_file(path)
    checks = (("num_threads", num_threads, 1), ("warmup", warmup, 0), ("runs", runs, 1))
    for name, value, low in checks:
        if not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}. Received: {name}={value!r}")
    interp = make_interpreter(path, num_threads=int(num_threads))
    interp.allocate_tensors()
    inputs = interp.get_input_details()
    rng = np.random.default_rng(0)
    feeds = []
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
    return BenchmarkResult(
        median_ms=float(np.median(times)),
        p90_ms=float(np.percentile(times, 90)),
        mean_ms=float(np.mean(times)),
        min_ms=float(np.min(times)),
        runs=int(runs),
        warmup=int(warmup),
        num_threads=int(num_threads),
        batch_size=1,
    )
