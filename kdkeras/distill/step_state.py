"""What the train step would otherwise create inside its first trace: the optimizer's slots
and the compiled metrics.

``tf.function`` traces a function a second time when its first trace creates variables (once
to create them, once more to run without creating any). tf-keras builds the optimizer's slots in
the first ``apply_gradients`` and the compiled metrics in their first ``update_state``, both
inside that trace, so a plain ``fit`` traces its train step twice. :meth:`Distiller.fit`
creates both beforehand, eagerly, from the batch its preflight has already run, and the train
step is traced once (``benchmarks/kd_speed_vs_peers.py``'s docstring has the time it saves).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import tensorflow as tf

from kdkeras.distill.batches import labelled, metric_inputs
from kdkeras.distill.guard import is_legacy


def step_variables(distiller: Any) -> list:
    """What ``train_step`` trains: the student's trainable weights and the learned hint
    projections (the optimizer's slots are made for exactly these)."""
    return distiller.student.trainable_variables + [
        v for h in distiller.hints for v in h.trainable_variables]


def build_step_state(distiller: Any, sample: Optional[Tuple[Any, Any, Any, tf.Tensor]]) -> None:
    """Builds the optimizer's slots for the variables ``train_step`` trains and, given a checked
    batch ``(x, y, sample_weight, student_logits)`` with labels, the compiled metrics on the
    tensors ``train_step`` gives them. Anything already built is left as it is; legacy
    optimizers (no ``build``) create their slots in the trace as before."""
    variables = step_variables(distiller)
    optimizer = distiller.optimizer
    if not is_legacy(optimizer) and variables:
        optimizer.build(variables)  # a no-op once built
    metrics = getattr(distiller, "compiled_metrics", None)
    if sample is None or metrics is None or metrics._built:
        return
    _, y, sample_weight, s_logits = sample
    if y is None:  # an unlabelled transfer set: train_step updates no compiled metric
        return
    y, mask = labelled(tf.convert_to_tensor(y), s_logits, getattr(s_logits, "_keras_mask", None),
                       distiller.ignore_class)
    y_true, y_pred, _ = metric_inputs(y, s_logits, sample_weight, mask,
                                      distiller.ignore_class is not None)
    metrics.build(y_pred, metrics._conform_to_outputs(y_pred, y_true))
