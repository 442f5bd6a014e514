"""README's "API reference" is complete and current: it lists every public name (each module's
``__all__``) under that module's heading, and nothing that is no longer public.

The section is read from README.md as text; the pure functions below are tested on small texts
first, so a failure on README says which names to add or remove.
"""

import importlib
import re
from pathlib import Path
from typing import Dict, Iterable, List

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
HEADING = "## API reference"
#: The modules whose ``__all__`` the reference must cover (each under ``### `module` ``).
REQUIRED = (
    "kdkeras",
    "kdkeras.distill",
    "kdkeras.losses",
    "kdkeras.models",
    "kdkeras.data",
    "kdkeras.compress",
    "kdkeras.export",
    "kdkeras.generation",
    "kdkeras.evaluation",
    "kdkeras.pipeline",
)
_MODULE = re.compile(r"^### `([\w.]+)`\s*$")
_ENTRY = re.compile(r"^- `([^`]+)`")
_DESCRIBED = re.compile(r"^- `[^`]+` — \S")


def api_section(text: str) -> str:
    """The lines after ``## API reference`` up to the next level-2 heading (fenced code skipped).

    Raises:
        ValueError: the text has no ``## API reference`` heading.
    """
    lines, inside, fenced = [], False, False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.rstrip() == HEADING:
            inside = True
            continue
        if inside and not fenced and line.startswith("## "):
            break
        if inside:
            lines.append(line)
    if not inside:
        raise ValueError(f"The text has no '{HEADING}' section (a line exactly '{HEADING}').")
    return "\n".join(lines)


def listed_names(section: str) -> Dict[str, List[str]]:
    """``{module: [names listed under its heading, in order]}`` of an API-reference section.

    Raises:
        ValueError: an entry comes before the first ``### `module` `` heading.
    """
    listed: Dict[str, List[str]] = {}
    module = None
    for line in section.splitlines():
        heading = _MODULE.match(line)
        if heading:
            module = heading.group(1)
            listed.setdefault(module, [])
            continue
        entry = _ENTRY.match(line)
        if entry:
            if module is None:
                raise ValueError(f"Entry {line!r} comes before any '### `module`' heading.")
            listed[module].append(entry.group(1))
    return listed


def coverage_problems(text: str, required: Iterable[str] = REQUIRED) -> List[str]:
    """Everything wrong with the API reference in ``text``, one line each (empty: all good)."""
    section = api_section(text)
    listed = listed_names(section)
    problems = [f"no '### `{m}`' heading" for m in required if m not in listed]
    problems += [f"entry without a one-line description: {line!r}" for line in section.splitlines()
                 if _ENTRY.match(line) and not _DESCRIBED.match(line)]
    for module_name, names in listed.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            problems.append(f"'### `{module_name}`' names a module that does not import: {e}")
            continue
        public = list(getattr(module, "__all__", ()))
        problems += [f"{module_name}: `{n}` is public (in __all__) but not listed"
                     for n in public if n not in names]
        for n in names:
            if n not in public:
                state = "is not public (not in __all__)" if hasattr(module, n) else "does not exist"
                problems.append(f"{module_name}: `{n}` is listed but {state}")
        problems += [f"{module_name}: `{n}` is listed {names.count(n)} times"
                     for n in sorted(set(names)) if names.count(n) > 1]
    return problems


def test_api_section_stops_at_the_next_level_two_heading_and_skips_code():
    text = (
        "# kdkeras\n## Other\n- `outside` — before the section\n"
        f"{HEADING}\nIntro.\n### `kdkeras.evaluation`\n- `a` — one\n"
        "```python\n## a comment in code, not a heading\n```\n- `b` — two\n"
        "## License\n- `after` — not in the section\n"
    )
    section = api_section(text)
    assert listed_names(section) == {"kdkeras.evaluation": ["a", "b"]}
    assert "outside" not in section and "after" not in section
    assert api_section(f"{HEADING}\n### `m`\n- `x` — at the end") == "### `m`\n- `x` — at the end"


def test_missing_section_and_entry_before_any_heading_are_refused():
    with pytest.raises(ValueError, match=r"no '## API reference' section"):
        api_section("# kdkeras\n## API\n- `x` — y\n")
    with pytest.raises(ValueError, match=r"Entry '- `x` — y' comes before any"):
        listed_names("- `x` — y\n### `kdkeras`\n")


def test_problems_name_missing_stale_duplicate_and_undescribed_entries():
    def problems(body, required=("kdkeras.evaluation",)):
        return coverage_problems(f"{HEADING}\n{body}", required)

    good = "### `kdkeras.evaluation`\n- `classification_metrics` — Accuracy and the rest.\n"
    assert problems(good) == []
    assert problems("") == ["no '### `kdkeras.evaluation`' heading"]
    assert problems("### `kdkeras.evaluation`\n") == [
        "kdkeras.evaluation: `classification_metrics` is public (in __all__) but not listed"]
    assert problems(good + "- `np` — numpy\n- `bogus` — nothing\n") == [
        "kdkeras.evaluation: `np` is listed but is not public (not in __all__)",
        "kdkeras.evaluation: `bogus` is listed but does not exist",
    ]
    assert problems(good + "- `classification_metrics` — again\n") == [
        "kdkeras.evaluation: `classification_metrics` is listed 2 times"]
    assert problems("### `kdkeras.evaluation`\n- `classification_metrics`\n") == [
        "entry without a one-line description: '- `classification_metrics`'"]
    assert problems(good + "### `kdkeras.nowhere`\n")[0].startswith(
        "'### `kdkeras.nowhere`' names a module that does not import")


def test_readme_api_reference_lists_every_public_name_and_nothing_stale():
    problems = coverage_problems(README.read_text(encoding="utf-8"))
    assert problems == [], "README's API reference is out of date:\n" + "\n".join(problems)
