"""The notebook in examples/: built from its jupytext source, and executed top to bottom (at tiny budgets:
SPGD_NOTEBOOK_QUICK=1) in a real Jupyter kernel, every cell, with the outputs it promises."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SOURCE, NOTEBOOK = EXAMPLES / "walkthrough.py", EXAMPLES / "walkthrough.ipynb"


def test_the_notebook_is_built_from_its_source():
    import jupytext

    built, stored = jupytext.read(SOURCE), jupytext.read(NOTEBOOK)
    cells = lambda nb: [(c.cell_type, c.source.strip()) for c in nb.cells]  # noqa: E731
    assert cells(stored) == cells(built), "rebuild it: jupytext --to ipynb examples/walkthrough.py"
    assert all(not c.get("outputs") for c in stored.cells if c.cell_type == "code")  # stored without outputs


@pytest.mark.slow
def test_the_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("SPGD_NOTEBOOK_QUICK", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)  # every cell ran
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream" and o.name == "stdout")
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # the face and its blur, the comparison, the angles, colourisation, own model
    for line in ("spgd       PSNR", "dps        PSNR", "classical  PSNR", "gl_angle_mean",
                 "spgd with the mirrored prior: PSNR", "DiscreteTimePrior from tiny-ddpm", "notebook ran in"):
        assert line in text, line
    # colourisation: the classical solve is the grey image itself; SPGD gives a colour image of the same size
    assert "grey measurement" in "".join(c.source for c in code)
