"""Time of one training step (forward + backward) of each memory mode as a ratio to plain autograd.

Leapfrog with h = 1/depth, float32, on this machine's CPU, in one process: the modes are measured in
alternation (one step of each per round, after a warm-up round), so that background load hits all of
them alike, and the ratio is the median over the rounds of the mode's time to autograd's time in the
same round. Residual functions (issue 14):

- mlp: ``Linear(256, 256) -> tanh -> Linear(256, 256)`` on a batch of 512, depths 64 to 512;
- conv: ``Conv3x3(16, 16) -> ReLU -> Conv3x3(16, 16)`` on 32 images of 32 x 32, depths 16 to 128.

The floor of an exact memory-free mode: autograd's step is a forward and a backward of each function
(about 3 forward units); rebuilding adds one forward in the backward pass (4 units): 1.33x.
Target: reversible <= 1.35x.

Run: python benchmarks/step_time.py [--functions mlp conv] [--rounds 9] [--modes reversible ...]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import odenet
from odenet.library import load

DEPTHS = {"mlp": [64, 128, 256, 512], "conv": [16, 32, 64, 128]}
TARGET = 1.35


def function_factory(kind: str):
    def make(_):
        if kind == "mlp":
            return nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256))
        return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))

    return make


def example_input(kind: str) -> torch.Tensor:
    return torch.randn(512, 256) if kind == "mlp" else torch.randn(32, 16, 32, 32)


def build(kind: str, depth: int, memory: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return odenet.compile(
        load("leapfrog"), {"f": function_factory(kind)}, depth, memory=memory, params={"h": 1 / depth}
    )


def training_step(block: nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    block(x).square().mean().backward()
    elapsed = time.perf_counter() - start
    for p in block.parameters():
        p.grad = None
    return elapsed


def ratios(kind: str, depth: int, modes: list[str], rounds: int) -> dict[str, float]:
    x = example_input(kind)
    blocks = {mode: build(kind, depth, mode) for mode in ["autograd", *modes]}
    for block in blocks.values():  # warm-up: allocator, first-pass checks, drift plan
        training_step(block, x)
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(rounds):
        base = training_step(blocks["autograd"], x)
        for mode in modes:
            samples[mode].append(training_step(blocks[mode], x) / base)
    return {mode: statistics.median(values) for mode, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", nargs="+", default=["mlp", "conv"], choices=list(DEPTHS))
    parser.add_argument("--depths", nargs="+", type=int, help="instead of each function's list")
    parser.add_argument("--modes", nargs="+", default=["reversible"])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32; leapfrog, h = 1/depth; "
        f"median over {args.rounds} interleaved rounds of (mode / autograd), training step"
    )
    print("| function | depth | " + " | ".join(args.modes) + " |")
    print("|---|---|" + "---|" * len(args.modes))
    worst = 0.0
    for kind in args.functions:
        for depth in args.depths or DEPTHS[kind]:
            r = ratios(kind, depth, args.modes, args.rounds)
            worst = max(worst, r.get("reversible", 0.0))
            print(f"| {kind} | {depth} | " + " | ".join(f"{r[m]:.2f}x" for m in args.modes) + " |", flush=True)
    if "reversible" in args.modes:
        verdict = "met" if worst <= TARGET else "missed"
        print(f"worst reversible / autograd: {worst:.2f}x (target <= {TARGET}x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
