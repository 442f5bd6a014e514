"""The sharded top-k cache: exact targets, the full-logit limit, identity, damage, interruption."""

import json
import math

import keras as keras3
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import kdkeras as kd
from kdkeras.distill import topk, topk_shards
from kdkeras.distill.topk_shards import TopKShards, cache_top_k_shards

V, T, N, B, S = 24, 8, 22, 4, 6  # vocabulary, context, windows, batch, shard size


class CountingTeacher(kd.distill.Teacher):
    """Counts calls and rows; raises on call ``fail_on`` (to simulate a crash or Ctrl-C)."""

    def __init__(self, model, fail_on=None, error=RuntimeError):
        super().__init__(model)
        self.calls, self.rows, self.fail_on, self.error = 0, [], fail_on, error

    def __call__(self, x, temperature=None):
        self.calls += 1
        self.rows.append(len(x))
        if self.calls == self.fail_on:
            raise self.error("teacher failed on purpose")
        return super().__call__(x, temperature)


def lm(seed, name):
    keras.utils.set_random_seed(seed)
    ids = keras.Input((T,), dtype="int32", name="ids")
    h = keras.layers.Embedding(V, 8, embeddings_initializer=keras.initializers.RandomNormal(
        stddev=1.0))(ids)
    return keras.Model(ids, keras.layers.Dense(V)(h), name=name)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    stream = rng.integers(1, V, N * T + 1).astype("int32")
    x, y = stream[:-1].reshape(N, T), stream[1:].reshape(N, T)
    sw = np.ones((N, T), "float32")
    x[-1, 5:], y[-1, 5:], sw[-1, 5:] = 0, 0, 0  # a padded last window
    return x, y, sw


@pytest.fixture(scope="module")
def teacher():
    return lm(1, "teacher")


@pytest.fixture(scope="module")
def built(tmp_path_factory, teacher, data):
    folder = tmp_path_factory.mktemp("c") / "cache"
    counting = CountingTeacher(teacher)
    meta = cache_top_k_shards(counting, data, folder, top_k=(8, 3, V), temperature=2.0,
                              batch_size=B, shard_examples=S,
                              identity={"tokenizer": kd.distill.fingerprint_tokens(["a"], T=T)})
    return folder, meta, counting


def read_all(cache):
    parts = [cache.read_shard(p) for p in cache.paths]
    return [np.concatenate(a) for a in zip(*parts)]


def test_metadata_bytes_and_one_teacher_call_per_batch(built, data):
    folder, meta, counting = built
    x, y, sw = data
    assert counting.calls == math.ceil(N / B) and max(counting.rows) == B
    assert json.loads((folder / "cache.json").read_text()) == meta
    assert meta["top_k"] == [3, 8, V] and meta["vocabulary_size"] == V
    assert meta["examples"] == N and meta["tokens"] == float(sw.sum()) == N * T - 3
    assert [s["examples"] for s in meta["shards"]] == [6, 6, 6, 4]
    assert meta["full_logit_bytes"] == N * T * V * 4
    assert set(meta["identity"]) == {"teacher", "tokenizer", "data"}
    assert meta["identity"]["teacher"] == kd.distill.fingerprint_weights(counting.model)
    for k in meta["top_k"]:
        cache = TopKShards.open(folder, k)
        arrays = read_all(cache)
        assert sum(a.nbytes for a in arrays[3:]) == meta["bytes"][str(k)] == cache.nbytes
        assert cache.nbytes == N * T * topk.bytes_per_target(k)
        np.testing.assert_array_equal(arrays[0], x)
        np.testing.assert_array_equal(arrays[2], sw)
        assert (cache.examples, cache.tokens) == (N, N * T - 3)
    assert [p.name for p in folder.parent.iterdir()] == ["cache"]  # no partial folder left


def test_targets_equal_top_k_of_full_logits(built, teacher, data):
    folder, _, _ = built
    full = teacher.predict(data[0], verbose=0)
    for k in (3, 8, V):
        _, _, _, ids, logits, tail = read_all(TopKShards.open(folder, k))
        direct = topk.top_k_targets(full, k, 2.0)
        np.testing.assert_array_equal(ids, direct["ids"])
        np.testing.assert_allclose(logits.astype("float32"), direct["logits"], atol=1e-3)
        np.testing.assert_allclose(tail, direct["tail"], atol=1e-6)
    # Derived from the stored float16 logits alone: float16 tolerance.
    big = topk.top_k_targets(full, 8, 2.0)
    np.testing.assert_allclose(topk_shards.narrow_top_k(big, 3)["tail"],
                               topk.top_k_targets(full, 3, 2.0)["tail"], atol=2e-3)


def test_full_k_equals_online_kd_and_offline_fit(built, teacher, data):
    folder, _, _ = built
    x, y, sw = data
    cache = TopKShards.open(folder, V)
    student = lm(2, "student")
    online = kd.Distiller(student, teacher=teacher)
    online.compile(optimizer="adam", temperature=2.0, alpha=0.5)
    want = online.evaluate(x, y, sample_weight=sw, batch_size=B, verbose=0, return_dict=True)
    offline = kd.Distiller(student, teacher=None)
    offline.compile(optimizer="adam", temperature=2.0, alpha=0.5)
    got = offline.evaluate(cache.dataset(B, shuffle=False), verbose=0, return_dict=True)
    assert want["distillation_loss"] > 0.05
    for key in ("distillation_loss", "student_loss", "loss"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4)
    before = [w.copy() for w in student.get_weights()]
    small = TopKShards.open(folder, 3)
    history = offline.fit(small.dataset(B, seed=0), epochs=2, verbose=0)
    assert np.isfinite(history.history["distillation_loss"]).all()
    assert any(not np.allclose(a, b) for a, b in zip(before, student.get_weights()))


def test_dataset_shuffles_shards_and_windows(built, data):
    cache = TopKShards.open(built[0], 8)
    ds = cache.dataset(5, seed=3)
    batch = next(iter(ds))
    assert batch["x"].shape[1:] == (T,) and batch["teacher_logits"]["ids"].shape[1:] == (T, 8)
    assert np.all(batch["teacher_logits"]["temperature"].numpy() == 2.0)
    epochs = [np.concatenate([b["x"].numpy() for b in ds]) for _ in range(2)]
    for rows in epochs:  # every window once per epoch
        assert sorted(map(tuple, rows)) == sorted(map(tuple, data[0]))
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[0], data[0])


def test_identity_mismatch_refused(built, data):
    folder, meta, _ = built
    other = lm(7, "other_teacher")  # same architecture, other weights
    with pytest.raises(ValueError, match=r"made by another teacher: teacher fingerprint "
                                         r"\w+ != \w+\. Delete the folder"):
        TopKShards.open(folder, 8, expect={"teacher": kd.distill.fingerprint_weights(other)})
    with pytest.raises(ValueError, match="made by another tokenizer"):
        TopKShards.open(folder, 8, expect={"tokenizer": kd.distill.fingerprint_tokens(["b"], T=T)})
    with pytest.raises(ValueError, match="records no 'model' identity"):
        TopKShards.open(folder, 8, expect={"model": "x"})
    same = {key: meta["identity"][key] for key in ("teacher", "tokenizer")}
    same["data"] = kd.distill.fingerprint_arrays(*data)
    assert TopKShards.open(folder, 8, expect=same).top_k == 8


def test_uncached_k_refused(built):
    with pytest.raises(ValueError, match=r"holds top_k in \[3, 8, 24\], not top_k=5"):
        TopKShards.open(built[0], 5)


def test_damaged_shards_are_named(tmp_path, teacher, data):
    folder = tmp_path / "cache"
    cache_top_k_shards(teacher, data, folder, top_k=4, batch_size=B, shard_examples=S)
    shard = folder / "k4" / "shard-00001.npz"
    raw = shard.read_bytes()
    shard.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"shard-00001\.npz is truncated or damaged"):
        TopKShards.open(folder, 4)
    shard.write_bytes(b"\0" * len(raw))  # same size, unreadable: caught while reading
    cache = TopKShards.open(folder, 4)
    with pytest.raises(Exception, match=r"shard-00001\.npz is truncated or damaged"):
        list(cache.dataset(4, shuffle=False))
    (folder / "cache.json").write_text("{not json")
    with pytest.raises(ValueError, match="cache.json is not a readable top-k cache"):
        TopKShards.open(folder, 4)
    with pytest.raises(FileNotFoundError, match="No top-k cache"):
        TopKShards.open(tmp_path / "nowhere", 4)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_write_leaves_no_cache(tmp_path, teacher, data, error):
    folder = tmp_path / "cache"
    failing = CountingTeacher(teacher, fail_on=2, error=error)
    with pytest.raises(error, match="on purpose"):
        cache_top_k_shards(failing, data, folder, top_k=4, batch_size=B, shard_examples=2)
    assert failing.calls == 2 and list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        TopKShards.open(folder, 4)
    # A rebuild that fails keeps the previous, complete cache.
    old = cache_top_k_shards(teacher, data, folder, top_k=4, batch_size=B, shard_examples=S)
    with pytest.raises(error):
        cache_top_k_shards(CountingTeacher(teacher, 2, error), data, folder, top_k=4,
                           batch_size=B, shard_examples=S)
    assert TopKShards.open(folder, 4).metadata == old
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


@pytest.mark.parametrize("bad,match", [
    (dict(top_k=0), r"top_k must be an integer >= 1\. Received: top_k=0"),
    (dict(top_k=(4, V + 1)), r"at most the number of classes \(24\)\. Received: top_k=25"),
    (dict(top_k=()), "at least one k"),
    (dict(temperature=0.0), "temperature"),
    (dict(batch_size=0), "batch_size=0"),
    (dict(shard_examples=-1), "shard_examples=-1"),
])
def test_bad_arguments_refused(tmp_path, teacher, data, bad, match):
    with pytest.raises(ValueError, match=match):
        cache_top_k_shards(teacher, data, tmp_path / "cache", **bad)
    assert list(tmp_path.iterdir()) == []


def test_bad_data_and_folders_refused(tmp_path, teacher, data):
    x, y, sw = data
    with pytest.raises(ValueError, match="same length"):
        cache_top_k_shards(teacher, (x, y[:3], sw), tmp_path / "c", top_k=4)
    with pytest.raises(ValueError, match="no data"):
        cache_top_k_shards(teacher, (x[:0], y[:0], sw[:0]), tmp_path / "c", top_k=4)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds files but no cache.json"):
        cache_top_k_shards(teacher, data, tmp_path / "mine", top_k=4)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match=r"identity=\{'teacher'"):
        cache_top_k_shards(lambda ids: teacher(ids), data, tmp_path / "c", top_k=4)
    meta = cache_top_k_shards(lambda ids: teacher(ids), (x, y), tmp_path / "c", top_k=4,
                              identity={"teacher": "toy-v1"})
    assert meta["identity"]["teacher"] == "toy-v1" and meta["tokens"] == N * T


@pytest.mark.parametrize("student_v", [V - 4, V + 6])
def test_dataset_carries_the_vocabulary_and_fit_refuses_another(built, student_v):
    cache = TopKShards.open(built[0], 3)
    batch = next(iter(cache.dataset(5, shuffle=False)))
    classes = batch["teacher_logits"]["classes"]
    assert classes.dtype == tf.int32 and classes.shape == (5, T) and np.all(classes == V)
    ids = keras.Input((T,), dtype="int32")
    student = keras.Model(ids, keras.layers.Dense(student_v)(keras.layers.Embedding(V, 4)(ids)))
    d = kd.Distiller(student, teacher=None)
    d.compile(optimizer="adam", temperature=2.0)
    with pytest.raises(ValueError, match=rf"teacher vocabulary V={V} != student V={student_v}: "
                                         "token-level KD needs one tokenizer shared"):
        d.fit(cache.dataset(B), epochs=1, verbose=0)


def test_data_must_be_windows_of_one_shape(tmp_path, teacher, data):
    x, y, sw = data
    for bad, shapes in [((x, y[:, :4], sw), r"y.shape=\(22, 4\)"),
                        ((x, y, sw[:, 0]), r"sample_weight.shape=\(22,\)"),
                        ((x[:, :, None], y[:, :, None]), r"x.shape=\(22, 8, 1\)")]:
        with pytest.raises(ValueError, match="one 2-D shape \\[N, T\\].*" + shapes):
            cache_top_k_shards(teacher, bad, tmp_path / "c", top_k=4)
    assert list(tmp_path.iterdir()) == []


def test_rebuild_refuses_a_cache_folder_holding_user_files(tmp_path, teacher, data):
    folder = tmp_path / "cache"
    cache_top_k_shards(teacher, data, folder, top_k=4, batch_size=B, shard_examples=S)
    (folder / ".cache.json.abc.tmp.json").write_text("")  # a killed atomic write: ours
    cache_top_k_shards(teacher, data, folder, top_k=4, batch_size=B, shard_examples=S)
    (folder / "my_notes.txt").write_text("precious")
    (folder / "k4" / "extra.npy").write_text("mine")
    with pytest.raises(ValueError, match=r"holds \['k4/extra.npy', 'my_notes.txt'\] besides the "
                                         "cache; rebuilding .* would delete them"):
        cache_top_k_shards(teacher, data, folder, top_k=4, batch_size=B, shard_examples=S)
    assert (folder / "my_notes.txt").read_text() == "precious"
    assert (folder / "k4" / "extra.npy").read_text() == "mine"
    assert TopKShards.open(folder, 4).examples == N


def test_memory_bounded_one_batch_of_logits(tmp_path, teacher, data, monkeypatch):
    rows = []
    real = topk_shards.top_k_targets

    def spy(logits, k, temperature):
        rows.append(logits.shape[0])
        return real(logits, k, temperature)

    monkeypatch.setattr(topk_shards, "top_k_targets", spy)
    counting = CountingTeacher(teacher)
    cache_top_k_shards(counting, data, tmp_path / "c", top_k=(2, 4), batch_size=B,
                       shard_examples=S)
    assert rows == counting.rows and max(rows) <= B  # only one batch's logits at a time


def test_fingerprints():
    a, b = lm(3, "a"), lm(3, "b")
    assert kd.distill.fingerprint_weights(a) == kd.distill.fingerprint_weights(b)
    b.layers[-1].bias.assign(b.layers[-1].bias + 1.0)
    assert kd.distill.fingerprint_weights(a) != kd.distill.fingerprint_weights(b)
    k3 = keras3.Sequential([keras3.Input((T,), dtype="int32"), keras3.layers.Embedding(V, 4),
                            keras3.layers.Dropout(0.5), keras3.layers.Dense(V)])
    before = kd.distill.fingerprint_weights(k3)
    k3(np.ones((2, T), "int32"), training=True)  # moves the dropout seed state
    assert kd.distill.fingerprint_weights(k3) == before
    ens = kd.distill.EnsembleTeacher([a, b], [1, 2])
    assert kd.distill.fingerprint_weights(ens) != kd.distill.fingerprint_weights(
        kd.distill.EnsembleTeacher([a, b], [2, 1]))
    assert kd.distill.fingerprint_tokens(["x", "y"]) != kd.distill.fingerprint_tokens(["y", "x"])
    with pytest.raises(ValueError, match="no weights"):
        kd.distill.fingerprint_weights(lambda ids: ids)
