"""The package's layout rules, checked on its source: layers import downward only, privacy is kept.

- no import cycle among ``sclandscape`` modules, counting imports inside functions, and no module
  importing the package itself (``__init__`` imports the modules);
- no module reads another module's private (``_name``) attributes;
- ``plots`` and ``report`` import neither JAX nor a module that computes;
- ``__all__`` lists exactly the names ``__init__`` re-exports;
- every ``module.name`` the package, the tests and the benchmarks read from a
  ``sclandscape`` module exists (a name moved by a refactoring fails here, not
  at run time in one branch of one command).
"""

import ast
import importlib
import pathlib
import re

import sclandscape

PACKAGE = pathlib.Path(sclandscape.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
ROOT = PACKAGE.parent


def _tree(name):
    return ast.parse((PACKAGE / f"{name}.py").read_text())


def _imports(name) -> set[str]:
    """``sclandscape`` modules imported by ``name`` anywhere in its source (functions included)."""
    found = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.ImportFrom) and node.module == "sclandscape":
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sclandscape."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("sclandscape.")}
    return found & set(MODULES)


def test_no_import_cycle():
    graph = {m: _imports(m) for m in MODULES}
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for dep in sorted(graph[m]):
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
                names = [a.name for a in node.names if a.name not in MODULES]
                offences += [f"{name}: from sclandscape import {n}" for n in names]
    assert not offences, offences


def test_no_module_reads_another_modules_private_names():
    offences = []
    for name in MODULES:
        aliases = {}
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.ImportFrom) and node.module == "sclandscape":
                aliases |= {(a.asname or a.name): a.name for a in node.names}
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sclandscape."):
                offences += [f"{name} imports {node.module}.{a.name}" for a in node.names if a.name[0] == "_"]
        for node in ast.walk(_tree(name)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
            ):
                offences.append(f"{name} uses {aliases[node.value.id]}.{node.attr}")
    assert not offences, offences


def test_plots_and_report_do_not_compute():
    for name in ("plots", "report"):
        modules = _imports(name)
        computing = {"scanner", "hessian", "optimum", "critical", "saddles", "variants"}
        assert not modules & computing, (name, modules)
        source = (PACKAGE / f"{name}.py").read_text()
        assert "import jax" not in source, name


def test_public_surface_is_all():
    exported = {n for n in dir(sclandscape) if not n.startswith("_")} - set(MODULES)
    assert set(sclandscape.__all__) == exported
    assert sclandscape.__version__


def _module_attributes(path: pathlib.Path) -> list[tuple[str, str, int]]:
    """``(module, name, line)`` for every ``alias.name`` in ``path`` whose ``alias`` is a ``sclandscape``
    module (``from sclandscape import m [as alias]``, ``import sclandscape.m as alias``)."""
    tree = ast.parse(path.read_text())
    aliases, rebound = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "sclandscape":
            aliases |= {(a.asname or a.name): a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("sclandscape.") and a.asname:
                    aliases[a.asname] = a.name.split(".")[1]
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
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
    files = [PACKAGE / f"{m}.py" for m in MODULES] + sorted((ROOT / "tests").glob("*.py"))
    files += sorted((ROOT / "benchmarks").glob("*.py"))
    missing = []
    for path in files:
        for module, name, line in _module_attributes(path):
            if not hasattr(importlib.import_module(f"sclandscape.{module}"), name):
                missing.append(f"{path.relative_to(ROOT)}:{line}: sclandscape.{module} has no {name!r}")
    assert not missing, "\n".join(missing)


def _repository_url() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(
        r'^\[project\.urls\]\s*\nRepository = "(https://github\.com/[^"/]+/[^"/]+)"', text, re.M
    )
    assert match, "pyproject.toml needs [project.urls] Repository"
    return match.group(1)


def test_readme_is_short_opens_with_the_two_commands_and_links_the_one_repository():
    readme = (ROOT / "README.md").read_text()
    lines = readme.splitlines()
    assert len(lines) < 180, len(lines)
    assert lines[2:6] == [
        "```",
        "make demo    # create the environment, install, run the default demonstration",
        "make test    # create the environment, install, run the tests",
        "```",
    ]
    owner_repo = _repository_url().removeprefix("https://github.com/")
    badge = f"https://colab.research.google.com/github/{owner_repo}/blob/main/notebooks/02_colab_tpu.ipynb"
    assert badge in readme
    assert readme.count("```python") == 1  # one Python example (and one of the command line)
    for link in re.findall(r"\]\(([^)#]+)\)", readme):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), link


def test_docs_hold_the_reference_and_stand_on_their_own():
    """What the README no longer carries is in docs/guide.md; no placeholder, no machine paths."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    for needle in (
        "--memory-budget",
        "SCLANDSCAPE_CACHE_DIR",
        "--coordinator",
        "check_gradient",
        "--optimizer adam",
        "DIR/.lock",
        "--resume",
        "sclandscape slice DIR",
        "hessian DIR --trace --density",
        "## Verdicts",
        "decided_by",
        "make bench-accelerator",
        "jax[tpu]",
        "progress=False",
        "sc.hessian_trace",
    ):
        assert needle in guide, needle
    texts = [ROOT / "README.md", ROOT / "notebooks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for path in texts:
        text = path.read_text()
        assert "<owner>" not in text, path
        assert not re.search(r"(?<![\w.])/(work|home|tmp|root)/", text), path
        assert "SPEC.md" not in text and "STYLE.md" not in text, path
