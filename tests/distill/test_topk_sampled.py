"""Top-k targets with a sampled tail: exact head, unbiased draws, gradients, the cache."""

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill import topk
from kdkeras.distill.topk_sampled import ZERO_WEIGHT, sampled_top_k_targets
from kdkeras.distill.topk_shards import TopKShards, cache_top_k_shards
from kdkeras.losses import kl_divergence


def _softmax(z, t):
    z = np.asarray(z, np.float64) / t
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _weights(targets, temperature):
    """The distribution a target dict encodes, scattered back onto the classes (numpy)."""
    w = np.exp(targets["logits"].astype(np.float64) / temperature)
    w /= w.sum(-1, keepdims=True)
    out = np.zeros(targets["ids"].shape[:-1] + (int(targets["classes"].flat[0]),))
    for index in np.ndindex(targets["ids"].shape[:-1]):
        np.add.at(out[index], targets["ids"][index], w[index])
    return out


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_head_exact_weights_sum_to_one_and_no_tail(temperature):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 5, 40)).astype("float32") * 3
    t = sampled_top_k_targets(z, k=8, temperature=temperature, seed=1)
    p = _softmax(z, temperature)
    order = np.argsort(-p, axis=-1)[..., :4]  # head = k // 2, largest first
    np.testing.assert_array_equal(t["ids"][..., :4], order)
    w = np.exp(t["logits"].astype(np.float64) / temperature)
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(w[..., :4], np.take_along_axis(p, order, -1), rtol=5e-3, atol=1e-6)
    assert t["ids"].shape == (3, 5, 8) and t["ids"].dtype == np.int32
    assert t["logits"].dtype == np.float16 and np.all(t["tail"] == 0)
    assert np.all(t["temperature"] == np.float32(temperature)) and np.all(t["classes"] == 40)
    drawn = t["ids"][..., 4:]  # the draws never repeat a head class
    assert not np.any((drawn[..., :, None] == order[..., None, :]) & (t["logits"][..., 4:, None] >
                                                                     ZERO_WEIGHT / 2))


def test_draws_are_an_unbiased_estimate_of_the_teacher():
    """Averaged over many draws, the encoded distribution is the teacher's softmax."""
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 30)).astype("float32") * 1.5
    p = _softmax(z, 1.0)
    rows = 5000
    t = sampled_top_k_targets(np.repeat(z, rows, 0), 6, 1.0, seed=0)
    mean = _weights(t, 1.0).reshape(2, rows, 30).mean(axis=1)
    np.testing.assert_allclose(mean, p, atol=0.004)
    # The bucket puts nothing on the classes outside the top k: biased for every one of them.
    outside = np.argsort(-p, axis=-1)[:, 6:]
    assert np.take_along_axis(_weights(topk.top_k_targets(z, 6, 1.0), 1.0), outside, -1).max() == 0


def test_kl_gradient_is_unbiased():
    """The mean gradient of top_k_kl over draws equals the full-logit KL's gradient (20,000
    rows of one teacher row: each row its own draws)."""
    rng = np.random.default_rng(5)
    z = rng.normal(size=(1, 12)).astype("float32") * 2
    s = tf.Variable(rng.normal(size=(1, 12)).astype("float32"))
    with tf.GradientTape() as tape:
        full = tf.reduce_sum(kl_divergence(z, s, 2.0))
    want = tape.gradient(full, s).numpy()
    rows = 20_000
    targets = sampled_top_k_targets(np.repeat(z, rows, 0), 4, 2.0, head=2, seed=0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(topk.top_k_kl(targets, tf.repeat(s, rows, 0), 2.0)) / rows
    np.testing.assert_allclose(tape.gradient(loss, s).numpy(), want, atol=0.01)
    assert np.abs(want).max() > 0.1  # a gradient worth comparing
    bucket = topk.top_k_targets(z, 4, 2.0)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(topk.top_k_kl(bucket, s, 2.0))
    assert np.abs(tape.gradient(loss, s).numpy() - want).max() > 0.05  # the bucket's is not


def test_all_classes_is_exact_and_seed_is_reproducible():
    z = np.random.default_rng(0).normal(size=(4, 7)).astype("float32")
    full = sampled_top_k_targets(z, 7, 1.5, seed=0)
    exact = topk.top_k_targets(z, 7, 1.5)
    for key in exact:
        np.testing.assert_array_equal(full[key], exact[key])
    a, b = (sampled_top_k_targets(z, 4, 1.0, head=1, seed=9) for _ in range(2))
    np.testing.assert_array_equal(a["ids"], b["ids"])
    head0 = sampled_top_k_targets(z, 3, 1.0, head=0, seed=2)  # all slots drawn
    np.testing.assert_allclose(_weights(head0, 1.0).sum(-1), 1.0, atol=1e-3)


def test_a_teacher_sure_of_its_head_leaves_zero_weight_draws():
    z = np.array([[0.0, 0.0, -1e4, -1e4, -1e4]], "float32")  # all mass on two classes
    t = sampled_top_k_targets(z, 4, 1.0, head=2, seed=0)
    w = _weights(t, 1.0)
    np.testing.assert_allclose(w[0, :2], [0.5, 0.5], atol=1e-3)
    assert np.isfinite(topk.top_k_kl(t, np.zeros((1, 5), "float32"), 1.0).numpy()).all()


@pytest.mark.parametrize("kwargs,match", [
    ({"k": 4, "head": 4}, "head must be below top_k"),
    ({"k": 4, "head": -1}, "head"),
    ({"k": 0}, "top_k"),
    ({"k": 9}, "at most the number of classes"),
])
def test_bad_arguments(kwargs, match):
    z = np.zeros((2, 8), "float32")
    with pytest.raises(ValueError, match=match):
        sampled_top_k_targets(z, temperature=1.0, **kwargs)
    with pytest.raises(ValueError, match="NaN"):
        sampled_top_k_targets(np.full((1, 8), np.nan, "float32"), 4, 1.0)


V, T, N = 30, 6, 12


def _lm(seed):
    import tf_keras as keras

    keras.utils.set_random_seed(seed)
    ids = keras.Input((T,), dtype="int32")
    h = keras.layers.Embedding(V, 8)(ids)
    return keras.Model(ids, keras.layers.Dense(V)(h))


def test_sampled_cache_round_trip_tail_check_and_fit(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(1, V, (N, T)).astype("int32")
    data = (x, np.roll(x, -1, axis=1), np.ones((N, T), "float32"))
    teacher = _lm(1)
    folder = tmp_path / "cache"
    meta = cache_top_k_shards(teacher, data, folder, top_k=(4, 8), temperature=2.0, batch_size=5,
                              shard_examples=5, tail="sampled", seed=3)
    assert meta["tail"] == "sampled" and meta["seed"] == 3
    cache = TopKShards.open(folder, 8, tail="sampled")
    assert cache.tail == "sampled"
    ids, logits, tail = (np.concatenate(a) for a in zip(*[cache.read_shard(p)[3:]
                                                           for p in cache.paths]))
    assert np.all(tail == 0) and ids.shape == (N, T, 8)
    want = sampled_top_k_targets(teacher.predict(x, verbose=0), 8, 2.0, seed=0)
    np.testing.assert_array_equal(ids[..., :4], want["ids"][..., :4])  # the exact head
    with pytest.raises(ValueError, match="holds a 'sampled' tail, not a 'bucket'"):
        TopKShards.open(folder, 8, tail="bucket")
    with pytest.raises(ValueError, match=r"tail must be one of \['bucket', 'sampled'\]"):
        cache_top_k_shards(teacher, data, tmp_path / "c2", top_k=4, tail="uniform")
    again = tmp_path / "again"  # the same seed gives the same cache
    cache_top_k_shards(teacher, data, again, top_k=(4, 8), temperature=2.0, batch_size=5,
                       shard_examples=5, tail="sampled", seed=3)
    np.testing.assert_array_equal(TopKShards.open(again, 8).read_shard(
        TopKShards.open(again, 8).paths[0])[3], cache.read_shard(cache.paths[0])[3])
    student = _lm(2)
    d = kd.Distiller(student=student, teacher=None)
    d.compile(optimizer=kd.keras.optimizers.Adam(1e-2), alpha=0.2, temperature=2.0)
    before = d.evaluate(cache.dataset(4, shuffle=False), return_dict=True, verbose=0)
    d.fit(cache.dataset(4, seed=0), epochs=3, verbose=0)
    after = d.evaluate(cache.dataset(4, shuffle=False), return_dict=True, verbose=0)
    assert np.isfinite(after["loss"]) and after["loss"] < before["loss"]
