"""The tutorials are committed clean, with the fast switch, prose and checks.

Every code cell is committed without outputs or execution counts. What a
notebook must get right is checked by ``assert`` statements in its cells, so
nbval fails the run when a tutorial stops showing what its prose says.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_four_tutorials_are_there():
    names = [p.stem for p in NOTEBOOKS]
    for name in ("01_score_clips", "02_inspect_matched_dataset", "03_neuron_attributions",
                 "04_retrain_interactively"):
        assert name in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            assert "outputs" not in cell and "execution_count" not in cell
            continue
        where = f"{path.name} cell {i}"
        assert cell.outputs == [], f"{where} has outputs; clear them before committing"
        assert cell.execution_count is None, f"{where} has an execution count; clear it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_fast_switch_and_prose(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("DLABEL_FAST") == "1"' in code
    assert "%matplotlib inline" in code
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4
    assert any("\nassert " in "\n" + c.source for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["kernelspec"]["name"] == "python3"
