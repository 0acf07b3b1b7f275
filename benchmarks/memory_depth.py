"""Memory and time of one training step against depth, for each memory mode and beside peers.

For every (residual function, scheme, mode, depth) a fresh subprocess builds the network, allocates
the parameter gradients, records its resident memory, runs one training step (forward, backward)
and reports:

- peak RSS during the step minus the RSS before it (MiB): what the step needed beyond the model
  and its gradients, measured by the operating system (Linux: the peak restarted just before the
  step; glibc's mmap threshold fixed at 64 KiB, so that freed activations leave the resident set);
- bytes of the tensors autograd saved for backward (parameters excluded, each storage once), plus
  what odenet kept besides (exact copies, replay records) (MiB);
- at depth 128, the median time of a training step as a ratio to plain autograd on the same scheme
  and function, the two measured in alternation in one process so that background load affects
  both alike.

``fixed_point`` holds the states as integers and rebuilds them bit for bit (momentum: no copies,
an information buffer that grows by log2(1/gamma) bits per element and layer).
``reversible`` is the default adaptive guard (release groups that start at exact copies and hold
their parameters' gradients until checked); ``reversible-raise`` the raise guard (segments that
release as they go, no copies beyond the plan). The step measured is the first one of a freshly
initialized network, where the adaptive guard may repair a group (see docs/compile.md).

Residual functions: an MLP ``Linear(256, 256) -> tanh -> Linear(256, 256)`` on a batch of 512, and
a small conv net ``Conv3x3(16, 16) -> ReLU -> Conv3x3(16, 16)`` on 64 images of 16 x 16. Schemes:
leapfrog, momentum, hamiltonian, revnet (two-state schemes split a doubled input). Peers on the same
function, where they apply: momentumnet's MomentumNet (momentum; with and without backprop),
memcnn's InvertibleModuleWrapper(AdditiveCoupling) and revlib's ReversibleSequential (revnet).
Peers are optional: install them with ``pip install --no-deps momentumnet memcnn revlib``.

Targets (issue 4): reversible activation memory at depth 512 within 1.2x of depth 8; training step
at most 1.4x plain autograd at depth 128.

Run: python benchmarks/memory_depth.py [--depths 8 64 128 512] [--functions mlp conv] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from measure import fresh_process, training_step

SCHEMES = {
    "leapfrog": ["autograd", "checkpoint", "reversible", "reversible-raise", "adjoint"],
    "momentum": [
        "autograd",
        "checkpoint",
        "reversible",
        "reversible-raise",
        "fixed_point",
        "momentumnet",
        "momentumnet-memory-free",
    ],
    "hamiltonian": ["autograd", "checkpoint", "reversible", "adjoint"],
    "revnet": ["autograd", "checkpoint", "reversible", "memcnn", "revlib"],
}
TIMING_DEPTH = 128


def _function(kind: str, torch, nn):
    if kind == "mlp":
        return lambda: nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 256))
    return lambda: nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))


def _input(kind: str, states: int, torch):
    if kind == "mlp":
        return torch.randn(512, 256 * states)
    return torch.randn(64, 16 * states, 16, 16)


def _build(kind, scheme_name, mode, depth, torch, nn):
    """The network and how many states its input holds."""
    make = _function(kind, torch, nn)
    if mode.startswith("momentumnet"):
        import momentumnet

        return momentumnet.MomentumNet(
            [make() for _ in range(depth)], gamma=0.9, use_backprop=mode == "momentumnet"
        ), 1
    if mode == "memcnn":
        import memcnn

        layers = [
            memcnn.InvertibleModuleWrapper(memcnn.AdditiveCoupling(make(), make()), keep_input=False)
            for _ in range(depth)
        ]
        return nn.Sequential(*layers), 2
    if mode == "revlib":
        import revlib

        return revlib.ReversibleSequential(*[make() for _ in range(2 * depth)]), 2
    import odenet

    scheme = odenet.load(scheme_name)
    memory, _, guard = mode.partition("-")  # reversible-raise: the raise guard; fixed_point as it is
    kwargs = {"guard": guard} if guard else {}
    block = odenet.compile(
        scheme, {f.name: (lambda i: make()) for f in scheme.functions}, depth, memory, **kwargs
    )
    return block, len(scheme.inputs)


def worker(config: dict) -> dict:
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(2)
    model, states = _build(config["function"], config["scheme"], config["mode"], config["depth"], torch, nn)
    x = _input(config["function"], states, torch)
    if config["mode"] in ("memcnn", "revlib"):
        x.requires_grad_(True)  # these peers' reversible functions need an input that requires grad
    memory = training_step(model, x)
    result = {**config, "peak_rss_mib": memory["peak_mib"], "saved_mib": memory["saved_mib"]}
    if config["time"]:
        result.update(_paired_timing(config, model, states, torch, nn))
    return result


def _paired_timing(config, model, states, torch, nn, rounds: int = 7) -> dict:
    """Step time of ``model`` against plain autograd on the same scheme and function, measured in
    alternation in one process (so background load affects both alike): medians and their ratio."""
    reference, _ = _build(config["function"], config["scheme"], "autograd", config["depth"], torch, nn)
    if config["mode"] == "autograd":
        reference = model
    needs_grad = config["mode"] in ("memcnn", "revlib")

    def step(net):
        x = _input(config["function"], states, torch)
        if needs_grad and net is model:
            x.requires_grad_(True)
        start = time.perf_counter()
        net(x).square().mean().backward()
        return time.perf_counter() - start

    step(model), step(reference)  # warm-up
    mine, theirs = [], []
    for _ in range(rounds):
        mine.append(step(model))
        theirs.append(step(reference))
    return {
        "step_seconds": statistics.median(mine),
        "autograd_seconds": statistics.median(theirs),
        "time_ratio": statistics.median(mine) / statistics.median(theirs),
    }


def run_config(config: dict) -> dict:
    return {**config, **fresh_process(__file__, config, threads=2, timeout=1800)}


def _available(mode: str) -> bool:
    module = {
        "momentumnet": "momentumnet",
        "momentumnet-memory-free": "momentumnet",
        "memcnn": "memcnn",
        "revlib": "revlib",
    }.get(mode)
    if module is None:
        return True
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--depths", type=int, nargs="+", default=[8, 64, 128, 512])
    parser.add_argument("--functions", nargs="+", default=["mlp", "conv"], choices=["mlp", "conv"])
    parser.add_argument("--schemes", nargs="+", default=list(SCHEMES), choices=list(SCHEMES))
    parser.add_argument("--modes", nargs="+", help="only these modes (default: each scheme's list)")
    parser.add_argument("--json", help="also write all results to this file")
    parser.add_argument("--table", metavar="JSON", help="print the tables of an earlier run's --json file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.table:
        with open(args.table) as f:
            results = json.load(f)
        _table(results, sorted({r["depth"] for r in results}))
        return 0

    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, 2 threads per run, float32")
    print("peak = peak RSS during one training step minus RSS before it (MiB, gradients allocated before);")
    print(
        "saved = bytes autograd saved for backward (parameters excluded) + odenet's copies and records (MiB);"
    )
    print(f"time = median step at depth {TIMING_DEPTH} / plain autograd on the same scheme and function,")
    print("       both measured in alternation in one process (7 rounds).")
    results = []
    for function in args.functions:
        for scheme in args.schemes:
            for mode in SCHEMES[scheme]:
                if args.modes and mode not in args.modes:
                    continue
                if not _available(mode):
                    print(f"  ({mode} not installed: skipped)")
                    continue
                for depth in args.depths:
                    config = {
                        "function": function,
                        "scheme": scheme,
                        "mode": mode,
                        "depth": depth,
                        "time": depth == TIMING_DEPTH,
                    }
                    result = run_config(config)
                    results.append(result)
                    print("  " + json.dumps(result), flush=True)
    _table(results, args.depths)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def _table(results, depths):
    print()
    for function in sorted({r["function"] for r in results}):
        print(f"### {function}")
        print()
        header = " | ".join(f"peak / saved MiB at {d}" for d in depths)
        print(f"| scheme | mode | {header} | 512 vs 8 (peak) | time vs autograd at {TIMING_DEPTH} |")
        print("|---|---|" + "---|" * len(depths) + "---|---|")
        rows = [r for r in results if r["function"] == function]
        for scheme in SCHEMES:
            for mode in SCHEMES[scheme]:
                mine = {r["depth"]: r for r in rows if r["scheme"] == scheme and r["mode"] == mode}
                if not mine:
                    continue
                cells = []
                for d in depths:
                    r = mine.get(d)
                    if r is None:
                        cells.append("–")
                    elif "ReconstructionError" in r.get("error", ""):
                        cells.append(
                            "refused"
                        )  # the raise guard: a rebuilt input off by more than the tolerance
                    elif "error" in r:
                        cells.append("error")
                    else:
                        cells.append(f"{r['peak_rss_mib']:.0f} / {r['saved_mib']:.1f}")
                growth = "–"
                if 8 in mine and 512 in mine and "error" not in mine[8] and "error" not in mine[512]:
                    growth = f"{mine[512]['peak_rss_mib'] / max(mine[8]['peak_rss_mib'], 1e-9):.2f}x"
                timed = mine.get(TIMING_DEPTH, {})
                ratio = f"{timed['time_ratio']:.2f}x" if "time_ratio" in timed else "–"
                print(f"| {scheme} | {mode} | {' | '.join(cells)} | {growth} | {ratio} |")
        print()


if __name__ == "__main__":
    raise SystemExit(main())
