import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras.compress import ensure_pruning_callbacks, prune, strip
from kdkeras.compress.pruning import PruneLowMagnitude
from kdkeras.compress.quantization import float_layers
from kdkeras.distill.teachers import feature_model
from kdkeras.models import BUILDERS
from kdkeras.models.transformer import (
    AttentionWithValues,
    build_transformer_student,
    value_projection,
    vocabulary_cut,
)

SEQ = 8


def toy_ids(n_per_class=24, vocab=60, seed=0):
    """[CLS]=2 words [SEP]=3 then padding; class 0 uses ids 10-29, class 1 ids 30-49."""
    rng = np.random.default_rng(seed)
    x = np.zeros((2 * n_per_class, SEQ), np.int32)
    y = np.repeat([0, 1], n_per_class)
    for i, label in enumerate(y):
        n = rng.integers(2, SEQ - 1)
        x[i, 0], x[i, n + 1] = 2, 3
        x[i, 1:n + 1] = rng.integers(10, 30, n) + 20 * label
    return x, y.astype("int64")


def tiny(**kwargs):
    args = dict(vocab_size=60, width=16, depth=2, heads=2, dropout=0.0)
    args.update(kwargs)
    return build_transformer_student((SEQ,), 2, **args)


def test_registered_and_exposes_the_named_layers_of_the_contract():
    model = BUILDERS.get("transformer")((SEQ,), 3, vocab_size=60, width=16, depth=2, heads=4)
    assert model.input.dtype.name == "int32" and model.output_shape == (None, 3)
    assert model.layers[-1].name == "output"
    shapes = {n: model.get_layer(n).output_shape for n in
              ["embeddings", "hidden_1", "attention_1", "values_0"]}
    assert shapes == {"embeddings": (None, SEQ, 16), "hidden_1": (None, SEQ, 16),
                      "attention_1": (None, 4, SEQ, SEQ), "values_0": (None, SEQ, 16)}


def test_probes_are_masked_probabilities_and_the_value_projection(seed):
    model = tiny()
    x, _ = toy_ids(2)
    emb, att, val = feature_model(model, ["embeddings", "attention_0", "values_0"],
                                  "student")(x)[1:]
    np.testing.assert_allclose(att.numpy().sum(-1), 1.0, atol=1e-5)
    pad = x == 0
    assert np.abs(att.numpy()[pad[:, None, None, :].repeat(2, 1).repeat(SEQ, 2)]).max() < 1e-6
    mha = model.get_layer("self_attention_0")
    kernel, bias = mha.get_weights()[4:6]  # value kernel [d, H, dh] and bias [H, dh]
    expected = np.einsum("btd,dhk->bthk", emb.numpy(), kernel) + bias
    np.testing.assert_allclose(val.numpy(), expected.reshape(*x.shape, 16), atol=1e-5)


def test_value_projection_private_keras_api_is_where_kdkeras_expects_it():
    """Fails loudly if tf-keras moves MultiHeadAttention._value_dense (see value_projection)."""
    mha = kd.keras.layers.MultiHeadAttention(2, 4)
    q = tf.ones((1, 3, 8))
    mha(q, q)
    assert hasattr(mha, "_value_dense"), "tf-keras moved MultiHeadAttention._value_dense"
    assert tuple(value_projection(mha, q).shape) == (1, 3, 8)


def test_padding_does_not_change_the_logits(seed):
    model = tiny()
    x = np.array([[2, 11, 12, 3, 0, 0, 0, 0]], np.int32)
    shorter = build_transformer_student((4,), 2, vocab_size=60, width=16, depth=2, heads=2,
                                        max_length=SEQ, dropout=0.0)
    shorter.set_weights(model.get_weights())
    np.testing.assert_allclose(model(x).numpy(), shorter(x[:, :4]).numpy(), atol=1e-5)


def test_bad_sizes_are_refused_with_the_value():
    with pytest.raises(ValueError, match=r"width=30, heads=4"):
        tiny(width=30, heads=4)
    with pytest.raises(ValueError, match=r"depth=0"):
        tiny(depth=0)
    with pytest.raises(ValueError, match=r"max_length=4"):
        tiny(max_length=4)
    with pytest.raises(ValueError, match="unk_id=100"):
        tiny(token_map=[0, 5, 7])
    with pytest.raises(ValueError, match="strictly increasing"):
        tiny(token_map=[0, 7, 5, 100], vocab_size=200)


def test_vocabulary_cut_and_token_map_remap_unknown_ids_to_unk():
    x = np.array([[101, 2023, 999, 102, 0]], np.int32)
    cut = vocabulary_cut([x], 30522)
    assert cut.tolist() == [0, 100, 101, 102, 999, 2023]
    with pytest.raises(ValueError, match=r"\[0, 1000\)"):
        vocabulary_cut([x], 1000)
    model = build_transformer_student((5,), 2, width=16, depth=1, heads=2, token_map=cut)
    assert model.get_layer("token_embedding").input_dim == 6
    mapped = model.get_layer("token_map")(np.array([[101, 2023, 5000, 0]])).numpy()
    assert mapped.tolist() == [[2, 5, 1, 0]]  # 5000 is not in the cut: [UNK]'s new id 1


def test_parameter_counts_of_the_vocabulary_levers():
    full = tiny(vocab_size=30522, width=128, depth=4, heads=4).count_params()
    factorized = tiny(vocab_size=30522, width=128, depth=4, heads=4,
                      embedding_dim=32).count_params()
    cut = tiny(vocab_size=30522, width=128, depth=4, heads=4,
               token_map=np.arange(10000)).count_params()
    body = full - 30522 * 128
    assert factorized == body + 30522 * 32 + 32 * 128 + 128
    assert cut == body + 10000 * 128
    assert full > 2 * cut > 2 * factorized


def test_save_and_load_gives_identical_logits(tmp_path, seed):
    model = tiny(embedding_dim=8, token_map=[0, 2, 3, 11, 12, 13], vocab_size=200, unk_id=13)
    x = np.array([[2, 11, 12, 3, 0, 0, 0, 0], [2, 13, 50, 14, 3, 0, 0, 0]], np.int32)
    path = str(tmp_path / "s.keras")
    model.save(path)
    loaded = kd.keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())
    clone = kd.keras.Model.from_config(model.get_config())
    want = model.get_layer("token_map").get_config()
    assert (want["token_map"], want["vocab_size"], want["unk_id"]) == ([0, 2, 3, 11, 12, 13], 200, 13)
    for other in (clone, loaded):  # every argument survives, not only the defaults
        assert other.get_layer("token_map").get_config() == want
    # ids outside the map (50, 14) read as unk_id 13: the same logits as writing 13 there
    unk = np.array([[2, 13, 13, 13, 3, 0, 0, 0]], np.int32)
    np.testing.assert_array_equal(model(x).numpy()[1], model(unk).numpy()[0])


def test_pruning_wraps_every_dense_embedding_and_attention_and_still_trains(seed):
    model = tiny(embedding_dim=8)
    x, y = toy_ids()
    pruned = prune(model, target_sparsity=0.5, schedule="constant", frequency=1)
    wrapped = {l.layer.name for l in pruned.layers if isinstance(l, PruneLowMagnitude)}
    expected = {l.name for l in model.layers
                if isinstance(l, (kd.keras.layers.Dense, kd.keras.layers.Embedding,
                                  AttentionWithValues))}
    assert wrapped == expected and "self_attention_1" in wrapped and "token_embedding" in wrapped
    mha = next(l for l in pruned.layers if l.name == "prune_low_magnitude_self_attention_0")
    assert len(mha.pruning_vars) == 4  # query, key, value and output kernels
    pruned.compile(kd.keras.optimizers.Adam(1e-2),
                   kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                   metrics=["accuracy"])
    history = pruned.fit(x, y, epochs=8, batch_size=16, verbose=0,
                         callbacks=ensure_pruning_callbacks(pruned))
    assert history.history["loss"][-1] < history.history["loss"][0]
    small = strip(pruned)
    kernel = small.get_layer("self_attention_0").get_weights()[0]
    assert abs((kernel == 0).mean() - 0.5) < 0.05
    values = feature_model(small, ["values_0"], "student")(x[:2])[1]
    assert values.shape == (2, SEQ, 16)


def test_clones_and_takes_quantization_aware_training(seed):
    """QAT annotates the Dense layers and leaves attention, LayerNorm, embeddings and the named
    probes float; the probes survive the graph rebuild (a one-input probe once sliced the batch
    when Keras handed it back the bare tensor)."""
    model = tiny()
    x, y = toy_ids()
    clone = kd.keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_array_equal(clone.predict(x, verbose=0), model.predict(x, verbose=0))
    qat = kd.quantize_aware(model)
    quantized = {l.layer.name for l in qat.layers if hasattr(l, "quantize_config")}
    assert {"intermediate_0", "ffn_output_1", "output"} <= quantized
    assert not quantized & {"self_attention_0", "attention_layer_norm_0", "attention_0"}
    assert "self_attention_0" in float_layers(qat)
    qat.compile(kd.keras.optimizers.Adam(1e-2),
                kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = qat.fit(x, y, epochs=6, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # prune-preserving QAT: TF-MOT's PQAT registry calls the weight-free custom layers
    # supported and then has no config for them; they must stay float instead of failing.
    pqat = kd.quantize_aware(strip(prune(model, 0.5, schedule="constant", frequency=1)),
                             preserve_sparsity=True)
    assert {l.layer.name for l in pqat.layers if hasattr(l, "quantize_config")} == quantized
    assert "padding_mask" in float_layers(pqat)


def test_converts_to_tflite_and_matches_keras(tmp_path, seed):
    from ai_edge_litert.interpreter import Interpreter

    model = tiny(token_map=[0, 2, 3] + list(range(10, 50)) + [100], vocab_size=200)
    x, _ = toy_ids(4)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    flat = converter.convert()
    interpreter = Interpreter(model_content=flat)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int32 and len(interpreter.get_output_details()) == 1
    got = []
    for row in x:
        interpreter.set_tensor(inp["index"], row[None])
        interpreter.invoke()
        got.append(interpreter.get_tensor(out["index"])[0])
    np.testing.assert_allclose(np.array(got), model(x).numpy(), atol=1e-4)


def test_bigru_student_is_registered_learns_and_converts(tmp_path, seed):
    from tests.models.test_text_builders import toy_text

    model = BUILDERS.get("bigru")((12,), 2, vocab_size=20, embed_dim=8, hidden=8)
    assert model.output_shape == (None, 2) and model.layers[-1].name == "output"
    x, y = toy_text()
    model.compile(kd.keras.optimizers.Adam(3e-2),
                  kd.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, epochs=10, batch_size=16, verbose=0)
    xt, yt = toy_text(20, seed=1)
    assert model.evaluate(xt, yt, verbose=0)[1] > 0.9
    path = kd.export_tflite(model, str(tmp_path / "g.tflite"), "int8", representative_data=x)
    assert kd.evaluate_tflite(path, xt, yt, keras_model=model)["agreement_with_keras"] >= 0.95
