"""The package's layout keeps its promises: no import cycles, no ``_private`` names crossing
packages, the core (``distill/``) never importing its extensions, modules of one concept.

Read from the source with ``ast`` (imports inside functions count too); nothing is imported.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kdkeras"


def _modules():
    mods = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(ROOT.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        mods[".".join(parts)] = f
    return mods


MODS = _modules()


def _imports(name, path):
    """``[(imported module, imported name or None)]`` of one module, relative imports resolved."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                if path.name != "__init__.py":
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                src = ".".join(base + ([node.module] if node.module else []))
            else:
                src = node.module or ""
            if src.startswith("kdkeras"):
                for alias in node.names:
                    full = f"{src}.{alias.name}"
                    out.append((full if full in MODS else src, alias.name))
        elif isinstance(node, ast.Import):
            out += [(a.name, None) for a in node.names if a.name.startswith("kdkeras")]
    return out


def _graph():
    """Module -> modules it imports; package ``__init__`` re-exports are left out (they are the
    public facade, not a dependency of concept)."""
    is_pkg = {m: p.name == "__init__.py" for m, p in MODS.items()}
    graph = {}
    for m, p in MODS.items():
        if is_pkg[m]:
            continue
        graph[m] = {t for t, _ in _imports(m, p) if t in MODS and t != m and not is_pkg[t]}
    return graph


def _reaches(graph, start):
    seen, stack = set(), [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def test_no_module_imports_one_that_imports_it_back():
    graph = _graph()
    cycles = sorted(m for m in graph if m in _reaches(graph, m))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_no_private_name_crosses_packages():
    pkg = lambda mod: mod.split(".")[1] if mod.count(".") else mod  # noqa: E731
    crossing = [f"{m} <- {src}.{n}" for m, p in MODS.items() for src, n in _imports(m, p)
                if n and n.startswith("_") and not n.startswith("__") and pkg(src) != pkg(m)]
    assert not crossing, crossing


@pytest.mark.parametrize("core_pkg", ["kdkeras.distill", "kdkeras.data", "kdkeras.models"])
def test_core_never_imports_the_extensions(core_pkg):
    extensions = ("kdkeras.compress", "kdkeras.export", "kdkeras.pipeline", "kdkeras.cli")
    bad = [f"{m} -> {t}" for m, p in MODS.items() if m.startswith(core_pkg)
           for t, _ in _imports(m, p) if t.startswith(extensions)]
    assert not bad, bad


def test_modules_are_small_and_say_what_they_are_for():
    for m, p in MODS.items():
        text = p.read_text()
        assert len(text.splitlines()) <= 450, f"{m} has {len(text.splitlines())} lines"
        assert ast.get_docstring(ast.parse(text)), f"{m} has no module docstring"


def test_tests_mirror_the_package():
    """Every package folder of kdkeras has its folder of tests."""
    tests = ROOT.parent / "tests"
    for sub in sorted(p for p in ROOT.iterdir() if (p / "__init__.py").exists()):
        assert (tests / sub.name).is_dir(), f"tests/{sub.name}/ is missing for kdkeras/{sub.name}/"
