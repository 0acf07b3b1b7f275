"""The docs' listings of program output are the program's output (tests/docs_blocks.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_blocks import console_drifted, drifted


def test_generated_blocks_match_the_program():
    assert drifted() == [], "run: python tests/docs_blocks.py"


@pytest.mark.slow
def test_the_tutorials_console_output_is_the_programs():
    """check, analyze, compile --emit, --explain-defaults: exactly as the program prints them now."""
    assert console_drifted(only_quick=True) == [], "run: python tests/docs_blocks.py"


@pytest.mark.slow
def test_the_whole_tutorial_replays():
    """Every command of the tutorial runs, training included, and prints what the tutorial shows
    (numbers aside: timings and accuracies vary with the machine)."""
    assert console_drifted(only_quick=False) == [], "run: python tests/docs_blocks.py"


@pytest.mark.slow
def test_the_notebook_tutorial_runs_top_to_bottom_in_a_fresh_kernel():
    """docs/tutorial.ipynb, executed as a reader would run it: every cell without an error, and the
    outputs that matter are there (the rich displays, the pictures, the trained network's verdict)."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    path = Path(__file__).parent.parent / "docs" / "tutorial.ipynb"
    notebook = nbformat.read(path, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), (
        "commit the notebook with its outputs stripped"
    )
    nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    kinds = {kind for o in outputs for kind in o.get("data", {})}
    assert {"text/latex", "text/html", "image/png"} <= kinds
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert "Analysis(damped: explicit; order 1" in text
    assert "v[n] = -(h*f(x[n]) + v[n+1])/(c*h - 1)" in text  # the inverse, in steps
    difference = float(text.split("largest gradient difference, relative:")[1].split()[0])
    assert difference <= 1e-5  # reversible against autograd, float32
    assert "TrainedStability(damped: stable" in text
