"""Time of one training step (forward + backward) of each memory mode as a ratio to plain autograd.

Leapfrog with h = 1/depth, float32, on this machine's CPU, in one process: the modes are measured in
alternation (one step of each per round, after two warm-up rounds; autograd first in even rounds,
last in odd ones, since the step that follows another runs measurably differently), so that
background load hits all of them alike, and the ratio is the median over the rounds of the mode's
time to autograd's time in the same round; the spread printed is the interquartile range of those
per-round ratios (on a shared virtual machine it is wide: trust the median of many rounds).
Residual functions (issue 14):

- mlp: ``Linear(256, 256) -> tanh -> Linear(256, 256)`` on a batch of 512, depths 64 to 512;
- conv: ``Conv3x3(16, 16) -> ReLU -> Conv3x3(16, 16)`` on 32 images of 32 x 32, depths 16 to 128.

The floor of an exact memory-free mode: autograd's step is a forward F and a backward B; rebuilding
adds one more forward of every function in the backward pass, and the forward itself runs without a
graph (F0): floor = (F0 + F + B) / (F + B). With B = 2F that is 1.33x; this script measures F, B and
F0 (a no-grad forward of the same network) in every round and prints the floor beside the ratio, so
that what is above it (the overhead of the mode) is visible. Target: reversible <= 1.35x.

Run: python benchmarks/step_time.py [--functions mlp conv] [--rounds 9] [--modes reversible ...]
[--scheme momentum]
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
CLOCK = time.perf_counter


def function_factory(kind: str):
    def make(_):
        if kind == "mlp":
            return nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256))
        return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))

    return make


def example_input(kind: str) -> torch.Tensor:
    return torch.randn(512, 256) if kind == "mlp" else torch.randn(32, 16, 32, 32)


SCHEME = "leapfrog"  # --scheme: a one-function scheme of one state (momentum keeps a hidden one)


def build(kind: str, depth: int, memory: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    scheme = load(SCHEME)
    params = {"h": 1 / depth} if "h" in [p.name for p in scheme.params] else {}
    return odenet.compile(scheme, {"f": function_factory(kind)}, depth, memory=memory, params=params)


def training_step(block: nn.Module, x: torch.Tensor, split: bool = False):
    """Seconds of one forward + backward (with ``split``: the forward's and the backward's)."""
    start = CLOCK()
    loss = block(x).square().mean()
    middle = CLOCK()
    loss.backward()
    end = CLOCK()
    for p in block.parameters():
        p.grad = None
    return (middle - start, end - middle) if split else end - start


def no_grad_forward(block: nn.Module, x: torch.Tensor) -> float:
    start = CLOCK()
    with torch.no_grad():
        block(x)
    return CLOCK() - start


def ratios(kind: str, depth: int, modes: list[str], rounds: int) -> dict[str, float]:
    x = example_input(kind)
    blocks = {mode: build(kind, depth, mode) for mode in ["autograd", *modes]}
    for _ in range(2):  # warm-up: allocator, first-pass checks, drift plan
        for block in blocks.values():
            training_step(block, x)
    samples: dict[str, list[float]] = {mode: [] for mode in [*modes, "floor"]}
    for i in range(rounds):
        if i % 2 == 0:
            forward, backward = training_step(blocks["autograd"], x, split=True)
            times = {mode: training_step(blocks[mode], x) for mode in modes}
            plain = no_grad_forward(blocks["autograd"], x)
        else:
            plain = no_grad_forward(blocks["autograd"], x)
            times = {mode: training_step(blocks[mode], x) for mode in modes}
            forward, backward = training_step(blocks["autograd"], x, split=True)
        base = forward + backward
        for mode in modes:
            samples[mode].append(times[mode] / base)
        samples["floor"].append((plain + base) / base)
    return {mode: statistics.quantiles(values, n=4) for mode, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", nargs="+", default=["mlp", "conv"], choices=list(DEPTHS))
    parser.add_argument("--depths", nargs="+", type=int, help="instead of each function's list")
    parser.add_argument("--modes", nargs="+", default=["reversible"])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--scheme", default="leapfrog", help="a library scheme of one function")
    args = parser.parse_args()
    global SCHEME
    SCHEME = args.scheme
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32; {SCHEME}, h = 1/depth; "
        f"median (interquartile range) over {args.rounds} interleaved rounds of (mode / autograd), "
        "training step"
    )
    print("| function | depth | floor (F0 + F + B) / (F + B) | " + " | ".join(args.modes) + " |")
    print("|---|---|---|" + "---|" * len(args.modes))
    worst = 0.0
    for kind in args.functions:
        for depth in args.depths or DEPTHS[kind]:
            r = ratios(kind, depth, args.modes, args.rounds)  # quartiles
            worst = max(worst, r["reversible"][1] if "reversible" in r else 0.0)
            cells = [f"{r[m][1]:.2f}x ({r[m][0]:.2f}-{r[m][2]:.2f})" for m in ["floor", *args.modes]]
            print(f"| {kind} | {depth} | " + " | ".join(cells) + " |", flush=True)
    if "reversible" in args.modes:
        verdict = "met" if worst <= TARGET else "missed"
        print(f"worst reversible / autograd: {worst:.2f}x (target <= {TARGET}x: {verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
