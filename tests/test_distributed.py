"""`torchrun --nproc-per-node 2 -m odenet train`: two CPU processes (gloo) give the weights one process
gives with the same global batch, in autograd and reversible mode; rank 0 alone writes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from odenet.training import load_checkpoint

pytestmark = pytest.mark.slow  # four interpreters with torch: about 30 s


def _data(path):
    rng = np.random.default_rng(0)
    y = np.arange(96) % 3
    x = (rng.normal(size=(96, 6)) + 2.0 * y[:, None]).astype(np.float32)
    np.savez(path, x=x[:64], y=y[:64], x_test=x[64:], y_test=y[64:])


def _run(prefix, data, out, scheme, memory):
    args = ["train", scheme, "--data", str(data), "--epochs", "1", "--batch-size", "16", "--depth", "3"]
    args += ["--width", "6", "--family", "chang", "--memory", memory, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*prefix, "-m", "odenet", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.mark.parametrize(("scheme", "memory"), [("euler", "autograd"), ("leapfrog", "reversible")])
def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, scheme, memory):
    data = tmp_path / "three.npz"
    _data(data)
    _run([sys.executable], data, tmp_path / "one", scheme, memory)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = _run(torchrun, data, tmp_path / "two", scheme, memory)
    assert two.stdout.count("wrote") == 1  # rank 0 alone reports
    (one_model, one), (two_model, other) = (
        load_checkpoint(tmp_path / d / "checkpoint.pt") for d in ("one", "two")
    )
    assert one["epoch"] == other["epoch"] == 1
    for name, a in one_model.state_dict().items():
        assert torch.allclose(a, two_model.state_dict()[name], rtol=0, atol=1e-5), name
    assert not any((tmp_path / "two").glob(".*partial"))
