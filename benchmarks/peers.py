"""One run, every method, one table: time, memory and exactness of odenet's modes beside the peers.

Residual function ``Linear(256, 256) -> tanh -> Linear(256, 256)``, batch 512, depth 64 (--depth),
float32, CPU. Each row is one network on the same function and weights, grouped by the scheme the
peers implement:

- leapfrog (h = 1/depth): autograd, checkpoint (sqrt(depth) segments), reversible, reversible with
  ``memory_budget`` 0.25 and 0.5, adjoint (exact for this time-symmetric scheme), fixed_point;
- momentum (gamma = 0.9): autograd, checkpoint, reversible, fixed_point, momentumnet's MomentumNet
  (memory-free, ``use_backprop=False``);
- revnet (additive coupling): autograd, reversible, memcnn's InvertibleModuleWrapper
  (AdditiveCoupling), revlib's ReversibleSequential;
- euler (h = 1/depth): autograd, checkpoint, adjoint (approximate), torchdiffeq's ``odeint_adjoint``
  with the Euler method on the same grid, its vector field choosing layer ``n`` on ``[n h, (n+1) h)``.

Columns:

- **time**: median over interleaved rounds (one process, after warm-up) of the row's training step
  over odenet's autograd step of the same scheme in the same round;
- **peak MiB**: peak resident memory of a fresh process during one training step minus its
  resident memory before (Linux's VmHWM restarted; glibc's mmap threshold fixed at 64 KiB so that
  freed tensors leave the resident set); the parameters' gradients are allocated before;
- **saved MiB**: bytes of the tensors autograd saved for backward (parameters excluded) plus what
  odenet keeps besides (``kept_bytes``); what a peer keeps outside autograd is not seen here (its
  peak shows it);
- **gradient error**: ||g - g64|| / ||g64|| over the residual functions' gradients, where g64 is
  odenet's plain autograd block of the same scheme and weights in float64: the peers compute the
  same arithmetic (momentumnet's v <- gamma v + (1 - gamma) f(x), x <- x + v; memcnn's and
  revlib's additive coupling; torchdiffeq's Euler steps). For fixed_point the reference has the
  rounded gamma it computes with.

Peers are optional: ``pip install --no-deps momentumnet memcnn revlib torchdiffeq`` (a row whose
peer is missing says so). Run: python benchmarks/peers.py [--depth 64] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

from measure import fresh_process, training_step

WIDTH, BATCH = 256, 512
ROWS = {
    "leapfrog": [
        "autograd",
        "checkpoint",
        "reversible",
        "budget 0.25",
        "budget 0.5",
        "adjoint",
        "fixed_point",
    ],
    "momentum": ["autograd", "checkpoint", "reversible", "fixed_point", "momentumnet"],
    "revnet": ["autograd", "reversible", "memcnn", "revlib"],
    "euler": ["autograd", "checkpoint", "adjoint", "torchdiffeq"],
}
PEERS = {"momentumnet": "momentumnet", "memcnn": "memcnn", "revlib": "revlib", "torchdiffeq": "torchdiffeq"}


def _make(torch, nn):
    return lambda *_: nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH))


def _ours(scheme_name, memory, depth, torch, nn, dtype):
    """odenet's block for ``scheme_name`` in ``memory`` ("budget F" for reversible with a budget)."""
    import odenet

    torch.manual_seed(0)
    scheme = odenet.load(scheme_name)
    params = {"h": 1 / depth} if "h" in [p.name for p in scheme.params] else {}
    kwargs = {}
    if memory.startswith("budget"):
        memory, kwargs = "reversible", {"memory_budget": float(memory.split()[1])}
    block = odenet.compile(
        scheme, {f.name: _make(torch, nn) for f in scheme.functions}, depth, memory, params, **kwargs
    )
    return block.to(dtype)


class _Field:
    """torchdiffeq's vector field: layer n of an odenet Euler block on t in [n h, (n+1) h)."""

    def __init__(self, block, depth):
        self.block, self.depth = block, depth

    def module(self, torch, nn):
        block, depth = self.block, self.depth

        class Field(nn.Module):
            def __init__(self):
                super().__init__()
                self.layers = block.functions["f"]

            def forward(self, t, x):
                n = min(depth - 1, math.floor(float(t) * depth + 1e-6))
                return self.layers[n](x)

        return Field()


def build(scheme_name, row, depth, torch, nn, dtype=None):
    """(network, input maker, the odenet block whose sub-networks it runs) for one row."""
    dtype = dtype or torch.float32
    states = 2 if scheme_name == "revnet" else 1

    def inputs():
        g = torch.Generator().manual_seed(1)
        return torch.randn(BATCH, WIDTH * states, generator=g, dtype=dtype)

    if row == "momentumnet":
        import momentumnet

        base = _ours("momentum", "autograd", depth, torch, nn, dtype)
        functions = [base.functions["f"][n] for n in range(depth)]
        return momentumnet.MomentumNet(functions, gamma=0.9, use_backprop=False).to(dtype), inputs, base
    if row == "memcnn":
        import memcnn

        base = _ours("revnet", "autograd", depth, torch, nn, dtype)
        layers = [
            memcnn.InvertibleModuleWrapper(
                memcnn.AdditiveCoupling(base.functions["f"][n], base.functions["g"][n]), keep_input=False
            )
            for n in range(depth)
        ]
        return nn.Sequential(*layers), inputs, base
    if row == "revlib":
        import revlib

        base = _ours("revnet", "autograd", depth, torch, nn, dtype)
        modules = [m for n in range(depth) for m in (base.functions["f"][n], base.functions["g"][n])]
        return revlib.ReversibleSequential(*modules, split_dim=1), inputs, base
    if row == "torchdiffeq":
        import torchdiffeq

        base = _ours("euler", "autograd", depth, torch, nn, dtype)
        field = _Field(base, depth).module(torch, nn)
        times = torch.tensor([0.0, 1.0], dtype=dtype)
        options = {"step_size": 1 / depth}

        class Solved(nn.Module):
            def __init__(self):
                super().__init__()
                self.field = field

            def forward(self, x):
                return torchdiffeq.odeint_adjoint(
                    self.field,
                    x,
                    times,
                    method="euler",
                    options=options,
                    adjoint_options=options,
                    adjoint_params=tuple(self.field.parameters()),
                )[-1]

        return Solved(), inputs, base
    block = _ours(scheme_name, row, depth, torch, nn, dtype)
    return block, inputs, block


def reference(scheme_name, row, depth, torch, nn):
    """Our plain autograd block of the scheme in float64 (the same weights: the same seed), with the
    parameters fixed point computes with where the row rounds them."""
    block = _ours(scheme_name, "autograd", depth, torch, nn, torch.float64)
    if row == "fixed_point":
        from odenet.nn.modes.fixed_point import COEFFICIENT_BITS
        from odenet.nn.params import constrain, unconstrain

        with torch.no_grad():
            for name, raw in block.raw_params.items():
                value = constrain(raw, block.intervals[name])[0].item()
                rounded = round(value * 2**COEFFICIENT_BITS) / 2**COEFFICIENT_BITS
                raw.fill_(unconstrain(rounded, block.intervals[name]))
    return block


def _step(model, x, torch):
    loss = model(x).square().mean()
    loss.backward()


def worker(scheme_name: str, row: str, depth: int) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    model, inputs, owner = build(scheme_name, row, depth, torch, nn)
    x = inputs().requires_grad_(row in ("memcnn", "revlib"))
    _step(model, x, torch)  # warm-up
    memory = training_step(model, x)
    got = {name: p.grad.clone() for name, p in owner.named_parameters() if p.grad is not None}
    exact = reference(scheme_name, row, depth, torch, nn)
    x64 = inputs().to(torch.float64)
    exact(x64).square().mean().backward()
    expected = {name: p.grad for name, p in exact.named_parameters() if p.grad is not None and name in got}
    num = math.sqrt(sum((got[k].double() - g).square().sum().item() for k, g in expected.items()))
    den = math.sqrt(sum(g.square().sum().item() for g in expected.values()))
    return {**memory, "gradient_error": num / den}


def measure(scheme_name: str, row: str, depth: int) -> dict:
    return fresh_process(__file__, [scheme_name, row, depth])


def times(scheme_name: str, rows: list[str], depth: int, rounds: int) -> dict[str, float]:
    """Median over interleaved rounds of (row / odenet's autograd) for one scheme's rows."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    models = {row: build(scheme_name, row, depth, torch, nn)[:2] for row in rows}
    baseline = models["autograd"][0]
    x_base = models["autograd"][1]()

    def timed(model, inputs, row):
        x = inputs().requires_grad_(row in ("memcnn", "revlib"))
        start = time.perf_counter()
        _step(model, x, torch)
        elapsed = time.perf_counter() - start
        for p in model.parameters():
            p.grad = None
        return elapsed

    for _ in range(2):
        for row, (model, inputs) in models.items():
            timed(model, inputs, row)
    samples: dict[str, list[float]] = {row: [] for row in rows}
    for i in range(rounds):
        for row in rows if i % 2 == 0 else rows[::-1]:
            model, inputs = models[row]
            base = timed(baseline, lambda: x_base, "autograd")
            samples[row].append(timed(model, inputs, row) / base)
    return {row: statistics.median(values) for row, values in samples.items()}


def _available(row: str) -> bool:
    module = PEERS.get(row)
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
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--schemes", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker))))
        return 0
    import torch

    print(
        f"torch {torch.__version__}, one thread, float32; MLP {WIDTH} -> tanh -> {WIDTH}, batch {BATCH}, "
        f"depth {args.depth}; time: median of {args.rounds} interleaved rounds over odenet's autograd"
    )
    print()
    print("| scheme | method | time / autograd | peak MiB | saved MiB | gradient error vs float64 |")
    print("|---|---|---|---|---|---|")
    results = []
    for scheme_name in args.schemes:
        rows = [row for row in ROWS[scheme_name] if _available(row)]
        missing = [row for row in ROWS[scheme_name] if row not in rows]
        ratios = times(scheme_name, rows, args.depth, args.rounds)
        for row in rows:
            r = measure(scheme_name, row, args.depth) | {
                "scheme": scheme_name,
                "row": row,
                "time": ratios[row],
            }
            results.append(r)
            if "error" in r:
                print(f"| {scheme_name} | {row} | {r['time']:.2f}x | failed: {r['error']} | | |", flush=True)
                continue
            print(
                f"| {scheme_name} | {row} | {r['time']:.2f}x | {r['peak_mib']:.0f} | {r['saved_mib']:.1f} | "
                f"{r['gradient_error']:.1e} |",
                flush=True,
            )
        for row in missing:
            print(f"| {scheme_name} | {row} | not installed | | | |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
