"""Shared fixtures: the library's scheme names, float64 modules, and a helper that runs the installed CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import odenet


@pytest.fixture(scope="session")
def library() -> dict[str, odenet.Scheme]:
    return {name: odenet.load(name) for name in odenet.library_names()}


@pytest.fixture
def float64_by_default():
    """Modules built in float64, so that no parameter carries float32 rounding into a comparison."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    """Run ``python -m odenet ARGS`` in a fresh interpreter, as a user's shell would."""
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "odenet", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )
