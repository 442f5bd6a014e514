"""One generic registry for the names that configs and the CLI use.

The Python API takes objects; configs and command-line flags take names. Every such name
(loss, quantization mode, student builder, data set, ...) is looked up through a
:class:`Registry`, so an unknown name always fails the same way, with the list of known ones.

Example:

>>> modes = Registry("quantization")
>>> @modes.register("int8")
... def _int8():
...     return "int8"
>>> modes.get("int8")()
'int8'
>>> modes.get("int9")
Traceback (most recent call last):
...
ValueError: Unknown quantization 'int9'. Did you mean 'int8'? Known: int8
"""

from __future__ import annotations

import difflib
from typing import Any, Dict, Iterator, List


class Registry:
    """A named mapping from strings to objects, with helpful errors.

    Args:
        kind: str. What the registry holds, used in error messages ("loss", "student").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: Dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Any:
        """Registers ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        Raises:
            ValueError: if ``name`` is already registered.
        """

        def _add(o: Any) -> Any:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered.")
            self._items[name] = o
            return o

        if obj is None:
            return _add
        return _add(obj)

    def unregister(self, name: str) -> Any:
        """Removes ``name`` and returns what was registered under it.

        Raises:
            ValueError: for an unknown name, with the known ones.
        """
        obj = self.get(name)
        del self._items[name]
        return obj

    def get(self, name: str) -> Any:
        """Returns the object registered under ``name``.

        Raises:
            ValueError: naming the unknown value, the closest known name and all known names.
        """
        if name in self._items:
            return self._items[name]
        known = ", ".join(self.names())
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"Unknown {self.kind} '{name}'.{hint} Known: {known}")

    def names(self) -> List[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
