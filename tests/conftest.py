"""Shared fixtures: the library's scheme names and a helper that runs the installed CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import odenet


@pytest.fixture(scope="session")
def library() -> dict[str, odenet.Scheme]:
    return {name: odenet.load(name) for name in odenet.library_names()}


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m odenet ARGS`` in a fresh interpreter, as a user's shell would."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "odenet", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )
