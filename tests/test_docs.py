"""The docs' listings of program output are the program's output (tests/docs_blocks.py)."""

from __future__ import annotations

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
