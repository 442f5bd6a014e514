"""The masked, weighted mean the Distiller reduces every per-example loss with."""

import numpy as np
import pytest
import tensorflow as tf

from kdkeras.distill.batches import weighted_mean

RNG = np.random.default_rng(0)
LOSS = RNG.random((4, 5)).astype("float32")


@pytest.mark.parametrize("weight, mask", [
    (None, None),
    (RNG.random(4).astype("float32"), None),
    (None, (RNG.random((4, 5)) > 0.3).astype("float32")),
    (RNG.random(4).astype("float32"), (RNG.random((4, 5)) > 0.3).astype("float32")),
])
def test_weighted_mean_matches_numpy(weight, mask):
    w = np.ones_like(LOSS) if weight is None else np.broadcast_to(weight[:, None], LOSS.shape)
    m = np.ones_like(LOSS) if mask is None else mask
    want = (LOSS * w * m).sum() / m.sum()
    got = weighted_mean(tf.constant(LOSS), weight, mask)
    np.testing.assert_allclose(float(got), want, rtol=1e-6)


@pytest.mark.parametrize("weight", [None, np.zeros((0,), "float32")])
def test_empty_batch_gives_zero_not_nan(weight):
    # A replica's share of a short last batch can be empty: 0, which the divergence guard
    # lets through, not reduce_mean's NaN, which it would take for a diverged loss.
    got = weighted_mean(tf.zeros((0,)), weight, None)
    assert float(got) == 0.0
