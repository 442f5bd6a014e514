"""Extension hooks of :meth:`kdkeras.Distiller.fit`, so the core never imports its extensions.

An extension (e.g. :mod:`kdkeras.compress`, whose pruning wrappers need TF-MOT's
``UpdatePruningStep`` callback) registers a function ``hook(model, callbacks) -> callbacks``;
``Distiller.fit`` passes its student and the user's callbacks through every registered hook.

Example:

>>> def add_nothing(model, callbacks):
...     return callbacks
>>> register_fit_callbacks(add_nothing) is add_nothing
True
>>> fit_callbacks(None, [])
[]
"""

from __future__ import annotations

from typing import Callable, List

__all__ = ["register_fit_callbacks", "fit_callbacks"]

FitCallbackHook = Callable[[object, list], list]
_HOOKS: List[FitCallbackHook] = []


def register_fit_callbacks(hook: FitCallbackHook) -> FitCallbackHook:
    """Registers ``hook(model, callbacks) -> callbacks`` (once; usable as a decorator)."""
    if not callable(hook):
        raise TypeError(f"A fit-callback hook must be callable. Received: {hook!r}")
    if hook not in _HOOKS:
        _HOOKS.append(hook)
    return hook


def fit_callbacks(model, callbacks) -> list:
    """``callbacks`` (a new list) passed through every registered hook, in order."""
    out = list(callbacks or [])
    for hook in _HOOKS:
        out = list(hook(model, out))
    return out
