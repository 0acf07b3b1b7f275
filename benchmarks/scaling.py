"""Time per training step and memory against depth and against width, drawn as PNG figures.

Leapfrog (h = 1/depth), residual function ``Linear(w, w) -> tanh -> Linear(w, w)``, batch 128,
float32, one thread, CPU. For each memory mode and each point a fresh process builds the network,
runs a warm-up step, allocates the parameters' gradients, and measures one training step: its
peak resident memory beyond the memory before it (Linux's VmHWM restarted, glibc's mmap threshold
fixed at 64 KiB) and the bytes saved for backward (autograd's saved tensors plus odenet's copies);
then the median time of three more steps. Depth runs from 8 to 1024 at width 256; width from 64 to
1024 at depth 64.

Writes docs/scaling_depth.png and docs/scaling_width.png (or --out DIR) and prints the table.
Run: python benchmarks/scaling.py [--modes autograd checkpoint reversible fixed_point]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from measure import fresh_process, training_step

DEPTHS = [8, 16, 32, 64, 128, 256, 512, 1024]
WIDTHS = [64, 128, 256, 512, 1024]
BATCH = 128
MODES = ["autograd", "checkpoint", "reversible", "fixed_point"]


def worker(mode: str, depth: int, width: int) -> dict:
    import torch
    from torch import nn

    import odenet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    block = odenet.compile(
        odenet.load("leapfrog"),
        {"f": lambda _: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))},
        depth,
        mode,
        {"h": 1 / depth},
    )
    x = torch.randn(BATCH, width)
    block(x).square().mean().backward()  # warm-up
    memory = training_step(block, x)
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        block(x).square().mean().backward()
        seconds.append(time.perf_counter() - start)
    return {**memory, "seconds": statistics.median(seconds)}


def measure(mode: str, depth: int, width: int) -> dict:
    result = fresh_process(__file__, [mode, depth, width])
    if "error" in result:
        raise SystemExit(f"{mode} at depth {depth}, width {width}: {result['error']}")
    return {"mode": mode, "depth": depth, "width": width, **result}


def figure(results: list[dict], axis: str, fixed: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for mode in dict.fromkeys(r["mode"] for r in results):
        rows = sorted((r for r in results if r["mode"] == mode), key=lambda r: r[axis])
        xs = [r[axis] for r in rows]
        left.plot(xs, [r["seconds"] for r in rows], marker="o", label=mode)
        right.plot(xs, [r["peak_mib"] for r in rows], marker="o", label=mode)
    for ax, label in ((left, "seconds per training step"), (right, "peak memory of the step (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(axis)
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    left.legend()
    fig.suptitle(f"leapfrog, MLP residual function, batch {BATCH}, float32, one CPU thread ({fixed})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--modes", nargs="+", default=MODES)
    parser.add_argument("--out", default="docs", help="folder for the PNG figures")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker))))
        return 0
    depth_rows = [measure(m, d, 256) for m in args.modes for d in DEPTHS]
    width_rows = [measure(m, 64, w) for m in args.modes for w in WIDTHS]
    print("| mode | depth | width | seconds per step | peak MiB | saved MiB |")
    print("|---|---|---|---|---|---|")
    for r in depth_rows + width_rows:
        print(
            f"| {r['mode']} | {r['depth']} | {r['width']} | {r['seconds']:.3f} | {r['peak_mib']:.0f} | "
            f"{r['saved_mib']:.1f} |"
        )
    out = Path(args.out)
    figure(depth_rows, "depth", "width 256", out / "scaling_depth.png")
    figure(width_rows, "width", "depth 64", out / "scaling_width.png")
    print(f"wrote {out / 'scaling_depth.png'} and {out / 'scaling_width.png'}")
    if args.json:
        Path(args.json).write_text(json.dumps(depth_rows + width_rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
