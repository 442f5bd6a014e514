"""TinyBERT / MiniLM intermediate-layer KD: metrics against numpy, the layer-map builder and its
refusals, and a Keras 3 teacher distilled into a tf-keras student with logits + hints."""

import keras as keras3
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import kdkeras as kd
from kdkeras import losses
from kdkeras.distill import transformer_hints, uniform_layer_map
from kdkeras.distill.transformer_kd import transformer_blocks
from kdkeras.models.anchor import Anchor, anchor
from tests.helpers import run_serialization_test

RNG = np.random.default_rng(0)
T = 8
VOCAB = 50


def softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def probs(shape):
    return softmax(RNG.normal(size=shape)).astype("float32")


def np_attention_kl(t, s, mask=None, eps=1e-8):
    """Reference: KL over keys, mean over heads and (real) queries, in float64."""
    t, s = t.astype("float64"), s.astype("float64")
    terms = t * (np.log(np.maximum(t, eps)) - np.log(np.maximum(s, eps)))
    if mask is None:
        return terms.sum(-1).mean(axis=(1, 2))
    m = mask.astype("float64")
    rows = (terms * m[:, None, None, :]).sum(-1) * m[:, None, :]
    return rows.sum(axis=(1, 2)) / (t.shape[1] * m.sum(-1))


def np_relation(v, r, mask=None):
    b, n, d = v.shape
    v = v.astype("float64").reshape(b, n, r, d // r).transpose(0, 2, 1, 3)
    logits = v @ v.transpose(0, 1, 3, 2) / np.sqrt(d // r)
    if mask is not None:
        logits = np.where(mask[:, None, None, :], logits, -np.inf)
    return softmax(logits)


def np_value_relation_kl(vt, vs, r, mask=None):
    pt, ps = np_relation(vt, r, mask), np_relation(vs, r, mask)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(pt > 0, pt * (np.log(pt) - np.log(ps)), 0.0)
    if mask is None:
        return terms.sum(-1).mean(axis=(1, 2))
    rows = terms.sum(-1) * mask[:, None, :]
    return rows.sum(axis=(1, 2)) / (r * mask.sum(-1))


def pad(x, length, axes, fill):
    """Pads ``x`` to ``length`` on ``axes`` with ``fill(shape)`` (garbage where padding lives)."""
    out = fill(tuple(length if i in axes else n for i, n in enumerate(x.shape))).astype(x.dtype)
    out[tuple(slice(0, n) for n in x.shape)] = x
    return out


# ------------------------------------------------------------------------------------ metrics
def test_attention_kl_matches_numpy_and_is_zero_on_itself():
    t, s = probs((3, 2, 5, 5)), probs((3, 2, 5, 5))
    np.testing.assert_allclose(losses.attention_kl(t, s).numpy(), np_attention_kl(t, s), rtol=1e-5)
    np.testing.assert_allclose(losses.attention_kl(t, t).numpy(), 0.0, atol=1e-6)
    # A probability of exactly 0 is clipped, never log(0): finite loss and gradient.
    s0 = s.copy()
    s0[:, :, :, 0] = 0.0
    s_var = tf.Variable(s0)
    with tf.GradientTape() as tape:
        value = losses.attention_kl(t, s_var)
    assert np.isfinite(value.numpy()).all() and np.isfinite(tape.gradient(value, s_var).numpy()).all()
    np.testing.assert_allclose(value.numpy(), np_attention_kl(t, s0), rtol=1e-5)


def test_attention_kl_masks_padding_exactly():
    lengths = np.array([5, 3])
    t, s = probs((2, 2, 5, 5)), probs((2, 2, 5, 5))
    mask5 = np.arange(5)[None] < lengths[:, None]
    # Masked attention: padded keys have probability 0 (rows renormalized over real keys).
    t, s = (p * mask5[:, None, None, :] for p in (t, s))
    t, s = (p / p.sum(-1, keepdims=True) for p in (t, s))
    expected = np_attention_kl(t, s, mask5)
    np.testing.assert_allclose(losses.attention_kl(t, s, mask=mask5).numpy(), expected, rtol=1e-5)
    # Three more padding positions, garbage in padded rows and columns: the loss is unchanged.
    garbage = lambda shape: RNG.uniform(size=shape)  # noqa: E731
    t8, s8 = (pad(p, 8, (2, 3), garbage) for p in (t, s))
    mask8 = np.arange(8)[None] < lengths[:, None]
    np.testing.assert_allclose(losses.attention_kl(t8, s8, mask=mask8).numpy(), expected, rtol=1e-5)
    # The second example's own 3 real tokens give the same loss as the example cut to 3.
    cut = losses.attention_kl(t[1:, :, :3, :3], s[1:, :, :3, :3]).numpy()
    np.testing.assert_allclose(cut, expected[1:], rtol=1e-5)


def test_attention_kl_refuses_head_mismatch():
    with pytest.raises(ValueError, match=r"teacher has 12 and the student 4.*value-relation"):
        losses.attention_kl(probs((1, 12, 4, 4)), probs((1, 4, 4, 4)))
    with pytest.raises(ValueError, match="Sequence lengths differ.*6 tokens.*4"):
        losses.attention_kl(probs((1, 2, 6, 6)), probs((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="epsilon=0"):
        losses.attention_kl(probs((1, 2, 4, 4)), probs((1, 2, 4, 4)), epsilon=0)


def test_value_relation_kl_matches_numpy_across_widths():
    vt = RNG.normal(size=(3, 6, 12)).astype("float32")
    vs = RNG.normal(size=(3, 6, 8)).astype("float32")
    for r in (1, 2, 4):
        np.testing.assert_allclose(losses.value_relation_kl(vt, vs, r).numpy(),
                                   np_value_relation_kl(vt, vs, r), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(losses.value_relation_kl(vt, vt, 3).numpy(), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match=r"relation_heads=3 must divide both value widths: teacher 12, student 8"):
        losses.value_relation_kl(vt, vs, 3)


def test_value_relation_kl_masks_padding_exactly():
    lengths = np.array([6, 2, 4])
    vt = RNG.normal(size=(3, 6, 12)).astype("float32")
    vs = RNG.normal(size=(3, 6, 8)).astype("float32")
    mask6 = np.arange(6)[None] < lengths[:, None]
    expected = np_value_relation_kl(vt, vs, 4, mask6)
    np.testing.assert_allclose(losses.value_relation_kl(vt, vs, 4, mask=mask6).numpy(), expected,
                               rtol=1e-4, atol=1e-6)
    garbage = lambda shape: RNG.normal(size=shape) * 10  # noqa: E731
    vt9, vs9 = pad(vt, 9, (1,), garbage), pad(vs, 9, (1,), garbage)
    mask9 = np.arange(9)[None] < lengths[:, None]
    np.testing.assert_allclose(losses.value_relation_kl(vt9, vs9, 4, mask=mask9).numpy(), expected,
                               rtol=1e-4, atol=1e-6)
    cut = losses.value_relation_kl(vt[1:2, :2], vs[1:2, :2], 4).numpy()
    np.testing.assert_allclose(cut, expected[1:2], rtol=1e-4, atol=1e-6)


def test_masked_mse_ignores_padding():
    lengths = np.array([4, 1])
    a = RNG.normal(size=(2, 4, 3)).astype("float32")
    b = RNG.normal(size=(2, 4, 3)).astype("float32")
    mask = np.arange(4)[None] < lengths[:, None]
    expected = [((a[i, :n] - b[i, :n]) ** 2).mean() for i, n in enumerate(lengths)]
    np.testing.assert_allclose(losses.feature_distance(a, b, mask=mask).numpy(), expected, rtol=1e-5)
    garbage = lambda shape: RNG.normal(size=shape)  # noqa: E731
    a7, b7 = pad(a, 7, (1,), garbage), pad(b, 7, (1,), garbage)
    mask7 = np.arange(7)[None] < lengths[:, None]
    np.testing.assert_allclose(losses.feature_distance(a7, b7, mask=mask7).numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="needs features"):
        losses.feature_distance(a[:, 0], b[:, 0], mask=mask)


def test_hint_loss_transformer_metrics_mask_from_ids_and_round_trip():
    ids = np.array([[101, 7, 102, 0, 0], [101, 102, 0, 0, 0]], "int32")
    hint = losses.HintLoss("values_3", "values_1", metric="value_relation", weight=0.5,
                           relation_heads=2, padding_id=0)
    np.testing.assert_array_equal(hint.input_mask(tf.constant(ids)).numpy(), ids != 0)
    vt = RNG.normal(size=(2, 5, 4)).astype("float32")
    vs = RNG.normal(size=(2, 5, 6)).astype("float32")
    out = hint(vt, vs, token_mask=hint.input_mask(ids)).numpy()
    np.testing.assert_allclose(out, np_value_relation_kl(vt, vs, 2, ids != 0), rtol=1e-4, atol=1e-6)
    clone = run_serialization_test(hint)
    assert (clone.metric, clone.relation_heads, clone.padding_id) == ("value_relation", 2, 0)
    att = losses.HintLoss("attention_0", "attention_0", metric="attention_kl")
    assert att.input_mask(ids) is None  # no padding_id: every position counts
    t, s = probs((2, 2, 5, 5)), probs((2, 2, 5, 5))
    np.testing.assert_allclose(att(t, s).numpy(), np_attention_kl(t, s), rtol=1e-5)
    with pytest.raises(ValueError, match="one \\[batch, T\\] tensor"):
        hint.input_mask({"ids": ids})
    with pytest.raises(ValueError, match="projection=True maps features"):
        losses.HintLoss("a", "b", metric="attention_kl", projection=True)
    with pytest.raises(ValueError, match="needs relation_heads"):
        losses.HintLoss("a", "b", metric="value_relation")
    with pytest.raises(ValueError, match="relation_heads=0"):
        losses.HintLoss("a", "b", metric="value_relation", relation_heads=0)
    with pytest.raises(ValueError, match="Unknown feature metric 'kl'. Known: attention_kl, cosine, mse"):
        losses.HintLoss("a", "b", metric="kl")
    with pytest.raises(ValueError, match="teacher has 3 and the student 2"):
        losses.HintLoss("a", "b", metric="attention_kl")(probs((1, 3, 4, 4)), probs((1, 2, 4, 4)))


# ------------------------------------------------------------------------------------ models
def tf_keras_transformer(width, heads, blocks, length=T, vocab=VOCAB, name="student"):
    """A tiny tf-keras encoder following the named-layer contract."""
    L = keras.layers
    ids = keras.Input((length,), dtype="int32", name="ids")
    mask = L.Lambda(lambda t: tf.not_equal(t, 0), name="mask")(ids)
    keys = L.Lambda(lambda m: m[:, None, :], name="key_mask")(mask)
    x = L.Embedding(vocab, width, name="token_embedding")(ids)
    x = L.Activation("linear", name="embeddings")(L.LayerNormalization()(x))
    for i in range(blocks):
        v = L.Activation("linear", name=f"values_{i}")(L.Dense(width)(x))
        out, scores = L.MultiHeadAttention(heads, width // heads)(x, v, attention_mask=keys,
                                                                 return_attention_scores=True)
        out = anchor(out, L.Activation("linear", name=f"attention_{i}")(scores))
        x = L.LayerNormalization()(L.Add()([x, out]))
        x = L.Activation("linear", name=f"hidden_{i}")(L.Dense(width, activation="gelu")(x))
    pooled = L.GlobalAveragePooling1D()(x, mask=mask)
    return keras.Model(ids, L.Dense(3, name="output")(pooled), name=name)


def keras3_transformer(width, heads, blocks, length=T, vocab=VOCAB):
    """The same tiny encoder in Keras 3 (the kind of model a keras-hub teacher is)."""
    L, ops = keras3.layers, keras3.ops
    ids = keras3.Input((length,), dtype="int32", name="ids")
    mask = ops.not_equal(ids, 0)
    keys = ops.expand_dims(mask, 1)
    x = L.Embedding(vocab, width, name="token_embedding")(ids)
    x = L.Identity(name="embeddings")(L.LayerNormalization()(x))
    for i in range(blocks):
        v = L.Identity(name=f"values_{i}")(L.Dense(width)(x))
        out, scores = L.MultiHeadAttention(heads, width // heads)(x, v, attention_mask=keys,
                                                                 return_attention_scores=True)
        out = anchor(out, L.Identity(name=f"attention_{i}")(scores))
        x = L.LayerNormalization()(L.Add()([x, out]))
        x = L.Identity(name=f"hidden_{i}")(L.Dense(width, activation="gelu")(x))
    pooled = L.GlobalAveragePooling1D()(x, mask=mask)
    return keras3.Model(ids, L.Dense(3, name="output")(pooled), name="teacher")


@pytest.fixture(scope="module")
def teacher():
    keras3.utils.set_random_seed(0)
    return keras3_transformer(width=16, heads=2, blocks=4)


@pytest.fixture(scope="module")
def student():
    keras.utils.set_random_seed(0)
    return tf_keras_transformer(width=8, heads=2, blocks=2)


def test_uniform_layer_map_is_tinyberts():
    assert uniform_layer_map(2, 6) == {0: 2, 1: 5}
    assert uniform_layer_map(4, 12) == {0: 2, 1: 5, 2: 8, 3: 11}
    assert uniform_layer_map(3, 3) == {0: 0, 1: 1, 2: 2}
    assert uniform_layer_map(4, 2) == {0: 0, 1: 0, 2: 0, 3: 1}
    with pytest.raises(ValueError, match="student_blocks=0"):
        uniform_layer_map(0, 6)


def test_transformer_hints_default_mapping_and_projections(teacher, student):
    assert transformer_blocks(teacher, "teacher") == 4 and transformer_blocks(student, "student") == 2
    hints = transformer_hints(teacher, student, values=0.5, relation_heads=None)
    got = [(h.student_layer, h.teacher_layer, h.metric, h.projection, h.weight) for h in hints]
    assert got == [
        ("embeddings", "embeddings", "mse", True, 1.0),
        ("hidden_0", "hidden_1", "mse", True, 1.0),
        ("attention_0", "attention_1", "attention_kl", False, 1.0),
        ("values_0", "values_1", "value_relation", False, 0.5),
        ("hidden_1", "hidden_3", "mse", True, 1.0),
        ("attention_1", "attention_3", "attention_kl", False, 1.0),
        ("values_1", "values_3", "value_relation", False, 0.5),
    ]
    assert {h.relation_heads for h in hints if h.metric == "value_relation"} == {2}  # teacher's heads
    assert {h.padding_id for h in hints} == {0}
    assert len({h.name for h in hints}) == len(hints)
    explicit = transformer_hints(teacher, student, {1: "hidden_0", "hidden_0": 2}, attention=0, embeddings=0)
    assert [(h.student_layer, h.teacher_layer) for h in explicit] == [("hidden_0", "hidden_2"), ("hidden_1", "hidden_0")]
    assert transformer_hints(teacher, student, hidden=0, attention=0, embeddings=0) == []


def test_transformer_hints_refusals(teacher, student):
    with pytest.raises(ValueError, match=r"teacher layer 'hidden_7', which does not exist.*hidden_0, hidden_1, hidden_2, hidden_3"):
        transformer_hints(teacher, student, {0: "hidden_7"})
    with pytest.raises(ValueError, match=r"student layer 5, which does not exist.*hidden_0, hidden_1 "):
        transformer_hints(teacher, student, {5: 0})
    with pytest.raises(ValueError, match="maps the student layer hidden_1 twice"):
        transformer_hints(teacher, student, [(1, 0), ("hidden_1", 3)])
    plain = kd.build_mlp_student((4,), 3, hidden=(8,))
    with pytest.raises(ValueError, match="student .* has no transformer layers named hidden_0"):
        transformer_hints(teacher, plain)
    with pytest.raises(ValueError, match="Sequence lengths differ: the teacher takes 8 tokens and the student 6"):
        transformer_hints(teacher, tf_keras_transformer(8, 2, 2, length=6))
    three_heads = tf_keras_transformer(12, 3, 2)
    with pytest.raises(ValueError, match="teacher has 2 and the student 3.*value-relation / hidden-state"):
        transformer_hints(teacher, three_heads)
    assert len(transformer_hints(teacher, three_heads, attention=0.0)) == 3  # hidden-state KD still fine
    with pytest.raises(ValueError, match=r"relation_heads=3 must divide both value widths: teacher 16, student 12"):
        transformer_hints(teacher, three_heads, attention=0.0, values=1.0, relation_heads=3)
    relation = transformer_hints(teacher, three_heads, attention=0.0, hidden=0.0, embeddings=0.0, values=1.0)
    assert [h.relation_heads for h in relation] == [2, 2]  # the teacher's 2 heads divide 16 and 12
    with pytest.raises(ValueError, match=r"\(2\).*\(3\).*teacher 16, student 9.*relation_heads=1"):
        transformer_hints(teacher, tf_keras_transformer(9, 3, 2), attention=0.0, values=1.0)
    with pytest.raises(ValueError, match="hidden=-1"):
        transformer_hints(teacher, student, hidden=-1)


def test_transformer_hints_refuse_different_vocabularies(teacher, student, tmp_path):
    other = tf_keras_transformer(8, 2, 2, vocab=VOCAB + 10)
    with pytest.raises(ValueError, match=f"teacher's token embedding has {VOCAB} ids and the student's {VOCAB + 10}.*Logit KD alone"):
        transformer_hints(teacher, other)
    # Logit KD alone stays allowed: no hints, nothing refused.
    assert transformer_hints(teacher, other, hidden=0, attention=0, embeddings=0) == []
    kd.Distiller(student=other, teacher=teacher)
    # The caller vouches that both read the same vocabulary (e.g. an id map inside the student).
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(f"tok{i}" for i in range(VOCAB)), encoding="utf-8")
    assert len(transformer_hints(teacher, other, vocabulary=(str(vocab), vocab))) == 5
    with pytest.raises(ValueError, match="vocabulary has 50 tokens and the student's 40"):
        transformer_hints(teacher, student, vocabulary=(50, 40))
    tokens = [f"tok{i}" for i in range(VOCAB)]
    with pytest.raises(ValueError, match="differ at id 3: teacher 'tok3', student 'x'"):
        transformer_hints(teacher, student, vocabulary=(vocab, tokens[:3] + ["x"] + tokens[4:]))


def test_keras3_teacher_tf_keras_student_logits_plus_hints(teacher):
    keras.utils.set_random_seed(1)
    student = tf_keras_transformer(width=8, heads=2, blocks=2)
    n = 48
    lengths = RNG.integers(2, T + 1, size=n)
    x = RNG.integers(1, VOCAB, size=(n, T)).astype("int32")
    x[np.arange(T)[None] >= lengths[:, None]] = 0
    y = RNG.integers(0, 3, size=n)
    hints = transformer_hints(teacher, student, values=1.0)
    d = kd.Distiller(student=student, teacher=teacher, hints=hints)
    d.compile(optimizer=keras.optimizers.Adam(3e-3), alpha=0.5, temperature=2.0)
    teacher_before = [w.copy() for w in teacher.get_weights()]
    proj_before = {h.name: h._proj.kernel.numpy().copy() for h in hints if h.projection}
    assert len(proj_before) == 3  # embeddings and both mapped hidden states: 16 vs 8 wide
    h = d.fit(x, y, epochs=6, batch_size=16, verbose=0, shuffle=False)
    for key in ("loss", "hint_loss", "distillation_loss"):
        assert h.history[key][-1] < h.history[key][0], (key, h.history[key])
    for before, after in zip(teacher_before, teacher.get_weights()):
        np.testing.assert_array_equal(before, after)
    for hint in hints:
        if hint.projection:
            assert not np.allclose(hint._proj.kernel.numpy(), proj_before[hint.name])
    assert not any("projection" in w.name for w in d.student.weights)
    assert d.student.count_params() == student.count_params()
    assert d.student.output_shape == (None, 3)


def test_tap_keeps_attention_layers_and_round_trips(tmp_path):
    L = keras.layers
    ids = keras.Input((T,), dtype="int32")
    x = L.Embedding(VOCAB, 8)(ids)
    out, scores = L.MultiHeadAttention(2, 4)(x, x, return_attention_scores=True)
    L.Activation("linear", name="attention_0")(scores)  # a dead end: dropped from the model
    untapped = keras.Model(ids, L.Activation("linear", name="hidden_0")(out))
    assert "attention_0" not in [layer.name for layer in untapped.layers]
    with pytest.raises(ValueError, match="no layer named 'attention_0'.*models.anchor.anchor"):
        transformer_hints(untapped, untapped, hidden=0.0, embeddings=0.0)
    a, b = tf.constant([[1.0, 2.0]]), tf.constant([[5.0]])
    np.testing.assert_array_equal(Anchor()([a, b]).numpy(), a.numpy())
    assert anchor(a) is a  # nothing to keep: no layer
    run_serialization_test(Anchor(name="tap_0"))
    student = tf_keras_transformer(8, 2, 1)
    assert sum(isinstance(layer, Anchor) for layer in student.layers) == 1
    path = str(tmp_path / "student.keras")
    student.save(path)
    x = RNG.integers(0, VOCAB, size=(2, T)).astype("int32")
    np.testing.assert_allclose(keras.models.load_model(path, safe_mode=False).predict(x, verbose=0),
                               student.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_transformer_hints_read_a_vocabulary_cut_students_source_vocabulary(teacher):
    # A student with a vocabulary cut embeds 6 rows but takes ids of the teacher's VOCAB ids.
    cut = kd.build_transformer_student((T,), 3, vocab_size=VOCAB, width=8, depth=2, heads=2,
                                       token_map=[0, 1, 2, 5, 7], unk_id=1)
    assert len(transformer_hints(teacher, cut, attention=0.0)) == 3
    other = kd.build_transformer_student((T,), 3, vocab_size=VOCAB + 10, width=8, depth=2,
                                         heads=2, token_map=[0, 1, 2, 5, 7], unk_id=1)
    with pytest.raises(ValueError, match=f"has {VOCAB} ids and the student's {VOCAB + 10}"):
        transformer_hints(teacher, other, attention=0.0)
