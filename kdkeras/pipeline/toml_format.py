"""TOML text of a ``kdkeras run`` config: the commented file ``kdkeras init`` writes, and the
config section of ``report.md``.

Reading TOML is :meth:`kdkeras.pipeline.config.RunConfig.from_toml`; this module only writes it,
from a :class:`~kdkeras.pipeline.config.RunConfig` or from the plain dict a ``report.json``
holds (never validated again: a report renders wherever it is copied).

Example:

>>> toml_value({"hidden": [64], "name": "a"})
'{hidden = [64], name = "a"}'
>>> config_toml({"seed": 1, "prune": {"enabled": True}})
['seed = 1', '', '[prune]', 'enabled = true']
"""

from __future__ import annotations

import dataclasses
import textwrap
from typing import Any, Dict, List, Tuple

from kdkeras.pipeline.config import SECTIONS, RunConfig


def toml_value(value: Any) -> str:
    """``value`` (bool, number, string, list or table) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no TOML form for {value!r}")


def config_items(values: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """``(dotted key, value)`` for every key of a config dict (``RunConfig.to_dict()`` or the
    ``config`` of a ``report.json``), in its order."""
    items: List[Tuple[str, Any]] = []
    for key, value in values.items():
        if key in SECTIONS and isinstance(value, dict):
            items += [(f"{key}.{k}", v) for k, v in value.items()]
        else:
            items.append((key, value))
    return items


def config_toml(values: Dict[str, Any]) -> List[str]:
    """The lines of a config dict as TOML: top-level keys, then one ``[section]`` per table."""
    lines: List[str] = []
    section = None
    for key, value in config_items(values):
        head, _, name = key.rpartition(".")
        if head != section and head:
            lines += ["", f"[{head}]"]
            section = head
        lines.append(f"{name} = {toml_value(value)}")
    return lines


def _commented(obj) -> List[str]:
    lines = []
    for f in dataclasses.fields(obj):
        if f.name in SECTIONS:
            continue
        lines += ["# " + line for line in textwrap.wrap(f.metadata["doc"], 92)]
        lines.append(f"{f.name} = {toml_value(getattr(obj, f.name))}")
    return lines


def default_toml(cfg: "RunConfig | None" = None) -> str:
    """The config as commented TOML (default: the built-in job), for ``kdkeras init``."""
    cfg = cfg or RunConfig()
    lines = ["# kdkeras run configuration. Every key is optional: delete what you do not change.",
             "# Run it with: kdkeras run THIS_FILE --out DIR", ""]
    lines += _commented(cfg)
    for name, cls in SECTIONS.items():
        lines += ["", f"[{name}]", f"# {cls.__doc__.split(':', 1)[1].strip()}"]
        lines += _commented(getattr(cfg, name))
    return "\n".join(lines) + "\n"
