"""Implicit layers and fixed-point inverses: memory against depth, time, and the solvers' work.

Two tables, each configuration in a fresh subprocess (peak RSS of the training step minus the RSS
before it, glibc's mmap threshold fixed at 64 KiB as in memory_depth.py; bytes of the tensors
autograd saved, parameters excluded, plus what odenet kept besides):

1. **Fixed-point inverses** (``memory="reversible"`` on Euler and Heun, which have no explicit
   inverse): contractive residual functions ``0.9 * SN(W2) tanh(SN(W1) y + b1) + b2`` (width 256,
   batch 512, ``h = 0.5``), against plain autograd and checkpointing, at several depths; the
   rebuild's iterations per layer (Anderson), and the time of a training step as a ratio to
   autograd (medians of alternating rounds in one process).
2. **Implicit layers** (backward Euler, the trapezoidal rule, two-stage Gauss-Legendre; ``h = 0.1``,
   the plain MLP of width 256, batch 512, Anderson to 1e-5): saved memory against depth (one
   evaluation per layer, whatever the iterations), the iterations of the step and of the adjoint
   system per layer, and the training step's time as a ratio to an explicit Euler network of the
   same depth and functions.

Run: python benchmarks/implicit.py [--depths 8 32 128] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from measure import fresh_process, training_step

FIXED_POINT = {
    "euler": ["autograd", "checkpoint", "reversible", "reversible-raise"],
    "heun": ["reversible-raise"],
}
IMPLICIT = ["backward_euler", "trapezoidal", "gauss_legendre2"]


def _build(config: dict):
    import torch
    from torch import nn

    import odenet
    from odenet.models import make_function

    torch.manual_seed(0)
    scheme = odenet.load(config["scheme"])
    if config["part"] == "fixed_point":

        def make(i):
            return make_function("mlp", 256, 256, "mlp", contraction=0.9)

        params = {"h": 0.5}
    else:

        def make(i):
            return nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256))

        params = {"h": 0.1}
    memory, _, guard = config["mode"].partition("-")
    kwargs = {"guard": guard} if guard else {}
    solver = odenet.Solver("anderson", tol=1e-5)
    return odenet.compile(
        scheme, {"f": make}, config["depth"], memory, params=params, solver=solver, **kwargs
    )


def worker(config: dict) -> dict:
    import torch

    torch.set_num_threads(2)
    model = _build(config)
    result = {**config, **training_step(model, torch.randn(512, 256))}
    if model.rebuilds:
        result["rebuild_iterations"] = statistics.fmean(r.iterations for r in model.rebuilds)
    if model.implicit:
        result["step_iterations"] = statistics.fmean(s.iterations for s in model.solves)
        result["adjoint_iterations"] = statistics.fmean(s.iterations for s in model.backward_solves)
    if config["time"]:
        reference = _build(
            {**config, "mode": "autograd", "scheme": config.get("reference", config["scheme"])}
        )

        def step(net):
            start = time.perf_counter()
            net(torch.randn(512, 256)).square().mean().backward()
            return time.perf_counter() - start

        step(model), step(reference)
        mine, theirs = [], []
        for _ in range(config["rounds"]):
            mine.append(step(model))
            theirs.append(step(reference))
        result["step_seconds"] = statistics.median(mine)
        result["time_ratio"] = statistics.median(mine) / statistics.median(theirs)
    return result


def run_config(config: dict) -> dict:
    return {**config, **fresh_process(__file__, config, threads=2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write all results to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    timed = args.depths[len(args.depths) // 2]
    results = []
    print("1. Fixed-point inverses: contractive MLP 256 (Lip <= 0.9), batch 512, h = 0.5, float32")
    print("| scheme | mode | depth | peak RSS MiB | saved MiB | rebuild iterations | time / autograd |")
    print("|---|---|---|---|---|---|---|")
    for scheme, modes in FIXED_POINT.items():
        for mode in modes:
            for depth in args.depths:
                config = {"part": "fixed_point", "scheme": scheme, "mode": mode, "depth": depth}
                r = run_config(
                    {**config, "time": depth == timed and mode != "autograd", "rounds": args.rounds}
                )
                results.append(r)
                if "error" in r:
                    print(f"| {scheme} | {mode} | {depth} | failed: {r['error']} | | | |")
                    continue
                iterations = f"{r['rebuild_iterations']:.1f}" if "rebuild_iterations" in r else ""
                ratio = f"{r['time_ratio']:.2f}x" if "time_ratio" in r else ""
                print(
                    f"| {scheme} | {mode} | {depth} | {r['peak_mib']:.0f} | {r['saved_mib']:.1f} | "
                    f"{iterations} | {ratio} |",
                    flush=True,
                )
    print()
    print("2. Implicit layers: MLP 256, batch 512, h = 0.1, Anderson to 1e-5, float32; time against Euler")
    print(
        "| scheme | depth | peak RSS MiB | saved MiB | step iterations | adjoint iterations | time / Euler |"
    )
    print("|---|---|---|---|---|---|---|")
    for scheme in ["euler", *IMPLICIT]:
        for depth in args.depths:
            config = {"part": "implicit", "scheme": scheme, "mode": "autograd", "depth": depth}
            timing = depth == timed and scheme != "euler"
            r = run_config({**config, "time": timing, "rounds": args.rounds, "reference": "euler"})
            results.append(r)
            if "error" in r:
                print(f"| {scheme} | {depth} | failed: {r['error']} | | | | |")
                continue
            step = f"{r['step_iterations']:.1f}" if "step_iterations" in r else ""
            adjoint = f"{r['adjoint_iterations']:.1f}" if "adjoint_iterations" in r else ""
            ratio = f"{r['time_ratio']:.2f}x" if "time_ratio" in r else ""
            memory = f"{r['peak_mib']:.0f} | {r['saved_mib']:.1f}"
            print(f"| {scheme} | {depth} | {memory} | {step} | {adjoint} | {ratio} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
