"""The benchmark scripts run end to end at tiny sizes (their figures are not asserted: timings never
belong in tests; they are recorded in docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"
pytestmark = pytest.mark.skipif(not BENCHMARKS.is_dir(), reason="no source checkout with benchmarks/")


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, check=True)
    return done.stdout


def test_analysis_speed_runs():
    out = _run(str(BENCHMARKS / "analysis_speed.py"), "--repeat", "1")
    assert "leapfrog" in out and out.strip().splitlines()[-1].startswith("slowest median")


@pytest.mark.slow
def test_memory_depth_runs_and_prints_its_table():
    out = _run(
        str(BENCHMARKS / "memory_depth.py"), "--depths", "2", "--functions", "mlp", "--schemes", "leapfrog"
    )
    assert "| leapfrog | reversible |" in out
    assert "error" not in out.split("### mlp")[1]


@pytest.mark.slow
def test_memory_budget_runs_and_prints_its_curve():
    out = _run(str(BENCHMARKS / "memory_budget.py"), "--functions", "mlp", "--depth", "4", "--rounds", "2")
    assert "| budget 0.5 |" in out and "| checkpoint 2 |" in out and "goal (" in out


@pytest.mark.slow
def test_implicit_runs_and_prints_its_tables():
    out = _run(str(BENCHMARKS / "implicit.py"), "--depths", "2", "--rounds", "1")
    assert "| euler | reversible-raise | 2 |" in out and "| gauss_legendre2 | 2 |" in out
    assert "failed" not in out


@pytest.mark.slow
def test_peers_runs_and_prints_its_table():
    out = _run(str(BENCHMARKS / "peers.py"), "--depth", "2", "--rounds", "1", "--schemes", "leapfrog")
    assert "| leapfrog | fixed_point |" in out and "failed" not in out


@pytest.mark.slow
def test_real_shapes_runs_and_prints_its_table():
    arguments = ["--quick", "--workloads", "mlp", "--depth", "2", "--rounds", "1"]
    out = _run(str(BENCHMARKS / "real_shapes.py"), *arguments)
    assert "| reversible |" in out and "| autograd |" in out and "failed" not in out


@pytest.mark.slow
def test_your_own_layers_runs_and_prints_its_table():
    out = _run(str(BENCHMARKS / "your_own_layers.py"), "--quick", "--models", "llama", "--variants", "revnet")
    assert "| llama | original |" in out and "| llama | revnet |" in out and "failed" not in out


def test_a_generated_table_replaces_its_own_block_only(tmp_path):
    """An empty block followed by another: the table goes into the first, the second stays (the
    lazy match once ran on to the next block's end and swallowed the text between)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from train_defaults import _write
    finally:
        sys.path.remove(str(BENCHMARKS))
    doc = tmp_path / "doc.md"
    doc.write_text(
        "<!-- generated: a -->\n<!-- end generated -->\n\nkept\n\n"
        "<!-- generated: b -->\nold\n<!-- end generated -->\n"
    )
    _write(doc, "a", "| table |")
    assert doc.read_text() == (
        "<!-- generated: a -->\n| table |\n<!-- end generated -->\n\nkept\n\n"
        "<!-- generated: b -->\nold\n<!-- end generated -->\n"
    )
