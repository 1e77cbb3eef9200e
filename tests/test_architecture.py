"""The code's shape: every module sits in one layer of :data:`LAYERS` and imports only from its own layer or
lower ones (counting imports inside functions and ``TYPE_CHECKING`` blocks), there are no import cycles,
every module stays under 400 lines, and the package never imports Streamlit."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("inspector", "dashboard")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package and the dashboard."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _resolve(node: ast.ImportFrom, module: str, modules: dict[str, Path]) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not _is_package(module, modules):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _nearest(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` refers to (a submodule, or the package that defines the name)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Edges ``module -> imported project module``, from every import statement anywhere in the file."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, module, modules)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                hit = _nearest(target, modules)
                if hit is not None and hit != module:
                    graph[module].add(hit)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


#: The layers, lowest first: each entry is a module, or ``pkg.*`` for a package and everything in it. Every
#: module of ``inspector/`` and ``dashboard/`` is in exactly one layer, and ARCHITECTURE.md lists the same.
LAYERS: list[tuple[str, list[str]]] = [
    # what every layer may need, no domain rule: files, devices, versions, where things are, transformers'
    # internals, how numbers print
    ("foundation", ["inspector._lazy", "inspector._atomic", "inspector._compat", "inspector._devices",
                    "inspector._provenance", "inspector._locations", "inspector._hub", "inspector._gguf",
                    "inspector._fileformat", "inspector._formatting"]),
    # tensor math that capture and records need as much as analysis does
    ("math", ["inspector._topk", "inspector._aggregate", "inspector._value_math", "inspector._components",
              "inspector._readout", "inspector._lens_decode", "inspector._lens_math"]),
    ("records", ["inspector._records.*"]),
    ("load", ["inspector._architectures", "inspector._handle", "inspector._model_parts"]),
    # InspectorModel (load_model, generate) is the capture's front door, and the fallback models are InspectorModels
    ("capture", ["inspector._capture.*", "inspector._model", "inspector._fallback", "inspector._doctor"]),
    ("data", ["inspector.data.*"]),
    ("analysis", ["inspector.analysis.*", "inspector._metrics", "inspector.research.*"]),
    ("storage", ["inspector._store", "inspector._store_checks", "inspector._sequence_files", "inspector.runs.*"]),
    ("figures", ["inspector.plots.*"]),
    ("front ends", ["inspector", "inspector._notebook_html", "inspector._report", "inspector.cli.*", "dashboard.*"]),
]

#: Imports that still go up a layer, each with what would fix it. The test fails when one disappears (shrink
#: the list) as well as when a new one appears.
KNOWN_UPWARD: dict[tuple[str, str], str] = {
}


def _matches(entry: str, module: str) -> bool:
    return module == entry[:-2] or module.startswith(entry[:-1]) if entry.endswith(".*") else module == entry


def layer_of(module: str, layers: list[tuple[str, list[str]]] | None = None) -> int:
    """The index in ``layers`` (:data:`LAYERS`) of ``module``'s layer; ``KeyError`` naming the module when it
    is in none or in several."""
    layers = LAYERS if layers is None else layers
    hits = [i for i, (_, entries) in enumerate(layers) for e in entries if _matches(e, module)]
    if len(hits) != 1:
        where = "no layer" if not hits else f"layers {[layers[i][0] for i in hits]}"
        raise KeyError(f"{module} is in {where} of tests/test_architecture.py's LAYERS: list it in exactly one "
                       "(and in ARCHITECTURE.md)")
    return hits[0]


def upward_imports(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Edges ``(module, imported)`` whose imported module sits in a higher layer."""
    return {(m, t) for m, targets in graph.items() for t in targets if layer_of(t) > layer_of(m)}


def test_every_module_is_in_exactly_one_layer():
    problems = []
    for module in sorted(_modules()):
        try:
            layer_of(module)
        except KeyError as exc:
            problems.append(str(exc.args[0]))
    modules = _modules()
    for name, entries in LAYERS:
        problems += [f"LAYERS['{name}'] lists {e}, which is no module" for e in entries
                     if not any(_matches(e, m) for m in modules)]
    assert not problems, "\n".join(problems)


def test_an_unlisted_or_doubly_listed_module_is_refused():
    with pytest.raises(KeyError, match="inspector.brand_new is in no layer"):
        layer_of("inspector.brand_new")
    with pytest.raises(KeyError, match="inspector.capturex is in no layer"):  # a prefix is not a package
        layer_of("inspector.capturex")
    twice = [("low", ["inspector._capture.*"]), ("high", ["inspector._capture.engine"])]
    with pytest.raises(KeyError, match=r"inspector._capture.engine is in layers \['low', 'high'\]"):
        layer_of("inspector._capture.engine", twice)
    assert layer_of("inspector._capture.engine") == layer_of("inspector._capture") == layer_of("inspector._model")


def test_the_layer_check_finds_an_upward_import():
    assert upward_imports({"inspector._records.capture": {"inspector.runs.folder", "inspector._topk"},
                           "inspector._topk": set()}) == {("inspector._records.capture", "inspector.runs.folder")}


def test_imports_go_to_the_same_or_a_lower_layer():
    found = upward_imports(import_graph())
    new = sorted(found - set(KNOWN_UPWARD))
    gone = sorted(set(KNOWN_UPWARD) - found)
    assert not new, "imports that go up a layer (move the code they need down, or the importer up):\n" + "\n".join(
        f"{m} ({LAYERS[layer_of(m)][0]}) -> {t} ({LAYERS[layer_of(t)][0]})" for m, t in new)
    assert not gone, f"no longer imported upward, remove from KNOWN_UPWARD: {gone}"


def test_architecture_md_lists_every_module_in_its_layer():
    """ARCHITECTURE.md's ``## Layers``: one ``### name`` per layer of :data:`LAYERS`, in order, naming its
    entries and every module in it."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    assert "\n## Layers\n" in text, "ARCHITECTURE.md has no '## Layers' section"
    table = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    listed: dict[str, set[str]] = {}
    layer = None
    for line in table.splitlines():
        if line.startswith("### "):
            layer = line[4:].strip()
            listed[layer] = set()
        elif layer is not None:
            names = re.findall(r"`([A-Za-z_.*]+)`", line)
            listed[layer] |= {n for n in names if n.startswith(PACKAGES)}
    assert list(listed) == [name for name, _ in LAYERS], "ARCHITECTURE.md's layers differ from LAYERS (or their order)"
    modules = _modules()
    for i, (name, entries) in enumerate(LAYERS):
        want = set(entries) | {m for m in modules if layer_of(m) == i}
        assert listed[name] == want, (f"ARCHITECTURE.md's '### {name}' should list {sorted(want - listed[name])} "
                                      f"and not {sorted(listed[name] - want)}")


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles (each line one cycle):\n" + "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_module_size(module):
    path = _modules()[module]
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (at most {MAX_LINES}); split it by responsibility"


def test_package_never_imports_streamlit():
    offenders = []
    for module, path in _modules().items():
        if not module.startswith("inspector"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(module)
    assert not offenders, f"inspector modules importing streamlit: {offenders}"
