import keras
import keras_hub
import numpy as np
import pytest

from kdkeras.distill.teachers import feature_model
from kdkeras.models.bert import build_bert_classifier
from kdkeras.models.init_from_teacher import uniform_layer_map, init_from_teacher, svd_basis
from kdkeras.models.transformer import build_transformer_student

SEQ, VOCAB = 8, 100
IDS = np.array([[11, 5, 6, 12, 0, 0, 0, 0], [11, 7, 8, 9, 10, 12, 0, 0]], np.int32)


@pytest.fixture(scope="module")
def teacher():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2,
                                             hidden_dim=16, intermediate_dim=32,
                                             max_sequence_length=SEQ)
    return build_bert_classifier(backbone, 3, SEQ, dropout=0.0)


def student(**kwargs):
    args = dict(vocab_size=VOCAB, width=16, depth=2, heads=2, intermediate=32, dropout=0.0)
    args.update(kwargs)
    return build_transformer_student((SEQ,), 3, **args)


def test_same_width_copies_every_weight_and_reproduces_the_teacher(teacher):
    original = student()
    before = [w.copy() for w in original.get_weights()]
    new, report = init_from_teacher(original, teacher)
    assert not report.left and not report.projected
    assert len(report.copied) == 1 + 1 + 1 + 2 * 5 + 1  # token, position, LN, blocks, head
    for a, b in zip(before, original.get_weights()):  # the caller's student is untouched
        np.testing.assert_array_equal(a, b)
    enc = teacher.get_layer("encoder_probe_1").encoder
    np.testing.assert_array_equal(new.get_layer("intermediate_1").get_weights()[0],
                                  np.asarray(enc._feedforward_intermediate_dense.kernel))
    np.testing.assert_array_equal(new.get_layer("self_attention_0").get_weights()[6],
                                  np.asarray(teacher.get_layer("encoder_probe_0").encoder
                                             ._self_attention_layer._output_dense.kernel))
    np.testing.assert_array_equal(new.get_layer("token_embedding").get_weights()[0],
                                  np.asarray(teacher.get_layer("token_embedding").embeddings))
    names = ["hidden_1", "attention_1"]
    got = feature_model(new, names, "student")(IDS)
    want = feature_model(teacher, names, "teacher")(IDS)
    for g, w in zip(got, want):  # exact GELU (student) vs tanh GELU (teacher): ~1e-3 apart
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-2)


def test_smaller_width_projects_embeddings_with_the_best_rank_d_approximation(teacher):
    new, report = init_from_teacher(student(width=8, heads=2, intermediate=16), teacher)
    assert set(report.projected) == {"token_embedding", "position_embedding"}
    assert "self_attention_0" in report.left and "width 8 != teacher width 16" \
        in report.left["self_attention_0"]
    matrix = np.asarray(teacher.get_layer("token_embedding").embeddings)
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    rows = new.get_layer("token_embedding").get_weights()[0]
    np.testing.assert_allclose(np.abs(rows), np.abs(u[:, :8] * s[:8]), atol=1e-4)
    error = np.linalg.norm(matrix - rows @ svd_basis(matrix, 8).T)
    np.testing.assert_allclose(error, np.sqrt((s[8:] ** 2).sum()), rtol=1e-4)


def test_factorized_student_with_a_token_map_takes_the_kept_rows(teacher):
    keep = np.array([0, 5, 6, 7, 8, 9, 10, 11, 12, 13, 50, 100 - 1])
    s = student(embedding_dim=4, token_map=keep, unk_id=50)
    new, report = init_from_teacher(s, teacher)
    assert "kept ids" in report.projected["token_embedding"]
    rows = np.asarray(teacher.get_layer("token_embedding").embeddings)[keep]
    approx = (new.get_layer("token_embedding").get_weights()[0]
              @ new.get_layer("embedding_projection").get_weights()[0])
    _, sv, _ = np.linalg.svd(rows, full_matrices=False)
    np.testing.assert_allclose(np.linalg.norm(rows - approx), np.sqrt((sv[4:] ** 2).sum()),
                               rtol=1e-4)
    assert report.copied["self_attention_1"] == "transformer_layer_1/self_attention_layer"


def test_layer_map_every_other_layer_and_bad_maps(teacher):
    # the default is the uniform map the hints distil toward: 1 student block <- the last of 2
    new, report = init_from_teacher(student(depth=1), teacher)
    assert report.copied["self_attention_0"] == "transformer_layer_1/self_attention_layer"
    assert uniform_layer_map(1, 2) == {0: 1}
    new, report = init_from_teacher(student(depth=1), teacher, layer_map={0: 0})
    assert report.copied["ffn_output_0"] == "transformer_layer_0/feedforward_output_dense"
    with pytest.raises(ValueError, match=r"layer_map=\{0: 2\}"):
        init_from_teacher(student(depth=1), teacher, layer_map={0: 2})


def test_mismatched_heads_and_intermediate_are_left_and_reported(teacher):
    new, report = init_from_teacher(student(heads=4, intermediate=24), teacher)
    assert {"self_attention_0", "intermediate_0", "ffn_output_1"} <= set(report.left)
    assert report.copied["attention_layer_norm_0"].endswith("self_attention_layer_norm")


def test_vocabulary_mismatch_is_refused_naming_both_sizes(teacher):
    with pytest.raises(ValueError, match=r"has 60 tokens and the teacher's 100"):
        init_from_teacher(student(vocab_size=60), teacher)
    with pytest.raises(ValueError, match=r"embeddings='pca'"):
        init_from_teacher(student(), teacher, embeddings="pca")
