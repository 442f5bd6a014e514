"""The stage functions alone, on small data: data subsets, epochs, builders, layers kept
from pruning, the teacher's inputs."""

import numpy as np
import pytest
import tf_keras as keras

from kdkeras.data import SplitData, load_builtin, subset_indices
from kdkeras.pipeline import RunConfig
from kdkeras.pipeline import stages as S
from tests.pipeline.runs import tiny


def test_other_seed_other_split():
    a = S.load_data(tiny())
    b = S.load_data(tiny(seed=1))
    assert not np.array_equal(a.y_test, b.y_test)
    assert np.array_equal(a.y_test, S.load_data(tiny()).y_test)


def test_load_data_draws_the_configured_subsets():
    data = S.load_data(tiny(seed=3, data={"n_train": 100, "n_test": 40}))
    full = load_builtin("digits", seed=3)
    assert isinstance(data, SplitData) and data.name == "digits" and data.kind == "images"
    assert (len(data.x_train), len(data.x_test)) == (100, 40)
    train = subset_indices(len(full.x_train), 100, 3)  # train: the seed, test: the seed + 1
    test = subset_indices(len(full.x_test), 40, 4)
    np.testing.assert_array_equal(data.x_train, full.x_train[train])
    np.testing.assert_array_equal(data.y_test, full.y_test[test])
    assert data.summary() == {"name": "digits", "kind": "images", "n_train": 100, "n_labels": 100,
                              "n_test": 40,
                              "num_classes": 10, "input_shape": [8, 8, 1]}


def test_load_data_of_a_text_folder_keeps_texts_with_their_ids(tmp_path):
    for label, word in (("neg", "bad"), ("pos", "good")):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(12):
            (tmp_path / "src" / label / f"{i}.txt").write_text(f"{word} film number{i}")
    cfg = RunConfig.from_dict({"data": {"source": str(tmp_path / "src"), "n_train": 10,
                                        "sequence_length": 4}})
    data = S.load_data(cfg)
    assert data.name == "src" and data.kind == "text" and data.x_train.shape == (10, 4)
    assert isinstance(data.texts_train, list) and len(data.texts_train) == 10
    for ids, text in zip(data.x_train, data.texts_train):  # the subset moved the texts too
        words = [data.vocabulary[i] for i in ids if i]
        assert words == text.split()[: len(words)]


@pytest.mark.parametrize("min_steps,epochs,n,expected", [
    (0, 3, 1347, 3),  # 0: the epochs as given
    (300, 1, 1347, 14),  # 22 steps per epoch: 14 epochs reach 300 steps
    (300, 20, 1347, 20),  # never lowered
    (300, 1, 100_000, 1),
    (10, 1, 5, 10),  # one step per epoch
])
def test_epochs_for(min_steps, epochs, n, expected):
    assert S.epochs_for(tiny(min_steps=min_steps), epochs, n) == expected


def _data(kind, shape=(6,), vocabulary=None):
    x = np.zeros((4,) + shape, "float32")
    return SplitData(x, np.arange(4) % 2, x, np.arange(4) % 2, ["a", "b"], kind,
                     vocabulary=vocabulary)


def test_the_teacher_schedule_is_cosine_or_constant():
    rate = S.learning_rate(3e-3, "cosine", epochs=2, n=1000, batch_size=100)  # 20 steps, 1 warm-up
    np.testing.assert_allclose([float(rate(t)) for t in (0, 1, 20)], [0.0, 3e-3, 0.0], atol=1e-9)
    np.testing.assert_allclose(float(rate(1 + 19 / 2)), 1.5e-3, rtol=1e-6)  # half-way: half the peak
    assert S.learning_rate(3e-3, "constant", 2, 1000, 100) == 3e-3


def test_auto_builders_follow_the_kind_of_data():
    assert S.builder_name("teacher", "auto", _data("images")) == "resnet_teacher"
    assert S.builder_name("student", "auto", _data("images")) == "cnn"
    assert S.builder_name("student", "auto", _data("text")) == "text"
    assert S.builder_name("student", "mlp", _data("images")) == "mlp"
    fn, name, kwargs = S.resolve_builder("student", "auto", {}, _data("features"))
    assert name == "mlp" and kwargs == {"hidden": [32]}
    _, _, kwargs = S.resolve_builder("teacher", "auto", {"hidden": [8]}, _data("features"))
    assert kwargs == {"hidden": [8]}  # the config's arguments win over auto's


def test_text_builders_get_the_vocabulary_size():
    data = _data("text", (5,), vocabulary=["", "[UNK]", "a", "b"])
    _, name, kwargs = S.resolve_builder("student", "auto", {}, data)
    assert name == "text" and kwargs == {"vocab_size": 4}
    model = S.build_model("student", "auto", {"embed_dim": 8}, data, seed=0)
    assert model.input_shape == (None, 5) and model.output_shape == (None, 2)


def test_builder_arguments_are_checked():
    with pytest.raises(ValueError, match=r"student.kwargs: builder 'mlp' takes no argument "
                                         r"\['filters'\]. It takes: hidden, name"):
        S.resolve_builder("student", "mlp", {"filters": 3}, _data("features"))


def test_build_model_is_seeded():
    a = S.build_model("student", "mlp", {"hidden": [8]}, _data("features"), seed=1)
    b = S.build_model("student", "mlp", {"hidden": [8]}, _data("features"), seed=1)
    assert all(np.array_equal(u, v) for u, v in zip(a.get_weights(), b.get_weights()))


def _two_dense(small_units=2):
    inputs = keras.Input((100,))
    hidden = keras.layers.Dense(50, name="big")(inputs)  # 5,050 weights
    return keras.Model(inputs, keras.layers.Dense(small_units, name="head")(hidden))


def test_small_layers_are_kept_from_pruning():
    model = _two_dense()  # head: 102 weights
    assert S.small_layers(model, 1000) == ("head",)
    assert S.small_layers(model, 0) == ()
    assert S.small_layers(model, 10_000) == ()  # every layer small: the model is pruned whole
    assert S.small_layers(model, 1000, skip=("big",)) == ()  # nothing left to prune otherwise


def test_teacher_inputs_are_raw_text_only_for_a_task_with_a_preprocessor():
    data = _data("text", (5,), vocabulary=["", "[UNK]"])
    data.texts_train, data.texts_test = ["a b", "c", "d", "e f"], ["x", "y", "z", "w"]

    class Task:
        preprocessor = object()

    raw = S.teacher_inputs(Task(), data)
    assert isinstance(raw, np.ndarray) and raw.dtype == object and list(raw) == data.texts_train
    assert list(S.teacher_inputs(Task(), data, test=True)) == data.texts_test
    assert S.teacher_inputs(_two_dense(), data) is data.x_train


def test_a_teacher_of_raw_text_or_several_inputs_has_no_tflite_file_to_compare():
    class Task:
        preprocessor = object()

    class Adapter:  # a loaded teacher: kdkeras.Teacher keeps the model in .model
        model = Task()

    assert "takes raw text through its preprocessor" in S.teacher_unconvertible(Task())
    assert S.teacher_unconvertible(Adapter()) == S.teacher_unconvertible(Task())
    a, b = keras.Input((3,)), keras.Input((4,))
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    assert S.teacher_unconvertible(two) == ("the teacher takes 2 inputs; the report feeds its "
                                            "files the data set's one input")
    assert S.teacher_unconvertible(_two_dense()) is None


def test_the_teacher_exports_as_a_float32_file_checked_against_it(tmp_path):
    from kdkeras.export import evaluate_tflite, inspect_tflite

    data = _data("features", (100,))
    data.x_train = np.random.default_rng(0).random((16, 100)).astype("float32")
    keras.utils.set_random_seed(0)
    teacher = _two_dense(small_units=3)
    path = S.export_teacher(tiny(), teacher, data, tmp_path / "t.tflite")
    info = inspect_tflite(path)
    assert [t["dtype"] for t in info["inputs"] + info["outputs"]] == ["float32", "float32"]
    assert info["tensor_dtypes"].get("int8", 0) == 0  # float32: nothing quantized
    res = evaluate_tflite(path, data.x_train, np.zeros(16, int), keras_model=teacher)
    assert res["agreement_with_keras"] == 1.0
    data.x_train[3, 7] = np.nan  # the training examples it is checked on go through the export
    with pytest.raises(ValueError, match="NaN"):
        S.export_teacher(tiny(), teacher, data, tmp_path / "bad.tflite")
    assert not (tmp_path / "bad.tflite").exists()


def test_scratch_gets_the_distilled_students_optimizer_steps_under_a_label_budget():
    cfg = tiny(data={"labels": 0.1}, distill={"epochs": 3})
    data = S.load_data(cfg)
    assert data.n_labels == round(0.1 * len(data.x_train))
    steps = 3 * int(np.ceil(len(data.x_train) / cfg.batch_size))
    epochs = S.scratch_epochs(cfg, data)
    per_epoch = int(np.ceil(data.n_labels / cfg.batch_size))
    assert (epochs - 1) * per_epoch < steps <= epochs * per_epoch
    assert S.scratch_epochs(tiny(distill={"epochs": 3}), S.load_data(tiny())) == 3


@pytest.mark.parametrize("bad", [-1, 1.5, float("nan")])
def test_label_budget_config_is_checked(bad):
    with pytest.raises(ValueError, match="data.labels"):
        tiny(data={"labels": bad})


def test_automatic_label_budget_is_10_percent_of_a_built_in_set_and_all_of_yours(tmp_path):
    assert S.label_budget(tiny(data={"labels": 0})) == 0.1  # digits: built in
    assert S.load_data(tiny(data={"labels": 0})).n_labels == round(0.1 * 1347)
    np.savez(tmp_path / "mine.npz", x=np.random.default_rng(0).random((40, 3)), y=np.arange(40) % 2)
    mine = tiny(data={"labels": 0, "source": str(tmp_path / "mine.npz")})
    assert S.label_budget(mine) == 1 and S.load_data(mine).labelled is None


@pytest.mark.slow
def test_a_label_budget_run_reports_the_labels_each_model_saw(tmp_path):
    from kdkeras.pipeline import report_markdown, run

    report = run(tiny(data={"labels": 300}), tmp_path / "budget", log=lambda s: None)
    labels = {m["name"]: m["labels"] for m in report["models"]}
    n_train = report["dataset_info"]["n_train"]
    assert labels["teacher"] == n_train and report["dataset_info"]["n_labels"] == 300
    assert labels["teacher_tflite_float32"] == n_train  # the teacher's file: the teacher's labels
    assert {v for k, v in labels.items() if not k.startswith("teacher")} == {300}
    md = report_markdown(report)
    assert f"the students saw 300 of the {n_train:,} training labels" in md
    assert "Distillation: student_distilled" in md
