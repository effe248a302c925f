"""The house shows its flow: no import cycles, and no import against the layers' one-way flow.

Bottom to top: ``_redact`` → ``_exceptions`` → ``catalog`` → ``request`` → ``results`` → ``fal`` → ``cache`` →
the ``Client`` (``_client``, ``_api``) → ``notebook`` → the command line.  A module may import its own
subpackage and the layers below it.  ``emulator`` sits beside them and shares only the catalog (and the
exception tree).  The notebook layer (presentation) never imports httpx nor the fal transport: it drives
the Client's public API.  Every import counts, at module level, inside functions, and under
``TYPE_CHECKING`` alike: a cycle of types is still a knot a reader has to untie.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "falnb"

#: layer of each top-level part of the package (higher may import lower, never the reverse)
LAYER: dict[str, float] = {
    "_exceptions": 0,
    "_redact": -1,
    "catalog": 1,
    "emulator": 2,
    "request": 2,
    "results": 3,
    "fal": 4,
    "cache": 5,
    "_fetch": 5.9,
    "_engine": 6.0,
    "_run": 6.1,
    "_args": 6.15,
    "_wiring": 6.15,
    "_client": 6.2,
    "_api": 7,
    "_litellm": 7,
    "notebook": 8,
    "_quickstart": 9,
    "_discover": 9,
    "_cli": 10,
    "__main__": 11,
    "__init__": 11,
}
#: imports forbidden although the layers allow them
FORBIDDEN = {
    ("notebook", "fal"): "presentation drives the Client, never the fal transport",
    ("request", "emulator"): "the request layer knows nothing of the emulator",
}
#: what the emulator may import of falnb
EMULATOR_MAY = {"emulator", "catalog", "_exceptions"}
#: third-party modules a part of falnb must never import
NEVER = {"notebook": {"httpx", "httpcore"}}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in the file, wherever it stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if is_pkg else name.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                stem = base[: len(base) - (node.level - 1)]
                mod = ".".join(stem + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from . import x`` may name a submodule
            found += [(f"{mod}.{a.name}", node.lineno) for a in node.names] + [(mod, node.lineno)]
    return found


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        for target, _ in _imports(name, path):
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != name and target.startswith("falnb"):
                graph[name].add(target)
    return graph


def test_every_part_has_a_layer() -> None:
    parts = {_part(m) for m in _modules()}
    assert parts <= set(LAYER), f"give these a layer: {sorted(parts - set(LAYER))}"


def test_no_import_cycles() -> None:
    graph = _graph()
    # a package imports its own modules when Python imports the package: count a module's
    # package as a dependency of the module too, then look for strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_follow_the_flow() -> None:
    bad = []
    for name, path in _modules().items():
        src = _part(name)
        for target, line in _imports(name, path):
            if not target.startswith("falnb"):
                top = target.split(".")[0]
                if top in NEVER.get(src, ()):
                    bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {target}")
                continue
            dst = _part(target) if target != "falnb" else "__init__"
            if dst == src or target == "falnb":
                continue
            why = None
            if src == "emulator" and dst not in EMULATOR_MAY:
                why = "the emulator shares only the catalog"
            elif (src, dst) in FORBIDDEN:
                why = FORBIDDEN[(src, dst)]
            elif LAYER[dst] >= LAYER[src] and not (dst == "emulator" and LAYER[src] > LAYER["emulator"]):
                why = f"{src} (layer {LAYER[src]}) may not import {dst} (layer {LAYER[dst]})"
            if why:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {target}: {why}")
    assert not bad, "imports against the flow:\n" + "\n".join(bad)


@pytest.mark.parametrize("sub", ["catalog", "request", "results", "fal", "cache", "notebook", "emulator"])
def test_each_layer_says_what_it_owns(sub: str) -> None:
    doc = ast.get_docstring(ast.parse((PKG / sub / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc) > 80 and "import" in doc.lower(), f"falnb/{sub}/__init__.py must say what it owns " \
                                                               "and what it may import"


def test_modules_stay_short() -> None:
    long = {str(p.relative_to(PKG.parent)): n for p in PKG.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert not long, f"split these modules (over 400 lines): {long}"
