"""The tutorials are committed clean, with the fast switch, and with prose.

nbval compares a ``# NBVAL_CHECK_OUTPUT`` cell only when the committed cell
has an execution count and outputs (an unrun reference is not compared), so
those cells, and only those, keep their expected plain-text ``stdout`` and
an execution count. Every other cell is committed without outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CHECK = "# NBVAL_CHECK_OUTPUT"


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
        if not cell.source.startswith(CHECK):
            assert cell.outputs == [], f"{where} has outputs; clear them (only {CHECK} cells keep theirs)"
            assert cell.execution_count is None, f"{where} has an execution count; clear it"
            continue
        assert cell.execution_count is not None, f"{where}: nbval compares a checked cell only with a count"
        for out in cell.outputs:
            assert out.output_type == "stream" and out.name == "stdout", f"{where}: checked output must be stdout"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_fast_switch_and_prose(path):
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("DLABEL_FAST") == "1"' in code
    assert "%matplotlib inline" in code
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4
    assert any(c.source.startswith(CHECK) for c in nb.cells if c.cell_type == "code")
    assert nb.metadata["kernelspec"]["name"] == "python3"
