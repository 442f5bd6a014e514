"""Marks kdkeras's own step code as graph code that autograph leaves alone.

The Distiller's ``train_step``, ``test_step`` and ``call`` and the loss means' ``update_state``
have no Python control flow on tensors. tf-keras calls a train and test step unconverted, as it
calls its own (module ``tf_keras`` is on autograph's do-not-convert list, ``kdkeras`` is not),
except under ``jit_compile=True``: tf-keras then wraps the step in a ``tf.function`` of its own,
and autograph converted every kdkeras function the step calls (60 for an offline step) on the
first ``fit`` of each process. Offline MLP student, ``jit_compile=True``, fresh processes: first
``fit`` 4.10-4.53 s converted (three), 1.65-2.92 s marked (five). Keras converts a layer's
``call`` and a metric's ``update_state`` itself, with or without XLA, unless they are marked.

Marked, a function is called as tf-keras's own ``train_step`` is: unconverted, with autograph's
status unchanged, so whatever Keras converts in a plain ``fit`` is still converted -- a
student's or teacher's layers (``Layer.__call__``), losses (``Loss.__call__``), metrics
(``update_state``). ``tf.autograph.experimental.do_not_convert`` is not that: it disables
autograph for everything called within, and a student layer with a Python ``if`` on a tensor
would fail to trace.

TensorFlow has no public marker that keeps the status; this module is the one place that touches
the private one (``tests/distill/test_graph_code.py`` fails loudly if an upgrade moves it).
"""

from __future__ import annotations

from typing import Callable, TypeVar

from tensorflow.python.autograph.impl import api as _autograph_api

F = TypeVar("F", bound=Callable)


def graph_code(fn: F) -> F:
    """Marks ``fn`` so autograph calls it unconverted (its callees too, unless Keras converts
    them itself), under any status; returns ``fn``."""
    return _autograph_api.autograph_artifact(fn)


def is_graph_code(fn: Callable) -> bool:
    """True when autograph will call ``fn`` unconverted (marked by :func:`graph_code`)."""
    return _autograph_api.is_autograph_artifact(fn)
