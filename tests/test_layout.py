"""The package's layout by role (see docs/architecture.md): imports go down the floors, never
up, with no circles; outside ``models/`` nothing knows which family a model is."""
from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import re
from pathlib import Path

import mambairv2

SRC = Path(mambairv2.__file__).resolve().parent
#: floors, low to high; a module may import its own floor or lower ones
FLOORS = {
    "errors": 0, "defaults": 0,
    "utils": 1,
    "ops": 2,
    "models": 3,
    "inference": 4, "protocol": 4,
    "train": 5, "analysis": 5, "integrations": 5, "app": 5,
    "cli": 6, "__main__": 6,
}


def _modules() -> dict:
    mods = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> set:
    """Package modules ``name`` imports (function-level imports included)."""
    is_pkg = path.name == "__init__.py"
    pkg = name if is_pkg else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(name: str) -> int:
    parts = name.split(".")
    if len(parts) == 1:
        return -1  # the package face: imports nothing eagerly (names resolve on first use)
    return FLOORS[parts[1]]


def test_every_package_has_a_floor():
    tops = {n.split(".")[1] for n in MODULES if "." in n}
    assert tops <= set(FLOORS), f"packages without a floor: {sorted(tops - set(FLOORS))}"


def test_no_import_goes_up_a_floor():
    upward = [f"{a} -> {b}" for a, deps in GRAPH.items() for b in deps
              if b != "mambairv2" and len(a.split(".")) > 1 and _floor(b) > _floor(a)]
    assert not upward, "imports from a lower floor to a higher one:\n" + "\n".join(sorted(upward))


def test_only_the_command_line_imports_the_package_face():
    users = sorted(a for a, deps in GRAPH.items()
                   if "mambairv2" in deps and a != "mambairv2" and _floor(a) < FLOORS["cli"])
    assert not users, f"modules importing the package face instead of the module: {users}"


def test_no_import_circle():
    circles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in GRAPH[node]:
            if MODULES[dep].name == "__init__.py" and dep != node:
                continue  # package faces resolve their names lazily
            if state.get(dep) == "open":
                circles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)


#: optional extras whose own modules (e.g. the Triton kernels) import them at the top
OPTIONAL = ("triton",)


def test_restore_stays_the_function_after_importing_every_module():
    for info in pkgutil.walk_packages(mambairv2.__path__, "mambairv2."):
        if info.name.endswith("__main__") or ".comfyui" in info.name:
            continue
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as exc:  # a module of an optional extra that is not installed
            if exc.name not in OPTIONAL or importlib.util.find_spec(exc.name) is not None:
                raise
    assert callable(mambairv2.restore) and mambairv2.restore.__name__ == "restore"
    assert not isinstance(mambairv2.restore, type(mambairv2))


FAMILY_PATTERNS = [
    (re.compile(r"mambair_v1"), "the old v1 module"),
    (re.compile(r"hasattr\(model"), "duck typing a model"),
    (re.compile(r"getattr\(cfg"), "duck typing a config"),
    (re.compile(r"isinstance\([^)]*Config\b"), "branching on a config class"),
    (re.compile(r"models\.mambairv2\.|models\.mambair\.|from \.+models\.mambairv2|from \.+models\.mambair\b"),
     "importing a family's own modules"),
]


def test_outside_models_nothing_branches_on_the_family():
    found = []
    for name, path in MODULES.items():
        if name.startswith("mambairv2.models"):
            continue
        for i, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, what in FAMILY_PATTERNS:
                if pattern.search(line):
                    found.append(f"{path.relative_to(SRC.parent)}:{i}: {what}: {line.strip()}")
    assert not found, "\n".join(found)
