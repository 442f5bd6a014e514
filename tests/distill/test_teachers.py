import numpy as np
import pytest
import tensorflow as tf

import kdkeras as kd
from kdkeras._keras_kind import is_keras3_model
from kdkeras.distill import logit_cache, teachers


@pytest.mark.parametrize("fmt", ["keras", "h5", "savedmodel"])
def test_load_teacher_from_files(tmp_path, trained_teacher, digits_data, fmt):
    (x, _), _ = digits_data
    if fmt == "savedmodel":
        path = tmp_path / "sm"
        tf.saved_model.save(trained_teacher, str(path))
    else:
        path = tmp_path / f"teacher.{fmt}"
        trained_teacher.save(path)
    t = teachers.load_teacher(path)
    np.testing.assert_allclose(t(x[:8]).numpy(), trained_teacher.predict(x[:8], verbose=0), rtol=1e-5, atol=1e-5)
    d = kd.Distiller(student=kd.build_mlp_student((8, 8, 1), 10, hidden=(4,)), teacher=str(path))
    assert isinstance(d.teacher, teachers.Teacher)


def test_load_keras3_file(tmp_path, digits_data):
    import keras as keras3

    (x, _), _ = digits_data
    m = keras3.Sequential([keras3.Input((8, 8, 1)), keras3.layers.Flatten(), keras3.layers.Dense(10)])
    m.save(tmp_path / "k3.keras")
    t = teachers.load_teacher(tmp_path / "k3.keras")
    assert is_keras3_model(t.model)
    np.testing.assert_allclose(t(x[:4]).numpy(), m.predict(x[:4], verbose=0), rtol=1e-5, atol=1e-6)


def test_missing_teacher_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="Teacher path does not exist"):
        teachers.load_teacher(tmp_path / "nope.keras")


def test_dict_outputs_need_a_key():
    def model(x):
        return {"logits": x * 2.0, "pooled": x}

    t = teachers.Teacher(model)
    np.testing.assert_allclose(t(np.ones((1, 3), "float32")).numpy(), 2.0)

    def ambiguous(x):
        return {"a": x, "b": x}

    with pytest.raises(ValueError, match=r"dict with keys \['a', 'b'\]; say which one"):
        teachers.Teacher(ambiguous)(np.ones((1, 3), "float32"))
    np.testing.assert_allclose(teachers.Teacher(ambiguous, output="b")(np.ones((1, 3), "float32")).numpy(), 1.0)


def test_not_a_teacher():
    with pytest.raises(TypeError, match="Received: int"):
        teachers.Teacher(3)


def _tiny_bert_classifier(num_classes=3):
    """A BERT text classifier with ~5k parameters and a 10-word vocabulary, built offline."""
    keras_hub = pytest.importorskip("keras_hub")
    import keras as keras3

    keras3.utils.set_random_seed(0)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a"]
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=16)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab), num_layers=1, num_heads=2, hidden_dim=16,
        intermediate_dim=32, max_sequence_length=32,
    )
    task = keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor
    )
    # The default head starts near zero (stddev 0.02); a wide one makes the logits tell inputs
    # apart, so a missing preprocessing or weight-loading step would show in the numbers.
    kernel = task.output_dense.kernel
    kernel.assign(np.random.default_rng(0).normal(0, 3.0, kernel.shape).astype("float32"))
    return task


def test_keras_hub_task_preset_is_a_teacher_of_raw_strings(tmp_path):
    task = _tiny_bert_classifier(num_classes=3)
    task.save_to_preset(str(tmp_path / "preset"))
    texts = np.array(["good movie", "bad", "the movie", "a bad movie", "good"])
    expected = task.predict(texts, batch_size=2, verbose=0)
    assert np.ptp(expected[:, 0]) > 1e-3  # the inputs give different logits

    t = teachers.load_teacher(tmp_path / "preset")
    assert type(t.model).__name__ == "BertTextClassifier" and t.name == "preset"
    logits = logit_cache.teacher_logits_for(t, texts[:2], 2)
    assert logits.dtype == np.float32 and logits.shape == (2, 3)
    np.testing.assert_allclose(logits, expected[:2], atol=1e-5)
    # Five inputs in batches of 2, through as_teacher, in order.
    np.testing.assert_allclose(logit_cache.teacher_logits_for(str(tmp_path / "preset"), texts, 2),
                               expected, atol=1e-5)
    ds = kd.cache_teacher_logits(t, (texts, np.arange(5)), batch_size=2, shuffle=False)
    x_c, y_c, l_c = (np.concatenate(part) for part in zip(*ds.as_numpy_iterator()))
    assert list(x_c) == [s.encode() for s in texts] and list(y_c) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(l_c, expected, atol=1e-5)


def test_keras_hub_backbone_preset_is_refused_with_the_fix(tmp_path):
    task = _tiny_bert_classifier()
    task.backbone.save_to_preset(str(tmp_path / "bb"))
    assert (tmp_path / "bb" / "metadata.json").is_file()
    with pytest.raises(ValueError, match=r"only a backbone \(keras_hub>BertBackbone\).*"
                                         r"XClassifier\(backbone=backbone, num_classes=.*save_to_preset"):
        teachers.load_teacher(tmp_path / "bb")
