import numpy as np
import pytest

from kdkeras.export import BenchmarkResult, benchmark_tflite


def test_result_fields_and_order_statistics(converted):
    lat = benchmark_tflite(converted("none"), num_threads=1, warmup=2, runs=25)
    assert isinstance(lat, BenchmarkResult)
    assert (lat.runs, lat.warmup, lat.num_threads, lat.batch_size) == (25, 2, 1, 1)
    assert 0 < lat.min_ms <= lat.median_ms <= lat.p90_ms
    assert lat.min_ms <= lat.mean_ms
    assert lat["median_ms"] == lat.median_ms  # also a mapping
    assert set(dict(lat)) == {"median_ms", "p90_ms", "mean_ms", "min_ms", "runs", "warmup",
                              "num_threads", "batch_size"}


def test_integer_input_files_are_benchmarked(converted):
    lat = benchmark_tflite(converted("int8_io"), runs=5, warmup=0)
    assert lat.runs == 5 and lat.median_ms > 0


def test_statistics_are_the_numpy_ones_of_the_timings(converted, monkeypatch):
    from kdkeras.export import bench

    ticks = iter(np.cumsum([0.0] + [0.001, 0.0] * 3 + [0.002, 0.0, 0.003, 0.0, 0.010]))
    # perf_counter alternates start/stop: durations 1,1,1 ms (warmup 1 + runs) then 2, 3, 10 ms
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    lat = benchmark_tflite(converted("none"), warmup=1, runs=5)
    durations = np.array([1.0, 1.0, 2.0, 3.0, 10.0])
    assert lat.median_ms == pytest.approx(np.median(durations))
    assert lat.p90_ms == pytest.approx(np.percentile(durations, 90))
    assert lat.mean_ms == pytest.approx(durations.mean())


@pytest.mark.parametrize("kwargs, name", [
    ({"num_threads": 0}, "num_threads=0"),
    ({"runs": 0}, "runs=0"),
    ({"warmup": -1}, "warmup=-1"),
    ({"runs": 2.5}, "runs=2.5"),
])
def test_bad_counts_are_echoed(converted, kwargs, name):
    with pytest.raises(ValueError, match=name):
        benchmark_tflite(converted("none"), **kwargs)


def test_not_a_tflite_file(tmp_path):
    p = tmp_path / "x.tflite"
    p.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="TFL3"):
        benchmark_tflite(str(p))


# --- benchmark_keras -------------------------------------------------------------------------

import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from kdkeras.export import benchmark_keras  # noqa: E402
from tests.export.export_models import INPUT_SHAPE, NUM_CLASSES  # noqa: E402


class _CountCalls(keras.layers.Layer):
    """Identity that counts its executions in a variable (a Python counter counts traces)."""

    def build(self, input_shape):
        self.calls = self.add_weight("calls", (), dtype="int64", initializer="zeros", trainable=False)
        self.traces = 0

    def call(self, x, training=None):
        self.traces += 1
        self.calls.assign_add(1)
        return x


def _counted(model):
    counter = _CountCalls(name="count")
    inputs = keras.Input(model.input_shape[1:], dtype=model.inputs[0].dtype)
    return keras.Model(inputs, model(counter(inputs))), counter


def test_keras_result_fields(model):
    lat = benchmark_keras(model, warmup=2, runs=15)
    assert isinstance(lat, BenchmarkResult)
    assert (lat.runs, lat.warmup, lat.num_threads, lat.batch_size) == (15, 2, None, 1)
    stats = [lat.min_ms, lat.median_ms, lat.p90_ms, lat.mean_ms]
    assert all(np.isfinite(v) and v > 0 for v in stats)
    assert lat.min_ms <= lat.median_ms <= lat.p90_ms and lat.min_ms <= lat.mean_ms
    assert set(dict(lat)) == {"median_ms", "p90_ms", "mean_ms", "min_ms", "runs", "warmup",
                              "num_threads", "batch_size"}


@pytest.mark.parametrize("warmup, runs", [(3, 7), (0, 1)])
def test_keras_model_runs_warmup_plus_runs_times_traced_once(model, warmup, runs):
    counted, counter = _counted(model)
    traces_before = counter.traces  # functional construction calls the layer symbolically
    benchmark_keras(counted, warmup=warmup, runs=runs)
    assert int(counter.calls.numpy()) == warmup + runs
    assert counter.traces - traces_before == 1


def test_keras_statistics_are_the_numpy_ones_of_the_timings(model, monkeypatch):
    from kdkeras.export import bench

    ticks = iter(np.cumsum([0.0] + [0.001, 0.0] * 3 + [0.002, 0.0, 0.003, 0.0, 0.010]))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: next(ticks))
    lat = benchmark_keras(model, warmup=1, runs=5)
    durations = np.array([1.0, 1.0, 2.0, 3.0, 10.0])  # the warmup's 1 ms is dropped
    assert (lat.median_ms, lat.mean_ms, lat.min_ms) == pytest.approx(
        (np.median(durations), durations.mean(), 1.0))
    assert lat.p90_ms == pytest.approx(np.percentile(durations, 90))


def test_keras_input_is_batch_one_and_traced_before_timing(model, monkeypatch):
    from kdkeras.export import bench

    clock = []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock.append(0) or float(len(clock)))
    seen = []

    class Spy(keras.Model):
        def call(self, x, training=None):
            seen.append((tuple(x.shape), x.dtype, training, len(clock)))
            return model(x, training=training)

    lat = benchmark_keras(Spy(), INPUT_SHAPE, runs=2, warmup=0)
    # One trace, before the clock first ran: even without warmup, tracing is not timed.
    assert lat.runs == 2 and seen == [((1,) + INPUT_SHAPE, tf.float32, False, 0)]
    monkeypatch.undo()
    tokens = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(2, 3),
                               keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)])
    assert benchmark_keras(tokens, runs=2).median_ms > 0  # integer ids in range


def test_keras3_model():
    import keras as keras3

    m = keras3.Sequential([keras3.Input((5,)), keras3.layers.Dense(NUM_CLASSES)])
    assert benchmark_keras(m, runs=3, warmup=1).runs == 3


def test_pruned_and_qat_models(model):
    import kdkeras as kd

    pruned = kd.prune(model, target_sparsity=0.5, end_step=10)
    qat = kd.quantize_aware(model)
    for m in (pruned, qat, kd.strip(pruned)):
        counted, counter = _counted(m)
        lat = benchmark_keras(counted, warmup=1, runs=4)
        assert lat.runs == 4 and np.isfinite(lat.median_ms) and lat.median_ms > 0
        assert int(counter.calls.numpy()) == 5


@pytest.mark.parametrize("kwargs, message", [
    ({"runs": 0}, "runs must be an integer >= 1. Received: runs=0"),
    ({"warmup": -1}, "warmup must be an integer >= 0. Received: warmup=-1"),
    ({"runs": 2.5}, "Received: runs=2.5"),
    ({"input_shape": (0, 3)}, r"Received: input_shape=\(0, 3\)"),
])
def test_keras_bad_arguments_are_echoed(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        benchmark_keras(model, **kwargs)


def test_keras_unknown_input_shape_asks_for_it(model):
    class Sub(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match=r"pass input_shape=\(\.\.\.\).*Received: model=Sub"):
        benchmark_keras(Sub())
    seq = keras.Sequential([keras.Input((None, 3)), keras.layers.GlobalAveragePooling1D()])
    with pytest.raises(ValueError, match=r"unknown dimensions \[None, 3\]"):
        benchmark_keras(seq)
    assert benchmark_keras(seq, (4, 3), runs=2).runs == 2
