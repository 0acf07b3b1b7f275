"""What the memory benchmarks share: one training step measured in a fresh process.

Peak RSS is the operating system's count (Linux: the peak restarted just before the step), with
glibc's mmap threshold fixed at 64 KiB in the child, so that freed activations leave the resident
set (glibc otherwise raises the threshold as blocks are freed, up to 32 MiB, and keeps them in its
heap); the parameters' gradients exist before the baseline, so they are not counted as activations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys


def training_step(model, x, gradients: str = "zeros") -> dict:
    """One forward and backward of ``model(x).square().mean()``: ``peak_mib`` (peak RSS during the
    step minus the RSS before it) and ``saved_mib`` (tensors autograd saved, parameters excluded,
    each storage once, plus what an odenet block kept besides: exact copies, replay records).
    ``gradients``: "zeros", the parameters' gradients exist before the step (accumulation) and are
    not counted; "none", they are set to None (``zero_grad()``'s default) and made by the step."""
    import torch

    from odenet.nn.memory import peak_rss_mib, reset_peak_rss, rss_mib, saved_tensor_bytes

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.zeros_like(p) if gradients == "zeros" else None
    reset_peak_rss()
    baseline = rss_mib()
    with saved_tensor_bytes(exclude=params) as saved:
        loss = model(x).square().mean()
    loss.backward()
    peak = max(0.0, peak_rss_mib() - baseline)
    kept = getattr(model, "kept_bytes", 0)
    return {"peak_mib": peak, "saved_mib": (saved.bytes + kept) / 2**20}


def fresh_process(
    script: str, argument, threads: int = 1, timeout: int = 3600, fixed_threshold: bool = True
) -> dict:
    """``python script --worker JSON(argument)`` in a fresh process; the last line it prints, as
    JSON, or ``{"error": its last line of stderr}``. ``fixed_threshold``: glibc's mmap threshold at
    64 KiB (for memory; it slows allocation, so timings run without it)."""
    command = [sys.executable, script, "--worker", json.dumps(argument)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if fixed_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**16)
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])
