"""Imports show the architecture: no import cycles between modules, no import that goes up a layer, and an
import inside a function only with a comment that says why.

The layers, bottom up: console's core (accounts, regions, audit, jobs, shared page helpers) < vaults <
replication and restore < console.overview (the pages that read every app). Entry points (management
commands, URL confs, settings, the Celery app, migrations) may import what they drive.
"""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("console", "vaults", "replication", "restore")
LAYER = {"console": 0, "vaults": 1, "replication": 2, "restore": 2, "console.overview": 3}
ENTRY_POINTS = ("management.commands", "migrations", ".urls", "console.settings", "console.celery", "console.wsgi")


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    found = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            name = module_name(path)
            if "migrations" not in name:
                found[name] = path
    return found


def layer_of(name):
    if name.startswith("console.overview"):
        return LAYER["console.overview"]
    return LAYER[name.split(".")[0]]


def is_entry_point(name):
    return any(marker in name for marker in ENTRY_POINTS)


def imports_of(name, path, known):
    """(module imported, line, inside a function, the source line and the one above) of each import."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            targets = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parent = package.split(".")
                    parent = parent[: len(parent) - child.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                targets = [f"{base}.{alias.name}" for alias in child.names] + [base]
            for target in targets:
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.append((target, child.lineno, in_function, _comment_of(lines, child.lineno)))
            visit(child, nested)

    visit(tree, False)
    return found


def _comment_of(lines, lineno):
    """The comments on an import's line and on the lines of its block above (imports, comments, blanks)."""
    said = []
    i = lineno - 1
    while i >= 0:
        line = lines[i].strip()
        if "#" in line:
            said.append(line[line.index("#") :])
        if i < lineno - 1 and not (line.startswith(("from ", "import ", "#")) or not line):
            break
        i -= 1
    return " ".join(said)


def graph():
    known = modules()
    return known, {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles_between_modules():
    known, imports = graph()
    edges = defaultdict(set)
    for name, found in imports.items():
        edges[name]  # every module is a node
        for target, *_ in found:
            edges[name].add(target)
    assert cycles(edges) == []


def test_no_import_goes_up_a_layer():
    _, imports = graph()
    upward = [
        f"{name}:{line} imports {target}"
        for name, found in imports.items()
        if not is_entry_point(name)
        for target, line, _, _ in found
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_an_import_inside_a_function_says_why():
    _, imports = graph()
    unexplained = [
        f"{name}:{line} imports {target}"
        for name, found in imports.items()
        for target, line, in_function, context in found
        if in_function and "#" not in context
    ]
    assert unexplained == []


def test_the_checks_see_what_they_check():
    # the graph is not empty and it sees a known import of each kind (else the checks above pass for nothing)
    known, imports = graph()
    assert {"console.jobs", "vaults.services.backups", "replication.engine", "restore.writer"} <= set(known)
    assert any(target == "console.jobs" for target, *_ in imports["vaults.services.backups"])
    assert any(target.startswith("vaults.") for target, *_ in imports["replication.engine"])
    assert cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert layer_of("console.overview.billing") > layer_of("replication.models") > layer_of("console.models")
