import numpy as np
import pytest

from kdkeras import losses
from tests.helpers import run_serialization_test

RNG = np.random.default_rng(0)


def test_feature_distance_mse_and_cosine():
    a = RNG.normal(size=(3, 4, 2)).astype("float32")
    b = RNG.normal(size=(3, 4, 2)).astype("float32")
    np.testing.assert_allclose(losses.feature_distance(a, b, "mse").numpy(), ((a - b) ** 2).reshape(3, -1).mean(-1), rtol=1e-5)
    fa, fb = a.reshape(3, -1), b.reshape(3, -1)
    cos = (fa * fb).sum(-1) / np.linalg.norm(fa, axis=-1) / np.linalg.norm(fb, axis=-1)
    np.testing.assert_allclose(losses.feature_distance(a, b, "cosine").numpy(), 1 - cos, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown feature metric 'l3'"):
        losses.feature_distance(a, b, "l3")


def test_hint_loss_projection_and_round_trip():
    hint = losses.HintLoss("t", "s", metric="mse", weight=0.5, projection=True)
    t = np.ones((2, 6), "float32")
    s = np.ones((2, 3), "float32")
    out = hint(t, s).numpy()
    assert out.shape == (2,)
    assert hint._proj.kernel.shape == (3, 6)
    projected = s @ hint._proj.kernel.numpy()
    np.testing.assert_allclose(out, 0.0 + ((t - projected) ** 2).mean(-1), rtol=1e-5)
    clone = run_serialization_test(hint)
    assert (clone.teacher_layer, clone.student_layer, clone.weight, clone.projection) == ("t", "s", 0.5, True)
    with pytest.raises(ValueError, match="weight=-1"):
        losses.HintLoss("t", "s", weight=-1)
