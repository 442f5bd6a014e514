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
