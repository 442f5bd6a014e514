import numpy as np
import pytest

from kdkeras.models.schedules import cosine_decay
from tests.helpers import run_serialization_test


def reference(lr, steps, warmup, alpha, t):
    """numpy: linear warm-up from 0, then cosine from ``lr`` to ``alpha * lr``."""
    t = np.asarray(t, dtype="float64")
    s = np.clip((t - warmup) / (steps - warmup), 0.0, 1.0)
    decay = lr * ((1 - alpha) * 0.5 * (1 + np.cos(np.pi * s)) + alpha)
    return np.where(t < warmup, lr * t / max(warmup, 1), decay)


@pytest.mark.parametrize("warmup,alpha", [(0, 0.0), (25, 0.0), (10, 0.1)])
def test_cosine_decay_matches_numpy(warmup, alpha):
    steps = np.arange(0, 130)  # past the end: stays at alpha * lr
    schedule = cosine_decay(3e-3, 100, warmup, alpha)
    got = np.array([float(schedule(t)) for t in steps])
    np.testing.assert_allclose(got, reference(3e-3, 100, warmup, alpha, steps), rtol=1e-5,
                               atol=1e-9)
    assert got.max() == pytest.approx(3e-3)
    assert got[-1] == pytest.approx(alpha * 3e-3, abs=1e-9)


def test_cosine_decay_round_trips_and_drives_an_optimizer():
    schedule = cosine_decay(1e-3, 50, 5)
    clone = run_serialization_test(schedule)
    assert float(clone(20)) == pytest.approx(float(schedule(20)))
    from kdkeras import keras

    opt = keras.optimizers.Adam(schedule)
    assert keras.optimizers.Adam.from_config(opt.get_config()).get_config()["learning_rate"] \
        == opt.get_config()["learning_rate"]


@pytest.mark.parametrize("kwargs,match", [
    (dict(learning_rate=0.0, steps=10), "learning_rate=0.0"),
    (dict(learning_rate=1e-3, steps=0), "steps=0"),
    (dict(learning_rate=1e-3, steps=10, warmup_steps=10), "warmup_steps=10"),
    (dict(learning_rate=1e-3, steps=10, alpha=1.5), "alpha=1.5"),
])
def test_cosine_decay_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cosine_decay(**kwargs)
