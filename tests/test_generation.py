"""Perplexity and the decoding loop (kdkeras.generation), against numpy references."""

import numpy as np
import pytest

from kdkeras.generation import (
    STRATEGIES,
    generate,
    generation_speed,
    keras_next_logits,
    perplexity,
    token_nll,
)
from tests.export.lm_models import PATTERN, SEQ, VOCAB, pattern_after, trained_toy_lm

V = 7


def table_lm(seed=0, vocab=V):
    """A bigram "model": logits at a position = table[id at that position]."""
    table = np.random.default_rng(seed).normal(size=(vocab, vocab)).astype(np.float32) * 2

    def lm(ids):
        return table[np.asarray(ids)]

    lm.table, lm.vocabulary_size = table, vocab
    return lm


def reference_perplexity(table, x, y, w):
    logits = table[x].astype(np.float64)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    return np.exp((nll * w).sum() / w.sum())


def constant_lm(logits, context):
    logits = np.asarray(logits, np.float32)

    def lm(window):
        return np.broadcast_to(logits, (1, context, len(logits))).copy()

    return lm


@pytest.fixture(scope="module")
def toy():
    return trained_toy_lm()


# ------------------------------------------------------------------------------ perplexity


def test_perplexity_matches_numpy_and_ignores_zero_weights():
    rng = np.random.default_rng(1)
    lm = table_lm()
    x, y = rng.integers(0, V, (9, 5)), rng.integers(0, V, (9, 5))
    w = (rng.random((9, 5)) > 0.3).astype(np.float32)
    got = perplexity(lm, x, y, w, batch_size=4)
    assert got == pytest.approx(reference_perplexity(lm.table, x, y, w), rel=1e-9)
    y_changed = np.where(w > 0, y, (y + 1) % V)  # targets under weight 0 do not count
    assert perplexity(lm, x, y_changed, w, batch_size=2) == pytest.approx(got, rel=1e-9)
    frac = rng.random((9, 5))  # weighted mean with non-binary weights
    assert perplexity(lm, x, y, frac) == pytest.approx(
        reference_perplexity(lm.table, x, y, frac), rel=1e-9)


def test_uniform_logits_give_perplexity_v_and_token_nll_is_log_softmax():
    lm = constant_lm(np.zeros(V), 4)
    assert perplexity(lambda ids: np.zeros(ids.shape + (V,)), np.ones((3, 4), int),
                      np.zeros((3, 4), int)) == pytest.approx(V)
    logits = np.array([[1000.0, 0.0, -1000.0]])  # large: needs the log-sum-exp
    np.testing.assert_allclose(token_nll(logits, np.array([0, ])), [0.0], atol=1e-12)
    np.testing.assert_allclose(token_nll(logits, np.array([1])), [1000.0])
    assert callable(lm)


def test_perplexity_of_keras_model_equals_its_callable_and_keras3_works(toy):
    import keras as keras3

    model, _, (x, y, w) = toy
    direct = perplexity(model, x, y, w, batch_size=16)
    as_callable = perplexity(lambda ids: model.predict(ids, verbose=0), x, y, w, batch_size=7)
    assert direct == pytest.approx(as_callable, rel=1e-5)
    assert 1.2 < direct < 8.0  # noisy windows: well above 1, far below V=50
    ids = keras3.Input((SEQ,), dtype="int32")
    m3 = keras3.Model(ids, keras3.layers.Dense(VOCAB)(keras3.layers.Embedding(VOCAB, 4)(ids)))
    ref = lambda i: np.asarray(m3.predict(i, verbose=0))  # noqa: E731
    assert perplexity(m3, x, y, w) == pytest.approx(perplexity(ref, x, y, w), rel=1e-5)


@pytest.mark.parametrize("x, y, w, match", [
    (np.zeros((2, 3), int), np.zeros((2, 4), int), None, "same shape"),
    (np.zeros((2, 3)), np.zeros((2, 3), int), None, "integer token ids"),
    (np.zeros((2, 3), int), np.full((2, 3), V), None, f"id {V}"),
    (np.zeros((2, 3), int), np.zeros((2, 3), int), -np.ones((2, 3)), ">= 0"),
    (np.zeros((2, 3), int), np.zeros((2, 3), int), np.zeros((2, 3)), "0 everywhere"),
    (np.zeros((2, 3), int), -np.ones((2, 3), int), None, "negative token id"),
    (np.zeros((0, 3), int), np.zeros((0, 3), int), None, "N >= 1"),
])
def test_perplexity_refuses_bad_inputs(x, y, w, match):
    with pytest.raises(ValueError, match=match):
        perplexity(table_lm(), x, y, w)


def test_perplexity_refuses_bad_models():
    x = np.zeros((2, 3), int)
    with pytest.raises(TypeError, match="callable"):
        perplexity("model.keras", x, x)
    with pytest.raises(ValueError, match=r"logits \[B, T, V\]"):
        perplexity(lambda ids: np.zeros((2, V)), x, x)
    with pytest.raises(ValueError, match="NaN"):
        perplexity(lambda ids: np.full(ids.shape + (V,), np.nan), x, x)
    with pytest.raises(ValueError, match="batch_size"):
        perplexity(table_lm(), x, x, batch_size=0)


# ------------------------------------------------------------------------------ generate


def test_greedy_reads_the_last_real_position_of_a_right_padded_window():
    seen = []

    def lm(window):  # predicts (id at the position + 1) mod V; records the windows
        seen.append(window.copy())
        return np.eye(V, dtype=np.float32)[(window + 1) % V]

    out = generate(lm, [2, 3], max_new_tokens=6, context=4, pad_id=0)
    np.testing.assert_array_equal(out, [4, 5, 6, 0, 1, 2])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(seen[0], [[2, 3, 0, 0]])  # right-padded with pad_id
    np.testing.assert_array_equal(seen[1], [[2, 3, 4, 0]])
    np.testing.assert_array_equal(seen[3], [[3, 4, 5, 6]])  # longer: the last context tokens
    assert all(w.dtype == np.int32 and w.shape == (1, 4) for w in seen)
    np.testing.assert_array_equal(generate(lm, [6], 3, 4, pad_id=5), [0, 1, 2])


def test_stop_id_ends_generation_and_is_returned_and_zero_tokens_is_empty():
    lm = lambda w: np.eye(V, dtype=np.float32)[(w + 1) % V]  # noqa: E731
    np.testing.assert_array_equal(generate(lm, [1], 10, 3, stop_id=4), [2, 3, 4])
    assert generate(lm, [1], 0, 3).shape == (0,)
    np.testing.assert_array_equal(generate(lm, np.array([[1, 2]]), 2, 3), [3, 4])  # [1, n]


def test_top_k_and_top_p_sample_from_the_right_distribution():
    logits = np.log(np.array([0.5, 0.3, 0.1, 0.06, 0.04]))
    lm = constant_lm(logits, 2)
    n = 3000
    k2 = generate(lm, [0], n, 2, strategy="top_k", k=2, seed=0)
    assert set(k2) == {0, 1}
    assert np.mean(k2 == 0) == pytest.approx(0.5 / 0.8, abs=0.03)
    p = generate(lm, [0], n, 2, strategy="top_p", p=0.85, seed=1)  # 0.5+0.3 < 0.85: 3 kept
    assert set(p) == {0, 1, 2}
    assert np.mean(p == 2) == pytest.approx(0.1 / 0.9, abs=0.03)
    hot = generate(lm, [0], n, 2, strategy="top_k", k=5, temperature=0.5, seed=2)
    q = np.exp(logits / 0.5) / np.exp(logits / 0.5).sum()
    np.testing.assert_allclose(np.bincount(hot, minlength=5) / n, q, atol=0.03)
    full = generate(lm, [0], n, 2, strategy="top_p", p=1.0, seed=3)
    assert set(full) == set(range(5))


def test_sampling_is_reproducible_and_narrow_settings_are_greedy():
    lm = table_lm(3)
    greedy = generate(lm, [1, 2], 12, 5)
    np.testing.assert_array_equal(generate(lm, [1, 2], 12, 5, strategy="top_k", k=1), greedy)
    np.testing.assert_array_equal(
        generate(lm, [1, 2], 12, 5, strategy="top_p", p=1e-6, seed=4), greedy)
    a = generate(lm, [1, 2], 30, 5, strategy="top_k", k=5, seed=7)
    np.testing.assert_array_equal(a, generate(lm, [1, 2], 30, 5, strategy="top_k", k=5, seed=7))
    assert not np.array_equal(a, generate(lm, [1, 2], 30, 5, strategy="top_k", k=5, seed=8))
    np.testing.assert_array_equal(  # k larger than V is capped
        generate(lm, [1], 5, 5, strategy="top_k", k=999, seed=1),
        generate(lm, [1], 5, 5, strategy="top_k", k=V, seed=1))


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt_ids=[]), "prompt_ids is empty"),
    (dict(context=0), "context must be an integer >= 1"),
    (dict(strategy="beam"), r"Unknown strategy 'beam'. Known: \['greedy', 'top_k', 'top_p'\]"),
    (dict(k=0), "k must be an integer >= 1"),
    (dict(p=0.0), r"p must be a number in \(0, 1\]"),
    (dict(p=1.5), r"p must be a number in \(0, 1\]"),
    (dict(temperature=0.0), "temperature must be > 0. Received: temperature=0.0"),
    (dict(prompt_ids=[1, V]), f"the id {V} but the model has {V} tokens"),
    (dict(prompt_ids=[1, -2]), "negative token id -2"),
    (dict(prompt_ids=[0.5]), "integer token ids"),
    (dict(max_new_tokens=-1), "max_new_tokens"),
    (dict(pad_id=V), f"the id {V}"),
])
def test_generate_refuses_bad_arguments(kwargs, match):
    args = dict(prompt_ids=[1, 2], max_new_tokens=3, context=4)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate(table_lm(), **args)
    assert STRATEGIES == ("greedy", "top_k", "top_p")


def test_generate_refuses_bad_models():
    with pytest.raises(ValueError, match=r"\[1, context, V\] = \[1, 4, V\]"):
        generate(lambda w: np.zeros((1, V)), [1], 2, 4)
    with pytest.raises(ValueError, match="NaN"):
        generate(lambda w: np.full((1, 4, V), np.nan), [1], 2, 4)
    with pytest.raises(ValueError, match="no .context"):
        generate(table_lm(), [1], 2)
    with pytest.raises(ValueError, match="the id 9 but the model has 5 tokens"):  # after a call
        generate(constant_lm(np.zeros(5), 3), [1, 9], 2, 3)


def test_generate_takes_one_prompt_and_allows_ruled_out_tokens():
    for prompt, shape in [([[1, 2], [3, 4]], r"\(2, 2\)"), ([[[1, 2]]], r"\(1, 1, 2\)")]:
        with pytest.raises(ValueError, match=rf"one prompt.*Received: prompt_ids of shape {shape}"):
            generate(table_lm(), prompt, 2, context=4)
    assert generate(table_lm(), [[1, 2]], 2, context=4).tolist() == \
        generate(table_lm(), [1, 2], 2, context=4).tolist()
    banned = np.zeros(V, np.float32)
    banned[[0, 3]] = -np.inf  # a ruled-out token: never chosen, not an error
    for strategy in STRATEGIES:
        out = generate(constant_lm(banned, 4), [1], 20, context=4, strategy=strategy, seed=0)
        assert len(out) == 20 and not np.isin(out, [0, 3]).any()
    for bad in (np.inf, np.nan):
        row = banned.copy()
        row[1] = bad
        with pytest.raises(ValueError, match=r"NaN or \+inf logits"):
            generate(constant_lm(row, 4), [1], 2, context=4)
    with pytest.raises(ValueError, match="-inf for every token"):
        generate(constant_lm(np.full(V, -np.inf), 4), [1], 2, context=4)


# ------------------------------------------------------------------------------ a Keras LM


def test_keras_greedy_follows_the_trained_pattern(toy):
    model = toy[0]
    next_logits = keras_next_logits(model)
    assert next_logits.context == SEQ
    out = generate(next_logits, PATTERN[:3], 20)  # context from the adapter
    np.testing.assert_array_equal(out, pattern_after(PATTERN[2], 20))
    assert len(set(out.tolist())) >= 15  # not degenerate
    long_prompt = np.tile(PATTERN, 2)[:SEQ + 5]  # longer than the context
    np.testing.assert_array_equal(generate(next_logits, long_prompt, 5),
                                  pattern_after(long_prompt[-1], 5))
    speed = generation_speed(next_logits, PATTERN[:3], 5)
    assert speed > 0 and np.isfinite(speed)
