"""The docs' listings of program output are the program's output (tests/docs_blocks.py)."""

from __future__ import annotations

from docs_blocks import drifted


def test_generated_blocks_match_the_program():
    assert drifted() == [], "run: python tests/docs_blocks.py"
