"""The notebooks execute without error at the tiny size (``SCLANDSCAPE_NOTEBOOK_SIZE=tiny``)."""

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")
NAMES = sorted(f for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb"))


def test_every_notebook_is_listed():
    assert NAMES == ["01_quickstart.ipynb", "02_colab_tpu.ipynb", "03_imbalance.ipynb"]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_clean(name):
    book = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    nbformat.validate(book)
    assert book.cells[0].cell_type == "markdown"
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "outputs must be stripped"


@pytest.mark.slow  # a kernel per notebook, 45-65 s each on 2 cores; the fast suite checks their calls
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_tiny_size(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SCLANDSCAPE_NOTEBOOK_SIZE", "tiny")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    book = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    client = nbclient.NotebookClient(
        book, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    images = [
        o for c in book.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})
    ]
    assert images, "the notebook drew no figure"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_calls_only_the_public_api(name):
    """Computation through ``import sclandscape as sc`` (names in ``__all__``); ``sclandscape.drawing.plots``
    draws; anything else reads a folder the command line wrote."""
    import ast

    import sclandscape

    book = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    code = "\n".join(c.source for c in book.cells if c.cell_type == "code")
    tree = ast.parse("\n".join(line for line in code.splitlines() if not line.lstrip().startswith("%")))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sclandscape"):
            assert node.module == "sclandscape.drawing" and [a.name for a in node.names] == ["plots"], (
                ast.unparse(node)
            )
        if isinstance(node, ast.Import):
            assert all(a.name == "sclandscape" for a in node.names if a.name.startswith("sclandscape"))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "sc":
            assert node.attr in sclandscape.__all__, f"sc.{node.attr} is not public"


def test_colab_cell_installs_from_a_reachable_source_and_only_on_colab():
    """The repository URL of pyproject.toml (no placeholder), an uploaded wheel first, and the
    accelerator judged by JAX itself after installing its build."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(os.path.dirname(NOTEBOOKS), "pyproject.toml"), "rb") as f:
        url = tomllib.load(f)["project"]["urls"]["Repository"]
    book = nbformat.read(os.path.join(NOTEBOOKS, "02_colab_tpu.ipynb"), as_version=4)
    first = next(c for c in book.cells if c.cell_type == "code").source
    assigned = [line for line in first.splitlines() if line.startswith("REPOSITORY = ")]
    assert assigned == [f'REPOSITORY = "{url}"']
    for needle in (
        '"google.colab" in sys.modules',
        "nvidia-smi",
        "/content/sclandscape-*.whl",
        "git+{REPOSITORY}.git",
    ):
        assert needle in first
    assert "jax[cuda12]" in first and "jax[tpu]" in first and "jax.devices()" in first
    owner_repo = url.removeprefix("https://github.com/")
    for cell in book.cells:
        assert "<owner>" not in cell.source
    assert (
        f"colab.research.google.com/github/{owner_repo}/blob/main/notebooks/02_colab_tpu.ipynb"
        in book.cells[0].source
    )
