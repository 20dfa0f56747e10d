"""The house plan, read from every module's own imports (AST: module level, inside functions and under
TYPE_CHECKING alike): each library stands only on the ones below it, leaves stand on nothing of ours,
nothing imports run/ or cli/ but themselves (and cli/ run/), and no module imports itself back through others.
"""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "icma_jax"

# Libraries (folders) and what each may import besides itself and the leaves that allow it.
LIBRARIES = {
    "data": set(),
    "models": {"data"},
    "retrieval": {"data", "models"},
    "eval": {"data", "models"},
    "training": {"data", "models"},
    "run": {"data", "models", "retrieval", "eval", "training"},
    "cli": {"data", "models", "retrieval", "eval", "training", "run"},
}
# Leaves (single modules importing nothing of ours) and who may use them.
EVERYONE = set(LIBRARIES)
LEAVES = {
    "_jraph": EVERYONE,
    "host_memory": EVERYONE,
    "progress": EVERYONE,
    "sharding": EVERYONE - {"data"},
    "distributed": {"training", "run", "cli"},
    "config": {"run", "cli"},  # the run config: converted once into the libraries' own configs
}


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(root: pathlib.Path) -> dict[str, dict[str, set[str]]]:
    """{module: {imported module of ours: names taken}} for every module under `root`, at any depth of the code."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    top = root.name
    out = {}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges: dict[str, set[str]] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == top or alias.name.startswith(top + "."):
                        edges.setdefault(alias.name, set())
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                if base != top and not base.startswith(top + "."):
                    continue
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{base}.{alias.name}"
                    edges.setdefault(sub if sub in modules else base, set()).add(alias.name)
        edges.pop(mod, None)
        out[mod] = edges
    return out


def unit(mod: str) -> str:
    """The library or leaf a module belongs to (`icma_jax.models.lora` -> `models`)."""
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "(package)"


def layering_errors(graph: dict[str, dict[str, set[str]]]) -> list[str]:
    errors = []
    for mod, edges in sorted(graph.items()):
        src = unit(mod)
        for dst_mod, names in sorted(edges.items()):
            dst = unit(dst_mod)
            if src == dst:
                ok = True
            elif src in LEAVES or src == "(package)":
                ok = False  # a leaf (and the package's own __init__) stands on nothing of ours
            elif dst in LEAVES:
                ok = src in LEAVES[dst]
            else:
                ok = dst in LIBRARIES.get(src, set())
            if not ok:
                errors.append(f"{mod} -> {dst_mod} ({', '.join(sorted(names)) or 'module'}): {src} may not "
                              f"import {dst}")
    return errors


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as its modules."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in graph:
                continue
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


def describe(graph, comp: list[str]) -> str:
    ties = [f"{a} -> {b} ({', '.join(sorted(graph[a][b])) or 'module'})" for a in comp for b in sorted(graph[a])
            if b in comp]
    return "cycle: " + "; ".join(ties)


def test_every_top_level_module_has_a_place():
    units = {unit(m) for m in imports(PACKAGE)} - {"(package)"}
    unplaced = sorted(units - set(LIBRARIES) - set(LEAVES))
    assert not unplaced, f"icma_jax/{unplaced} not in the plan of {__file__}: add it as a leaf or a library"


def test_libraries_stand_only_on_the_ones_below():
    errors = layering_errors(imports(PACKAGE))
    assert not errors, "\n".join(errors)


def test_no_import_cycles():
    graph = imports(PACKAGE)
    found = [describe(graph, c) for c in cycles(graph)]
    assert not found, "\n".join(found)


def test_the_reader_sees_hidden_imports_and_cycles(tmp_path):
    """A cycle closed by a function-level import and a TYPE_CHECKING import is found; so is a broken rule."""
    pkg = tmp_path / "icma_jax"
    for folder in ("data", "models"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "models" / "a.py").write_text("from icma_jax.models import b\n")
    (pkg / "models" / "b.py").write_text("def f():\n    from .c import g\n")
    (pkg / "models" / "c.py").write_text("import typing\n"
                                         "if typing.TYPE_CHECKING:\n    from icma_jax.models.a import A\n")
    (pkg / "data" / "d.py").write_text("def h():\n    import icma_jax.models.a\n")
    graph = imports(pkg)
    assert cycles(graph) == [["icma_jax.models.a", "icma_jax.models.b", "icma_jax.models.c"]]
    assert "icma_jax.models.b -> icma_jax.models.c (g)" in describe(graph, cycles(graph)[0])
    assert layering_errors(graph) == ["icma_jax.data.d -> icma_jax.models.a (module): data may not import models"]

