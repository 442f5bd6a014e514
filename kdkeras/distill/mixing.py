"""Mixup and CutMix inside the Distiller: the teacher labels the mixed input.

Each training batch is mixed with a shuffled copy of itself (a mixing weight λ ~ Beta(α, α) per
example). The teacher then labels the *mixed* input, the soft target that function matching
asks for (Beyer et al. 2022), so the transfer set covers the space between examples. The
hard-label loss either uses the mixed labels (``labels="mixed"``: ``λ·y + (1−λ)·y_partner``,
as mixup trains) or is off (``labels="off"``: distillation only). Metrics are computed against
the label of the larger share, in the labels' own format.

Example:

>>> import numpy as np, tensorflow as tf
>>> tf.random.set_seed(0)
>>> x, y = np.ones((4, 8, 8, 1), "float32"), np.array([0, 1, 2, 3])
>>> xm, y_loss, y_metric = MixUp(0.4).mix(x, y, num_classes=5)
>>> tuple(xm.shape), tuple(y_loss.shape), tuple(y_metric.shape)
((4, 8, 8, 1), (4, 5), (4,))
>>> bool(np.allclose(np.sum(y_loss, axis=1), 1.0))
True

References:
    Zhang et al. "mixup: Beyond Empirical Risk Minimization", 2018.
    Yun et al. "CutMix: Regularization Strategy to Train Strong Classifiers", 2019.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import tensorflow as tf

from kdkeras.validation import check_number

__all__ = ["MixUp", "CutMix", "as_mix"]

LABEL_MODES = ("mixed", "off")


class _Mix:
    """A batch mix with a Beta(α, α) weight per example; subclasses implement :meth:`_mix_x`."""

    def __init__(self, alpha: float, labels: str = "mixed"):
        self.alpha = check_number(alpha, "alpha", low=0.0, low_open=True)
        if labels not in LABEL_MODES:
            raise ValueError(f"labels must be 'mixed' (mixed hard labels) or 'off' (distillation "
                             f"only). Received: labels={labels!r}")
        self.labels = labels

    def __repr__(self):
        return f"{type(self).__name__}(alpha={self.alpha}, labels={self.labels!r})"

    def _beta(self, n):
        a = tf.random.gamma(n, self.alpha)
        b = tf.random.gamma(n, self.alpha)
        return a / tf.maximum(a + b, 1e-12)

    def _mix_x(self, x, partner, lam) -> Tuple[tf.Tensor, tf.Tensor]:
        raise NotImplementedError

    def mix(self, x, y, num_classes: int) -> Tuple[tf.Tensor, Optional[tf.Tensor], Any]:
        """Returns ``(mixed x, labels for the loss or None, labels for the metrics)``.

        Raises:
            ValueError: one-hot labels whose width is not ``num_classes`` (both named), or a
                dict / list input.
        """
        if isinstance(x, (dict, list, tuple)):
            raise TypeError(f"{type(self).__name__} mixes a single input tensor; this student "
                            f"takes {type(x).__name__} inputs.")
        x = tf.convert_to_tensor(x)
        n = tf.shape(x)[:1]
        perm = tf.random.shuffle(tf.range(n[0]))
        x_mix, lam = self._mix_x(x, tf.gather(x, perm), self._beta(n))
        if y is None:
            return x_mix, None, None
        y = tf.convert_to_tensor(y)
        one_hot = y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] != 1
        if one_hot and y.shape[-1] != num_classes:
            raise ValueError(f"{type(self).__name__} got one-hot labels of width {y.shape[-1]} "
                             f"for a student with {num_classes} classes. Give class indices or "
                             f"one-hot rows of width {num_classes}.")
        y_metric = tf.where(tf.reshape(lam >= 0.5, [-1] + [1] * (y.shape.rank - 1)), y,
                            tf.gather(y, perm))
        if self.labels == "off":
            return x_mix, None, y_metric
        rows = tf.cast(y, tf.float32) if one_hot else tf.one_hot(
            tf.cast(tf.reshape(y, n), tf.int32), num_classes)
        lam_col = lam[:, None]
        return x_mix, lam_col * rows + (1.0 - lam_col) * tf.gather(rows, perm), y_metric


class MixUp(_Mix):
    """``x = λ·x + (1−λ)·x_partner`` per example, ``λ ~ Beta(alpha, alpha)``.

    Args:
        alpha: float > 0. Beta parameter (0.2–0.4 is usual; larger mixes more).
        labels: ``"mixed"`` or ``"off"`` (see the module docstring).
    """

    def __init__(self, alpha: float = 0.2, labels: str = "mixed"):
        super().__init__(alpha, labels)

    def _mix_x(self, x, partner, lam):
        w = tf.reshape(lam, [-1] + [1] * (x.shape.rank - 1))
        return tf.cast(w * tf.cast(x, tf.float32) + (1 - w) * tf.cast(partner, tf.float32),
                       x.dtype), lam


class CutMix(_Mix):
    """A box of the partner image pasted into each image; ``λ`` is the share left unpasted.

    Args:
        alpha: float > 0. Beta parameter of the box area (1.0 is usual).
        labels: ``"mixed"`` or ``"off"``.
    """

    def __init__(self, alpha: float = 1.0, labels: str = "mixed"):
        super().__init__(alpha, labels)

    def _mix_x(self, x, partner, lam):
        if x.shape.rank != 4:
            raise ValueError(f"CutMix works on image batches [batch, height, width, channels]. "
                             f"Received shape {tuple(x.shape)}; use MixUp for other inputs.")
        shape = tf.shape(x)
        h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        cut = tf.sqrt(1.0 - lam)
        cy = tf.random.uniform(shape[:1]) * h
        cx = tf.random.uniform(shape[:1]) * w
        y0, y1 = tf.clip_by_value(cy - cut * h / 2, 0, h), tf.clip_by_value(cy + cut * h / 2, 0, h)
        x0, x1 = tf.clip_by_value(cx - cut * w / 2, 0, w), tf.clip_by_value(cx + cut * w / 2, 0, w)
        y0, y1, x0, x1 = (tf.round(v) for v in (y0, y1, x0, x1))
        rows = tf.range(h)[None, :]
        cols = tf.range(w)[None, :]
        in_rows = (rows >= y0[:, None]) & (rows < y1[:, None])
        in_cols = (cols >= x0[:, None]) & (cols < x1[:, None])
        box = in_rows[:, :, None, None] & in_cols[:, None, :, None]
        area = (y1 - y0) * (x1 - x0) / (h * w)
        return tf.where(box, partner, x), 1.0 - area


def as_mix(mix: Any) -> Optional[_Mix]:
    """None, a :class:`MixUp` / :class:`CutMix`, or a TypeError naming what was given."""
    if mix is None or isinstance(mix, _Mix):
        return mix
    raise TypeError(f"mix must be kdkeras.distill.MixUp(...), CutMix(...) or None. Received: "
                    f"mix={mix!r}")
