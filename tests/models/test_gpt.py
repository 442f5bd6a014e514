import keras as keras3
import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.compress import ensure_pruning_callbacks, prune, sparsity_report, strip
from kdkeras.compress.pruning import PruneLowMagnitude
from kdkeras.models import BUILDERS, build_gpt_student, build_gpt_teacher, gpt_teacher_from_preset
from kdkeras.models.gpt import ReversibleEmbedding, TiedLogits
from tests.helpers import run_serialization_test

T, V, D = 16, 50, 16


def student(**kwargs):
    args = dict(context=T, vocab_size=V, width=D, depth=2, heads=2, dropout=0.0)
    args.update(kwargs)
    return build_gpt_student(**args)


def teacher(**kwargs):
    args = dict(context=T, vocab_size=V, width=D, depth=1, heads=2, dropout=0.0)
    args.update(kwargs)
    return build_gpt_teacher(**args)


def lm_batch(n=8, seed=0):
    """Next-token windows over a repeating 4..11 cycle, the last window half padding."""
    rng = np.random.default_rng(seed)
    start = rng.integers(0, 8, n)
    x = (4 + (start[:, None] + np.arange(T + 1)) % 8).astype(np.int32)
    x, y = x[:, :-1].copy(), x[:, 1:].copy()
    sw = np.ones((n, T), np.float32)
    x[-1, T // 2:], y[-1, T // 2:], sw[-1, T // 2:] = 0, 0, 0.0
    return x, y, sw


def n_params(vocab, context, width, depth, intermediate=None):
    i = 4 * width if intermediate is None else intermediate
    return vocab * width + context * width + depth * (4 * width**2 + 9 * width + 2 * width * i
                                                      + i) + 2 * width


def test_registered_shapes_and_default_parameter_counts():
    model = BUILDERS.get("gpt")(context=T, vocab_size=V, width=D, depth=1, heads=2)
    assert model.input.name == "ids" and model.input.dtype.name == "int32"
    assert model.output_shape == (None, T, V) and model.output.dtype.name == "float32"
    assert model.count_params() == n_params(V, T, D, 1)
    # the defaults of the LM task: student vs keras-hub GPT-2 teacher
    assert build_gpt_student(context=128, vocab_size=5886).count_params() == 801_216
    assert n_params(5886, 128, 96, 2) == 801_216
    big = teacher(context=32, vocab_size=300, width=32, depth=2, heads=4, intermediate=48)
    assert big.count_params() == n_params(300, 32, 32, 2, intermediate=48)


def test_output_is_tied_to_the_input_embedding(seed):
    model = student()
    emb = model.get_layer("token_embedding")
    assert isinstance(emb, ReversibleEmbedding) and isinstance(model.get_layer("logits"),
                                                               TiedLogits)
    assert [w.name for w in model.trainable_weights].count(emb.embeddings.name) == 1
    x = lm_batch(2)[0]
    before = model(x).numpy()
    table = emb.embeddings.numpy()
    emb.embeddings.assign(table * 2.0)  # one variable: both ends change
    changed = model(x).numpy()
    assert not np.allclose(before, changed)
    # numpy reference of the output: final-norm states @ table^T
    features = kd.keras.Model(model.input, model.get_layer("final_layer_norm").output)(x)
    np.testing.assert_allclose(changed, np.einsum("btd,vd->btv", features, table * 2.0),
                               atol=1e-4)


def test_reversible_embedding_forward_reverse_and_config():
    emb = ReversibleEmbedding(7, 3)
    ids = tf.constant([[1, 6]])
    h = emb(ids)
    np.testing.assert_allclose(h.numpy(), emb.embeddings.numpy()[[1, 6]][None])
    np.testing.assert_allclose(emb(h, reverse=True).numpy(),
                               h.numpy() @ emb.embeddings.numpy().T, atol=1e-6)
    vectors, table = emb(ids, return_table=True)
    np.testing.assert_array_equal(table.numpy(), emb.embeddings.numpy())
    assert emb.get_prunable_weights() == [emb.embeddings]
    with pytest.raises(ValueError, match="exclude"):
        emb(h, reverse=True, return_table=True)
    run_serialization_test(ReversibleEmbedding(7, 3, name="e"))


def test_changing_a_token_never_changes_earlier_logits(seed):
    model = student()
    x = lm_batch(4)[0]
    base = model(x).numpy()
    for t in (0, 5, T - 1):
        other = x.copy()
        other[:, t] = (other[:, t] + 17) % V
        out = model(other).numpy()
        np.testing.assert_allclose(out[:, :t], base[:, :t], atol=1e-5)
        assert np.abs(out[:, t] - base[:, t]).max() > 1e-4  # and the token itself matters


def test_teacher_is_causal_and_tied(seed):
    model = teacher()
    x = lm_batch(2)[0]
    base = np.asarray(model(x))
    other = x.copy()
    other[:, 7] = 30
    np.testing.assert_allclose(np.asarray(model(other))[:, :7], base[:, :7], atol=1e-5)
    assert model.count_params() == n_params(V, T, D, 1)


def test_teacher_reads_token_0_as_a_real_token(seed):
    model = teacher()
    backbone = model.get_layer("logits").backbone
    x = lm_batch(2)[0]
    x[:, 5] = 0  # id 0 mid-window: GPT-2's "!", a real token (the last row is right-padded)
    out = np.asarray(model(x))
    h = backbone({"token_ids": x, "padding_mask": np.ones_like(x)})
    np.testing.assert_allclose(out, np.asarray(backbone.token_embedding(h, reverse=True)),
                               atol=1e-5)
    other = x.copy()
    other[:, 5] = 9
    changed = np.asarray(model(other))
    np.testing.assert_allclose(changed[:, :5], out[:, :5], atol=1e-5)  # earlier: unchanged
    assert np.abs(changed[:, 5:] - out[:, 5:]).max() > 1e-4  # the 0 is read, not masked


def test_prune_wraps_the_tied_embedding_once_trains_and_strips(seed):
    model = student(depth=1)
    x, y, sw = lm_batch(16)
    pruned = prune(model, target_sparsity=0.5, schedule="constant", frequency=1)
    wrapped = {l.layer.name: l for l in pruned.layers if isinstance(l, PruneLowMagnitude)}
    assert {"token_embedding", "block_0_attention", "block_0_intermediate"} <= set(wrapped)
    assert len(wrapped["token_embedding"].inbound_nodes) == 1  # one call, one pruning step
    pruned.compile(kd.keras.optimizers.Adam(1e-2),
                   kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = pruned.fit(x, y, sample_weight=sw, epochs=3, batch_size=8, verbose=0,
                         callbacks=ensure_pruning_callbacks(pruned))
    assert history.history["loss"][-1] < history.history["loss"][0]
    steps = int(pruned.optimizer.iterations.numpy())
    assert int(wrapped["token_embedding"].pruning_step.numpy()) == steps
    small = strip(pruned)
    table = small.get_layer("token_embedding").embeddings.numpy()
    assert abs((table == 0).mean() - 0.5) < 0.02
    assert any(l.name == "token_embedding" for l in sparsity_report(small).layers)
    np.testing.assert_allclose(small(x).numpy(), pruned(x).numpy(), atol=1e-5)
    features = kd.keras.Model(small.input, small.get_layer("final_layer_norm").output)(x)
    np.testing.assert_allclose(small(x).numpy(), np.einsum("btd,vd->btv", features, table),
                               atol=1e-4)  # still tied to the pruned table


def test_tf_mot_wrapper_forwards_reverse_but_counts_a_step_per_call():
    """Why the student ties through return_table: a twice-called wrapper steps twice."""
    import tensorflow_model_optimization as tfmot

    ids = kd.keras.Input((4,), dtype="int32")
    emb = ReversibleEmbedding(10, 8)
    twice = kd.keras.Model(ids, emb(emb(ids), reverse=True))
    schedule = tfmot.sparsity.keras.ConstantSparsity(0.5, 0, frequency=1)
    pruned = kd.keras.models.clone_model(twice, clone_function=lambda l: PruneLowMagnitude(
        l, pruning_schedule=schedule) if isinstance(l, ReversibleEmbedding) else l)
    wrapper = pruned.layers[-1]
    assert [n.call_kwargs for n in wrapper.inbound_nodes] == [{}, {"reverse": True}]
    pruned.compile("adam", kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.arange(32, dtype=np.int32).reshape(8, 4) % 10
    pruned.fit(x, x, batch_size=4, verbose=0, callbacks=ensure_pruning_callbacks(pruned))
    assert int(wrapper.pruning_step.numpy()) == 2 * 2


def test_student_save_and_load_gives_identical_logits(tmp_path, seed):
    model = student(max_length=24, intermediate=24, dropout=0.1)
    x = lm_batch(3)[0]
    path = str(tmp_path / "student.keras")
    model.save(path)
    loaded = kd.keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    assert loaded.get_layer("position_embedding").max_length == 24
    assert loaded.get_layer("block_0_intermediate").units == 24
    assert len(loaded.get_layer("token_embedding").inbound_nodes) == 1


def test_teacher_save_and_load_keeps_logits_and_the_tie(tmp_path, seed):
    model = teacher()
    x = lm_batch(3)[0]
    path = str(tmp_path / "teacher.keras")
    model.save(path)
    loaded = keras3.saving.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))
    assert loaded.count_params() == model.count_params()  # the output table is not duplicated


def test_distiller_with_keras3_teacher_trains_student_only(seed):
    s, t = student(depth=1), teacher()
    x, y, sw = lm_batch(16)
    frozen = [w.copy() for w in t.get_weights()]
    before = [w.copy() for w in s.get_weights()]
    d = kd.Distiller(student=s, teacher=t)
    d.compile(optimizer=kd.keras.optimizers.Adam(1e-2), alpha=0.5, temperature=2.0)
    history = d.fit(x, y, sample_weight=sw, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["distillation_loss"][-1])
    for a, b in zip(frozen, t.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(before, s.get_weights()))


def test_preset_teacher_loads_a_local_preset_and_explains_failures(tmp_path):
    import keras_hub

    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=V, num_layers=1, num_heads=2,
                                             hidden_dim=D, intermediate_dim=32,
                                             max_sequence_length=T)
    folder = str(tmp_path / "preset")
    backbone.save_to_preset(folder)
    model = gpt_teacher_from_preset(folder, context=8)
    assert model.output_shape == (None, 8, V)
    with pytest.raises(ValueError, match=r"context=32, max_length=16"):
        gpt_teacher_from_preset(folder, context=32)
    with pytest.raises(ValueError, match=r"(?s)'/no/such/preset'.*network.*save_to_preset"):
        gpt_teacher_from_preset("/no/such/preset")
    with pytest.raises(TypeError, match="preset=3"):
        gpt_teacher_from_preset(3)


@pytest.mark.parametrize("kwargs, message", [
    (dict(context=32, max_length=16), r"context=32, max_length=16"),
    (dict(width=30, heads=4), r"width=30, heads=4"),
    (dict(vocab_size=3), r"vocab_size must be an integer >= 4. Received: vocab_size=3"),
    (dict(context=0), r"context=0"),
    (dict(context=16.0), r"context=16.0"),
    (dict(depth=0), r"depth=0"),
    (dict(intermediate=-1), r"intermediate=-1"),
    (dict(dropout=1.0), r"dropout=1.0"),
    (dict(heads=True), r"heads=True"),
])
def test_bad_sizes_are_refused_with_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        student(**kwargs)
    with pytest.raises(ValueError, match=message):
        teacher(**kwargs)
