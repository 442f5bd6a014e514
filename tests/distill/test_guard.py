"""The divergence guard's verdict on one step (kdkeras.distill.guard.all_finite); the guard
in training is tested with the Distiller (tests/distill/test_distiller.py)."""

import numpy as np
import tensorflow as tf

import kdkeras as kd
from kdkeras.distill.guard import all_finite


def test_all_finite_sees_any_non_finite_gradient():
    """The guard's verdict: the loss and every gradient, IndexedSlices by their values, +inf
    and -inf in different gradients (which sum to NaN) included."""
    ok = [tf.ones((3, 2)), tf.constant([1e30, -1e30])]
    assert bool(all_finite(tf.constant(0.5), ok))
    assert not bool(all_finite(tf.constant(np.nan), ok))
    assert not bool(all_finite(tf.constant(np.inf), ok))
    assert not bool(all_finite(tf.constant(0.5), ok + [tf.constant([0.0, np.nan])]))
    assert not bool(all_finite(tf.constant(0.5), ok + [tf.constant([[0.0], [-np.inf]])]))
    assert not bool(all_finite(tf.constant(0.5), [tf.constant([np.inf]), tf.constant([-np.inf])]))
    assert bool(all_finite(tf.constant(0.5), [])) and not bool(all_finite(tf.constant(np.nan), []))
    rows = tf.IndexedSlices(tf.constant([[1.0, np.inf]]), tf.constant([3]), tf.constant([10, 2]))
    assert not bool(all_finite(tf.constant(0.5), ok + [rows]))
    assert bool(all_finite(tf.constant(0.5), [tf.IndexedSlices(tf.ones((2, 2)), tf.constant([0, 4]),
                                                               tf.constant([10, 2]))]))
    assert bool(all_finite(tf.constant(1.0, tf.float16), [tf.ones((2,), tf.bfloat16)]))
    # Gradients are checked by their sums: finite elements whose sum passes float32's range
    # count as non-finite (all_finite's docstring says so).
    assert not bool(all_finite(tf.constant(0.5), [tf.fill((4,), 3e38)]))


def test_only_known_dense_writes_are_gated_in_place():
    from kdkeras.distill.guard import _writes_gate_in_place

    v = tf.Variable(tf.zeros((4, 2)))
    dense = [(tf.ones((4, 2)), v)]
    rows = [(tf.IndexedSlices(tf.ones((1, 2)), tf.constant([1])), v)]  # an embedding's gradient
    adam = kd.keras.optimizers.Adam()
    adam.build([v])
    state = list(adam.variables) + [v]
    assert _writes_gate_in_place(adam, dense, state)
    assert not _writes_gate_in_place(adam, rows, state)  # scatter_* writes: copy-and-select
    on_gpu = kd.keras.optimizers.Adam()
    on_gpu.jit_compile = True  # what tf-keras sets with a GPU: updates in their own tf.function
    assert not _writes_gate_in_place(on_gpu, dense, state)
    own = type("OwnAdam", (kd.keras.optimizers.Adam,), {})()
    assert not _writes_gate_in_place(own, dense, state)
