"""Sequence-level KD: the teacher's continuations, checked against the one-prompt decoder."""

import numpy as np
import pytest

from kdkeras.distill.sequence_kd import teacher_continuations
from kdkeras.generation import generate, keras_next_logits
from kdkeras.models import build_gpt_student

T, V = 8, 20


@pytest.fixture(scope="module")
def teacher():
    from kdkeras import keras

    keras.utils.set_random_seed(0)
    return build_gpt_student(context=T, vocab_size=V, width=8, depth=1, heads=1, dropout=0.0)


@pytest.fixture(scope="module")
def windows():
    return np.random.default_rng(0).integers(4, V, (5, T)).astype("int32")


def test_greedy_equals_generate_row_by_row(teacher, windows):
    xs, ys, ws = teacher_continuations(teacher, windows, prompt_length=3, batch_size=2)
    lm = keras_next_logits(teacher)
    for row, x_row, y_row in zip(windows, xs, ys):
        expected = generate(lm, row[:3], T - 3 + 1, strategy="greedy")
        np.testing.assert_array_equal(x_row[3:], expected[:-1])
        assert y_row[-1] == expected[-1]
    np.testing.assert_array_equal(xs[:, :3], windows[:, :3])
    np.testing.assert_array_equal(xs[:, 1:], ys[:, :-1])
    assert ws.dtype == np.float32 and ws.shape == (5, T) and (ws == 1).all()


def test_sampling_is_seeded(teacher, windows):
    a = teacher_continuations(teacher, windows, 2, sampling="sample", seed=1)[0]
    b = teacher_continuations(teacher, windows, 2, sampling="sample", seed=1)[0]
    c = teacher_continuations(teacher, windows, 2, sampling="sample", seed=2, temperature=5.0)[0]
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert a.min() >= 0 and a.max() < V


def test_sampling_frequencies_follow_softmax():
    """A teacher whose next-token logits are fixed: sampled tokens follow its softmax."""
    logits = np.log(np.array([0.0, 0.0, 0.0, 0.0, 0.5, 0.3, 0.2]) + 1e-12).astype("float32")

    def fixed(x):
        return np.broadcast_to(logits, (*np.shape(x), len(logits))).copy()

    x = np.full((4000, 2), 4, np.int32)
    xs, ys, _ = teacher_continuations(fixed, x, 1, sampling="sample", seed=0, batch_size=4000)
    freq = np.bincount(ys[:, -1], minlength=7)[4:] / 4000
    np.testing.assert_allclose(freq, [0.5, 0.3, 0.2], atol=0.03)


def test_student_trains_on_the_continuations(teacher, windows):
    from kdkeras import keras

    xs, ys, ws = teacher_continuations(teacher, windows, 4)
    student = build_gpt_student(context=T, vocab_size=V, width=8, depth=1, heads=1)
    student.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = student.fit(xs, ys, sample_weight=ws, epochs=1, verbose=0).history["loss"][0]
    assert np.isfinite(loss)


@pytest.mark.parametrize("kwargs, match", [
    ({"prompt_length": 0}, "prompt_length"),
    ({"prompt_length": T + 1}, "prompt_length must be <= T"),
    ({"prompt_length": 2, "sampling": "beam"}, "Unknown sampling"),
    ({"prompt_length": 2, "temperature": 0.0}, "temperature"),
    ({"prompt_length": 2, "batch_size": 0}, "batch_size"),
])
def test_bad_arguments(teacher, windows, kwargs, match):
    with pytest.raises(ValueError, match=match):
        teacher_continuations(teacher, windows, **kwargs)


@pytest.mark.parametrize("x, match", [
    (np.arange(8), r"\[N, T\]"),
    (np.full((2, T), 1.5), "int token ids"),
    (np.full((2, T), -1), "negative ids"),
])
def test_bad_windows(teacher, x, match):
    with pytest.raises(ValueError, match=match):
        teacher_continuations(teacher, x, 2)


def test_bad_teacher_outputs(windows):
    with pytest.raises(ValueError, match=r"logits \[B, T, V\]"):
        teacher_continuations(lambda x: np.zeros((len(x), V), "float32"), windows, 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        teacher_continuations(lambda x: np.full((*np.shape(x), V), np.nan, "float32"), windows, 2)
