"""The time-memory curve of ``memory_budget`` against ``torch.utils.checkpoint`` at equal memory.

Leapfrog (h = 1/depth), float32, CPU. One network per point of each curve, on the same residual
function and weights:

- ``budget f``: ``memory="reversible", memory_budget=f``: the graphs of the lowest f * depth layers
  are kept, the other layers are rebuilt by the inverse (f = 0: reversible, f = 1: everything kept);
  ``raise 0.0``: reversible with ``guard="raise"`` (segments that release their gradients as they
  finish and no copies beyond the drift plan: the least memory);
- ``checkpoint s``: the autograd block's layers in s segments through
  ``torch.utils.checkpoint.checkpoint`` (non-reentrant, torch's recommended form), the last segment
  kept, as ``torch.utils.checkpoint.checkpoint_sequential`` does; s runs over the segment counts
  from 2 to depth, so that the best one is there at every memory level.

Memory: the peak resident memory of a fresh subprocess during one training step (forward and
backward, after a warm-up step, the parameters' gradients allocated before), minus its resident
memory just before the step (``reset_peak_rss``: Linux's VmHWM restarted), with glibc's mmap
threshold fixed at 64 KiB so that every freed activation leaves the resident set. Time: one process, every
network measured in alternation with plain autograd (after two warm-up rounds), the median over the
rounds of (network / autograd in the same round).

The comparison: for each budget point, the fastest checkpoint configuration whose peak is no larger
(at equal or less memory); goal (issue 14): every budget point at least as fast as it (within the
rounds' spread), and the reversible end strictly faster than the checkpoint configuration of least
memory, with less memory.

Run: python benchmarks/memory_budget.py [--functions mlp conv] [--rounds 11]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

import odenet
from odenet.library import load

DEPTHS = {"mlp": 128, "conv": 32}
FRACTIONS = [0.0, 0.03125, 0.0625, 0.125, 0.25, 0.5, 0.75, 1.0]


def _function(kind: str):
    if kind == "mlp":
        return lambda _: nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256))
    return lambda _: nn.Sequential(
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1)
    )


def _input(kind: str) -> torch.Tensor:
    return torch.randn(512, 256) if kind == "mlp" else torch.randn(32, 16, 32, 32)


def segment_counts(depth: int) -> list[int]:
    counts = sorted({2, 4, 8, 16, 32, 64, round(depth**0.5), depth} & set(range(2, depth + 1)))
    return counts


class Checkpointed(nn.Module):
    """The autograd block's layers in ``segments`` checkpointed segments, the last one kept."""

    def __init__(self, block, segments: int):
        super().__init__()
        self.block, self.segments = block, segments

    def forward(self, x):
        block = self.block
        state = block.initial_state(x)
        size = -(-block.depth // self.segments)
        for start in range(0, block.depth, size):
            stop = min(start + size, block.depth)

            def segment(*s, start=start, stop=stop):
                return block.steps(start, stop, s)

            if stop == block.depth:
                state = segment(*state)
            else:
                state = checkpoint(segment, *state, use_reentrant=False)
        return block.output(state)


def build(kind: str, method: str) -> nn.Module:
    depth = DEPTHS[kind]
    torch.manual_seed(0)
    name, _, value = method.partition(" ")
    kwargs = {"memory_budget": float(value)} if name in ("budget", "raise") else {}  # "autograd": plain
    kwargs |= {"guard": "raise"} if name == "raise" else {}
    memory = "reversible" if name in ("budget", "raise") else "autograd"
    block = odenet.compile(
        load("leapfrog"), {"f": _function(kind)}, depth, memory, {"h": 1 / depth}, **kwargs
    )
    return Checkpointed(block, int(value)) if name == "checkpoint" else block


def methods(kind: str) -> list[str]:
    budgets = [f"budget {f}" for f in FRACTIONS]
    return ["raise 0.0", *budgets, *(f"checkpoint {s}" for s in segment_counts(DEPTHS[kind]))]


def step(model: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x).square().mean().backward()
    elapsed = time.perf_counter() - start
    for p in model.parameters():
        p.grad = None
    return elapsed


def worker(kind: str, method: str) -> float:
    """Peak RSS (MiB) of one training step beyond the RSS before it."""
    from odenet.nn.memory import peak_rss_mib, reset_peak_rss, rss_mib

    torch.set_num_threads(1)
    model, x = build(kind, method), _input(kind)
    step(model, x)  # warm-up: generated code, drift plan, allocator
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # gradients exist before the baseline: they are not activations
    if not reset_peak_rss():
        raise SystemExit("this system cannot restart the peak resident memory (Linux only)")
    baseline = rss_mib()
    model(x).square().mean().backward()
    return max(0.0, peak_rss_mib() - baseline)


def peak_mib(kind: str, method: str) -> float:
    command = [sys.executable, __file__, "--worker", json.dumps([kind, method, DEPTHS[kind]])]
    # a fixed mmap threshold: glibc otherwise raises it as blocks are freed (up to 32 MiB), keeps
    # freed activations in its heap, and the resident set stops following the tensors alive
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(2**16)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def time_ratios(kind: str, names: list[str], rounds: int) -> dict[str, list[float]]:
    """Quartiles of (method / autograd) over interleaved rounds, in this process."""
    torch.set_num_threads(1)
    x = _input(kind)
    reference = build(kind, "autograd")
    models = {name: build(kind, name) for name in names}
    for _ in range(2):
        for model in [reference, *models.values()]:
            step(model, x)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        order = names if i % 2 == 0 else names[::-1]
        for name in order:  # each method next to its own autograd step
            if i % 2 == 0:
                base, mine = step(reference, x), step(models[name], x)
            else:
                mine, base = step(models[name], x), step(reference, x)
            samples[name].append(mine / base)
    return {name: statistics.quantiles(values, n=4) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--functions", nargs="+", default=list(DEPTHS), choices=list(DEPTHS))
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--depth", type=int, help="instead of each function's depth (mlp 128, conv 32)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.worker:
        kind, method, depth = json.loads(args.worker)
        DEPTHS[kind] = depth
        print(worker(kind, method))
        return 0
    if args.depth:
        DEPTHS.update(dict.fromkeys(DEPTHS, args.depth))
    print(
        f"torch {torch.__version__}, one thread per process, float32, leapfrog h = 1/depth; peak = peak RSS "
        "of a fresh process during one training step minus its RSS before (MiB); time = median "
        f"(interquartile range) over {args.rounds} interleaved rounds of (method / autograd)"
    )
    results, met = {}, True
    for kind in args.functions:
        names = methods(kind)
        peaks = {name: peak_mib(kind, name) for name in names}
        ratios = time_ratios(kind, names, args.rounds)
        results[kind] = {name: {"peak_mib": peaks[name], "time": ratios[name]} for name in names}
        print(f"\n### {kind}, depth {DEPTHS[kind]}\n")
        columns = ["method", "peak MiB", "time / autograd", "fastest checkpoint at <= this memory"]
        columns += ["its peak", "its time", "verdict"]
        print("| " + " | ".join(columns) + " |")
        print("|---|---|---|---|---|---|---|")
        checkpoints = [n for n in names if n.startswith("checkpoint")]
        least = min(checkpoints, key=lambda n: peaks[n])
        for name in names:
            q = ratios[name]
            cells = [name, f"{peaks[name]:.0f}", f"{q[1]:.2f}x ({q[0]:.2f}-{q[2]:.2f})"]
            if not name.startswith("checkpoint"):
                rivals = [n for n in checkpoints if peaks[n] <= peaks[name]]
                if rivals:
                    rival = min(rivals, key=lambda n: ratios[n][1])
                    ok = q[1] <= ratios[rival][2]  # no slower than the rival's upper quartile
                    verdict = "ok" if ok else "slower"
                else:
                    rival, ok = least, True
                    verdict = "none fits: less memory than any"
                    if name in ("budget 0.0", "raise 0.0"):
                        ok = q[1] < ratios[least][1]
                        verdict += "; faster than the least" if ok else "; slower than the least"
                met &= ok
                r = ratios[rival]
                cells += [rival, f"{peaks[rival]:.0f}", f"{r[1]:.2f}x", verdict]
            else:
                cells += ["", "", "", ""]
            print("| " + " | ".join(cells) + " |", flush=True)
    verdict = "met" if met else "missed"
    print(f"\ngoal (every budget point at least as fast as checkpointing at equal memory): {verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
