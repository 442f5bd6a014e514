"""ShiftFlip's stored draws and the cached-view teacher (FKD): the student sees exactly the
view the teacher labelled."""

import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill import ShiftFlip, ViewCache, cache_teacher_views, topk
from tests.helpers import run_serialization_test

keras = kd.keras


def _shift_reference(img, dy, dx, flip):
    """numpy: flip left-right, then shift down by dy and right by dx, zeros coming in."""
    img = img[:, ::-1] if flip else img
    out = np.zeros_like(img)
    h, w = img.shape[:2]
    for r in range(h):
        for c in range(w):
            if 0 <= r - dy < h and 0 <= c - dx < w:
                out[r, c] = img[r - dy, c - dx]
    return out


def test_shift_flip_matches_numpy_and_is_identity_in_inference():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 8, 8, 2)).astype("float32")
    layer = ShiftFlip(0.25, 0.25, flip=True, fill_mode="constant")
    params = layer.sample(6, x.shape, np.random.default_rng(1))
    assert params.shape == (6, 3) and np.abs(params[:, :2]).max() <= 2
    got = layer.apply(x, params).numpy()
    for i, (dy, dx, flip) in enumerate(params.astype(int)):
        np.testing.assert_array_equal(got[i], _shift_reference(x[i], dy, dx, flip))
    np.testing.assert_array_equal(layer(x, training=False), x)
    online = layer(x, training=True).numpy()
    assert online.shape == x.shape and not np.array_equal(online, x)
    assert layer.sample(50, x.shape, rng)[:, 2].max() == 1  # flips happen
    assert ShiftFlip(0.25, 0.25).sample(50, x.shape, rng)[:, 2].max() == 0  # and only if asked


def test_shift_flip_config_round_trip_and_bad_arguments(tmp_path):
    clone = run_serialization_test(ShiftFlip(0.2, 0.1, flip=True, fill_mode="nearest"))
    assert (clone.height_factor, clone.width_factor, clone.flip) == (0.2, 0.1, True)
    model = keras.Sequential([keras.Input((8, 8, 1)), ShiftFlip(0.1, 0.1),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    x = np.ones((2, 8, 8, 1), "float32")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"height_factor must be .*Received: height_factor=1.5"):
        ShiftFlip(1.5)
    with pytest.raises(ValueError, match="fill_mode must be one of .*Received: fill_mode='zeros'"):
        ShiftFlip(fill_mode="zeros")
    with pytest.raises(ValueError, match=r"image batches .*Received shape \(4, 8\)"):
        ShiftFlip().apply(np.zeros((4, 8), "float32"), np.zeros((4, 3), "float32"))


def test_the_student_sees_exactly_the_view_the_teacher_labelled(trained_teacher, digits_data):
    (x, y), _ = digits_data
    x, y = x[:96], y[:96]
    aug = ShiftFlip(0.25, 0.25)
    cache = cache_teacher_views(trained_teacher, (x, y), aug, views=3, top_k=4, temperature=2.0,
                                batch_size=40, seed=3)
    assert cache.params.shape == (96, 3, 3) and cache.targets["ids"].shape == (96, 3, 4)
    assert cache.nbytes == 96 * 3 * (3 * 4 + topk.bytes_per_target(4) + 4)
    # every stored view is the teacher's top-k on that very view
    for v in range(3):
        shown = aug.apply(x, cache.params[:, v]).numpy()
        want = topk.top_k_targets(trained_teacher.predict(shown, verbose=0), 4, 2.0)
        np.testing.assert_array_equal(cache.targets["ids"][:, v], want["ids"])
    assert not np.array_equal(cache.params[:, 0], cache.params[:, 1])
    # and the dataset shows a view whose targets are the teacher's on what it shows
    xb, yb, tb = next(iter(cache.dataset(batch_size=96, shuffle=False)))
    np.testing.assert_array_equal(yb, y)
    again = topk.top_k_targets(trained_teacher.predict(xb, verbose=0), 4, 2.0)
    np.testing.assert_array_equal(tb["ids"].numpy(), again["ids"])
    np.testing.assert_allclose(tb["tail"].numpy(), again["tail"], atol=1e-5)
    assert not np.array_equal(xb.numpy(), x)


def test_offline_fit_on_cached_views_and_save_load(tmp_path, trained_teacher, digits_data):
    (x, y), _ = digits_data
    x, y = x[:128], y[:128]
    cache = cache_teacher_views(trained_teacher, (x, y), ShiftFlip(0.125, 0.125), views=2,
                                temperature=1.0)
    assert cache.top_k == 10  # None keeps every class
    path = tmp_path / "views.npz"
    cache.save(path)
    loaded = ViewCache.load(path, x, y)
    np.testing.assert_array_equal(loaded.params, cache.params)
    for key in cache.targets:
        np.testing.assert_array_equal(loaded.targets[key], cache.targets[key])
    assert loaded.augmentation.get_config() == cache.augmentation.get_config()
    student = kd.build_mlp_student((8, 8, 1), 10, hidden=(16,))
    d = kd.Distiller(student)
    d.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"], temperature=1.0)
    h = d.fit(loaded.dataset(batch_size=32, seed=0), epochs=3, verbose=0)
    assert h.history["loss"][-1] < h.history["loss"][0]
    unlabelled = cache_teacher_views(trained_teacher, x, ShiftFlip(), views=1, top_k=2)
    batch = next(iter(unlabelled.dataset(16)))
    assert sorted(batch) == ["teacher_logits", "x"]
    with pytest.raises(ValueError, match="made from other inputs"):
        ViewCache.load(path, x[::-1].copy(), y)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="views.npz is not a readable view cache"):
        ViewCache.load(path, x, y)
    with pytest.raises(FileNotFoundError, match="No view cache at"):
        ViewCache.load(tmp_path / "none.npz", x, y)


@pytest.mark.parametrize("kwargs,match", [
    (dict(views=0), "views must be an integer >= 1. Received: views=0"),
    (dict(top_k=11), r"at most the number of classes \(10\). Received: top_k=11"),
    (dict(top_k=0), "Received: top_k=0"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(augmentation=keras.layers.RandomFlip()), "draws can be stored and replayed"),
])
def test_bad_arguments_are_named(kwargs, match, trained_teacher, digits_data):
    (x, y), _ = digits_data
    args = dict(augmentation=ShiftFlip(), views=2, top_k=3, temperature=1.0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        cache_teacher_views(trained_teacher, (x[:16], y[:16]), **args)
    with pytest.raises(ValueError, match="no data"):
        cache_teacher_views(trained_teacher, (x[:0], y[:0]), ShiftFlip())
