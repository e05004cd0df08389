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
