"""Shared fixtures: the library's scheme names, float64 modules, and the command line run in this
process (``cli``) or, for the end-to-end tests, in a fresh interpreter (``run_cli``)."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

import pytest
import torch

import odenet
from odenet.cli import main

# Generated code goes to files named by their content (odenet.codegen.generated_folder); the
# suite's thousands of drawn schemes write theirs to a folder of its own, not the user's cache
# (fresh interpreters started by the tests inherit it).
os.environ.setdefault("ODENET_CACHE_DIR", tempfile.mkdtemp(prefix="odenet-tests-"))


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


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> CliResult:
    """Run ``odenet ARGS`` through ``main`` in this process, capturing what it prints (an argparse
    usage error exits 2, as in a shell)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return CliResult(code, out.getvalue(), err.getvalue())
