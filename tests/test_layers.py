"""The package's layers: every import points down, and no module imports itself back through others.

Read from the source (``ast``), function-level imports included: a lazy import is still a dependency. The layers,
bottom to top: base helpers -> class lists -> the model (the paper's method) -> data -> the training engine ->
the mini world -> the experiments companion (registry, reports, bench) -> the command line and the package facade.
The mini world plugs into the core through registries (presets, default CLIP weights, datasets), so nothing below
it imports it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import zegclip

PACKAGE = Path(zegclip.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("zegclip", *path.relative_to(PACKAGE).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()
LAYERS = [
    ("base", {"zegclip.typed", "zegclip.io", "zegclip.plugins"}),  # plugins: imported by name, on demand
    ("classes", {"zegclip.data.classes"}),
    ("model", {m for m in MODULES if m.startswith("zegclip.model")}),
    ("data", {m for m in MODULES if m.startswith("zegclip.data")} - {"zegclip.data.classes"}),
    ("engine", {m for m in MODULES if m.startswith("zegclip.engine")}),
    ("mini", {m for m in MODULES if m.startswith("zegclip.mini")}),
    ("experiments", {m for m in MODULES if m.startswith("zegclip.experiments")}),
    ("top", {"zegclip.cli", "zegclip.__main__", "zegclip"}),
]
LEVEL = {m: i for i, (_, members) in enumerate(LAYERS) for m in members}


def _imports(name: str, path: Path) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            for alias in node.names:
                deps.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
        elif isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
    return {d for d in deps if d in MODULES and d != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    assert sorted(set(MODULES) - set(LEVEL)) == []


def test_every_import_points_down():
    upward = [f"{m} ({LAYERS[LEVEL[m]][0]}) -> {d} ({LAYERS[LEVEL[d]][0]})"
              for m, deps in sorted(GRAPH.items()) for d in sorted(deps) if LEVEL[d] > LEVEL[m]]
    assert upward == []


def test_nothing_below_the_mini_world_imports_it():
    mini_level = [i for i, (layer, _) in enumerate(LAYERS) if layer == "mini"][0]
    below = [f"{m} -> {d}" for m, deps in GRAPH.items() if LEVEL[m] < mini_level
             for d in deps if d.startswith("zegclip.mini")]
    assert below == []


def test_data_helpers_sit_below_the_datasets():
    """File reading, label colours and root finding are leaves of the data layer: datasets, checks and the
    converters use them, never the reverse (so that a palette or a reader never pulls in torch datasets)."""
    leaves = {"zegclip.data.files", "zegclip.data.palettes", "zegclip.data.roots"}
    assert leaves <= set(MODULES)
    up = [f"{m} -> {d}" for m in sorted(leaves) for d in sorted(GRAPH[m])
          if d.startswith("zegclip.data") and d != "zegclip.data.classes"]
    assert up == []


def test_no_import_cycles():
    graph = {m: {d for d in deps if d != "zegclip"} for m, deps in GRAPH.items() if m != "zegclip"}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert cycles == []
