"""The package's layout rules, checked on its source: layers import downward only, privacy is kept.

The package is a stack of subpackages, in the order data flows (``LAYERS``):
a module may import modules of its own layer and of the layers below it,
never above, counting imports inside functions and following imports
transitively. Further:

- no import cycle among ``sclandscape`` modules, and no module imports the package itself;
- no module reads another module's private (``_name``) attributes;
- ``folders`` and ``drawing`` import no JAX, directly or through what they import
  (the report and the figures of a finished folder need NumPy and matplotlib only);
- ``__all__`` lists exactly the names ``__init__`` re-exports;
- every ``module.name`` the package, the tests and the benchmarks read from a
  ``sclandscape`` module exists (a name moved by a refactoring fails here, not
  at run time in one branch of one command).
"""

import ast
import importlib
import pathlib
import subprocess
import sys

import sclandscape

PACKAGE = pathlib.Path(sclandscape.__file__).parent
ROOT = PACKAGE.parent
#: The subpackages, lowest first.
LAYERS = ("core", "numerics", "theory", "explore", "folders", "drawing", "studies", "cli")


def _dotted(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


FILES = {_dotted(p): p for p in sorted(PACKAGE.rglob("*.py"))}
MODULES = sorted(m for m in FILES if m.count(".") == 2)  # sclandscape.<layer>.<module>


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".")[1])


def _tree(module):
    return ast.parse(FILES[module].read_text())


def _imports(module) -> set[str]:
    """``sclandscape`` modules ``module`` imports anywhere in its source (functions included)."""
    found = set()
    for node in ast.walk(_tree(module)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sclandscape"):
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("sclandscape.")}
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: _imports(m) for m in MODULES}


def _closure(module) -> set[str]:
    seen, todo = set(), [module]
    while todo:
        for dep in GRAPH[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def test_every_module_lives_in_a_layer():
    top = [m for m in FILES if m.count(".") == 1 and m.split(".")[1] not in LAYERS]
    assert top == [], f"modules outside the layers: {top}"
    assert {m.split(".")[1] for m in MODULES} <= set(LAYERS)


def test_layers_import_downward_only_transitively():
    offences = []
    for m in MODULES:
        for dep in sorted(_closure(m)):
            if _layer(dep) > _layer(m):
                offences.append(f"{m} (layer {m.split('.')[1]}) reaches {dep}")
    assert not offences, "\n".join(offences)


def test_no_import_cycle():
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for dep in sorted(GRAPH[m]):
            visit(dep, path + [m])
        state[m] = "done"

    for m in MODULES:
        visit(m, [])


def test_no_module_imports_the_package_itself():
    """``__init__`` imports every public name's module (lazily, by name, which the cycle test cannot
    see): a module that imports the package closes a cycle through it."""
    offences = []
    for name in MODULES:
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Import) and any(a.name == "sclandscape" for a in node.names):
                offences.append(f"{name}: import sclandscape")
            if isinstance(node, ast.ImportFrom) and node.module == "sclandscape":
                offences += [f"{name}: from sclandscape import {a.name}" for a in node.names]
    assert not offences, offences


def _aliases(tree) -> dict[str, str]:
    """Local name -> ``sclandscape`` module, for ``from sclandscape.x import m [as a]``."""
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sclandscape"):
            out |= {(a.asname or a.name): f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.asname: a.name for a in node.names if a.name.startswith("sclandscape.") and a.asname}
    return {k: v for k, v in out.items() if v in MODULES}


def test_no_module_reads_another_modules_private_names():
    offences = []
    for name in MODULES:
        tree = _tree(name)
        aliases = _aliases(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sclandscape."):
                offences += [f"{name} imports {node.module}.{a.name}" for a in node.names if a.name[0] == "_"]
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
            ):
                offences.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    assert not offences, offences


def test_folders_and_drawing_import_no_jax():
    """Reading a finished folder, drawing its figures and writing its report need no JAX."""
    light = [m for m in MODULES if m.split(".")[1] in ("folders", "drawing")]
    code = "import sys\n" + "".join(f"import {m}\n" for m in light)
    code += "heavy = sorted(m for m in ('jax', 'jaxlib', 'optax') if m in sys.modules)\nprint(heavy)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_public_surface_is_all():
    exported = {n for n in dir(sclandscape) if not n.startswith("_")} - set(LAYERS)
    assert set(sclandscape.__all__) == exported
    assert sclandscape.__version__


def _module_attributes(path: pathlib.Path) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` for every ``alias.name`` in ``path`` whose ``alias`` is a ``sclandscape``
    module (``from sclandscape.x import m [as alias]``, ``import sclandscape.x.m as alias``)."""
    tree = ast.parse(path.read_text())
    aliases, rebound = _aliases(tree), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            rebound.add(node.id)  # a local that shadows a module name in some scope: not checked
        elif isinstance(node, ast.arg):
            rebound.add(node.arg)
    aliases = {k: v for k, v in aliases.items() if k not in rebound}
    return [
        (aliases[node.value.id], node.attr, node.lineno)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
    ]


def test_every_name_read_from_a_module_exists():
    files = [FILES[m] for m in MODULES] + sorted((ROOT / "tests").rglob("*.py"))
    files += sorted((ROOT / "benchmarks").glob("*.py"))
    missing = []
    for path in files:
        for module, name, line in _module_attributes(path):
            if not hasattr(importlib.import_module(module), name):
                missing.append(f"{path.relative_to(ROOT)}:{line}: {module} has no {name!r}")
    assert not missing, "\n".join(missing)
