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

# Under pytest-xdist (pytest -n auto) the workers share the cores: torch's thread pool each gets
# its share, not all of them, and so do the interpreters the tests start (odenet train, torchrun,
# the experiments), through OMP_NUM_THREADS. Oversubscribed, OpenMP's waiting threads slowed the
# tutorial's stability check from 25 s to 9 minutes.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    torch.set_num_threads(_share)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(_share)


def pytest_addoption(parser):
    parser.addoption(
        "--exhaustive",
        action="store_true",
        help="also run the full products (every scheme x mode x condition of the gradient matrix), "
        "which the suite otherwise covers pairwise; ODENET_EXHAUSTIVE=1 does the same",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--exhaustive") or os.environ.get("ODENET_EXHAUSTIVE") == "1":
        return
    skip = pytest.mark.skip(reason="the full product: run with --exhaustive (pairwise cases run always)")
    for item in items:
        if "exhaustive" in item.keywords:
            item.add_marker(skip)


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
