"""The running means of the loss parts a :class:`~kdkeras.Distiller` logs, kept in one metric.

``loss``, ``student_loss``, ``distillation_loss`` (and ``hint_loss``) are each the mean of the
per-batch values over the epoch, exactly what one ``keras.metrics.Mean`` per part gives. Three
``Mean`` trackers cost three reductions, six variable updates and three divisions in every train
step; :class:`LossMeans` keeps all the parts in two vector variables, so a step pays one stack,
two variable updates and one division (on an offline MLP student's 1.2 ms step, the two extra
trackers cost about 6% in one run: ``benchmarks/kd_speed_vs_peers.py``'s docstring).

Keras still sees one metric per part (:attr:`LossMeans.metrics`): the progress bar, ``History``,
``metrics_names`` and ``evaluate(return_dict=False)`` are unchanged.

>>> import tensorflow as tf
>>> means = LossMeans(["loss", "student_loss"])
>>> _ = means.update_state({"loss": tf.constant(2.0), "student_loss": tf.constant(1.0)})
>>> _ = means.update_state({"loss": tf.constant(4.0)})  # a part left out is not counted
>>> {m.name: float(m.result()) for m in means.metrics}
{'loss': 3.0, 'student_loss': 1.0}
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from kdkeras.distill.graph_code import graph_code


class LossMeans(keras.metrics.Metric):
    """Per-batch means of named scalar losses, in one ``total`` and one ``count`` vector.

    Its own :meth:`result` is the vector of means; Keras is shown one :class:`LossPart` per
    name (:attr:`metrics`), each with its scalar result.

    Args:
        names: the parts' names.
    """

    def __init__(self, names: Sequence[str], name: str = "loss_means", **kwargs):
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"LossMeans needs distinct part names. Received: {names!r}")
        super().__init__(name=name, **kwargs)
        self.names = names
        self.total = self.add_weight("total", shape=(len(names),), initializer="zeros")
        self.count = self.add_weight("count", shape=(len(names),), initializer="zeros")
        views = tuple(LossPart(name, index) for index, name in enumerate(names))
        # Set past Keras's tracking: a metric held in a layer's attribute becomes its sublayer,
        # and the views would then carry this metric's variables (and a cycle) into checkpoints.
        object.__setattr__(self, "_views", views)
        for view in views:
            object.__setattr__(view, "source", self)

    @property
    def metrics(self) -> List[keras.metrics.Metric]:
        """One metric per part, named after it, in the order of ``names``."""
        return list(self._views)

    @graph_code  # see kdkeras.distill.graph_code
    def update_state(self, parts: Dict[str, tf.Tensor]):
        """Adds each given part's value (a scalar) to its running mean; missing parts are not
        counted."""
        unknown = sorted(set(parts) - set(self.names))
        if unknown:
            raise KeyError(f"Unknown loss parts {unknown}; this metric keeps {list(self.names)}.")
        zero = tf.zeros((), self.dtype)
        values = [tf.cast(parts[n], self.dtype) if n in parts else zero for n in self.names]
        total = self.total.assign_add(tf.stack(values))
        # After the values: a step that fails to read its batch (the end of a dataset of unknown
        # length) must not count; a count with no input would run before the read fails.
        with tf.control_dependencies([total]):
            return self.count.assign_add(tf.constant([float(n in parts) for n in self.names],
                                                      self.dtype))

    @tf.autograph.experimental.do_not_convert  # see LossPart.result
    def result(self):
        """The vector of the parts' means (0 for a part not updated since the last reset)."""
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        for v in (self.total, self.count):
            v.assign(np.zeros(v.shape, v.dtype.as_numpy_dtype))

    def results(self, names: Sequence[str]) -> Dict[str, tf.Tensor]:
        """``{name: mean}`` of the given parts, from one :meth:`result`."""
        means = tf.unstack(self.result())
        return {n: means[self.names.index(n)] for n in names}


class LossPart(keras.metrics.Metric):
    """One part of a :class:`LossMeans`, as Keras's metric list shows it: its name and
    result; updated and reset through the whole."""

    def __init__(self, name: str, index: int, **kwargs):
        super().__init__(name=name, **kwargs)
        self.index = index

    def update_state(self, *args, **kwargs):
        raise TypeError(f"'{self.name}' is updated through its LossMeans, not on its own.")

    # Not through autograph: Keras converts a metric's result on every call, also eagerly at
    # each epoch's end, where that cost ~1 ms per metric (7 ms of a 115 ms MLP epoch).
    @tf.autograph.experimental.do_not_convert
    def result(self):
        return self.source.result()[self.index]

    def reset_state(self):
        self.source.reset_state()


def metrics_result(means: LossMeans, metrics: Sequence[keras.metrics.Metric]) -> Dict[str, tf.Tensor]:
    """``keras.Model.get_metrics_result`` for a model whose metrics include ``means``' parts:
    the parts are read in one go (one by one, each costs ~0.7 ms eagerly at every epoch's end)."""
    logs = means.results(means.names)
    for m in metrics:
        if not isinstance(m, LossPart):
            result = m.result()
            if isinstance(result, dict):  # as Keras's: a metric may return several values
                logs.update(result)
            else:
                logs[m.name] = result
    return logs
