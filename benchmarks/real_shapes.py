"""Real shapes, one table: Llama decoder layers and a ResNet-stage-like conv stack as revnet couplings,
in odenet's memory modes beside revlib and memcnn on the same functions and weights (issue 29).

Workloads (float32, CPU, one thread):

- ``llama``: 8 Llama decoder layers from ``transformers`` (built from a config, random weights),
  width 256, 4 heads (2 key-value heads), MLP 512, 256 tokens, batch 4, SDPA attention. Each
  function is a layer's residual function with its rotary position embeddings bound in (the peers
  call ``f(x)`` alone); f takes the even layers, g the odd ones: 4 couplings. The state is the
  input twice along the token axis: ``(4, 512, 256)``, split in halves ``a`` and ``b``;
- ``conv``: f and g are conv3x3-BatchNorm-ReLU-conv3x3-BatchNorm on 32 channels (a ResNet basic
  block's branch; BatchNorm in training mode), the state 64 channels at 32x32, batch 16, 16
  couplings (``--depth``);
- the two rows of issue 29's own table, 32 couplings each: ``mlp``, f and g
  ``Linear(128, 128) -> tanh -> Linear(128, 128)``, the state ``(2048, 256)``; ``small_conv``, f and
  g conv3x3-ReLU-conv3x3 on 16 channels, the state 32 channels at 32x32, batch 8.

Rows: odenet ``autograd``, ``checkpoint`` (sqrt(depth) segments), ``reversible``, ``fixed_point``
(the coupling's unit coefficients hold exactly), revlib's ``ReversibleSequential`` and memcnn's
``InvertibleModuleWrapper(AdditiveCoupling)``: the same arithmetic, a <- a + f(b), b <- b + g(a).

Columns:

- **peak (profile)**: ``odenet.profile``'s peak of live tensor memory during one training step;
- **peak RSS**: a fresh process's peak resident memory during the step minus its resident memory
  before (glibc's mmap threshold fixed at 64 KiB; the gradients allocated before);
- **saved**: tensors autograd saved (parameters excluded) plus what odenet keeps besides;
- **time**: median over interleaved rounds in one process of the row's step over odenet's autograd
  step in the same round;
- **gradient error**: ||g - g64|| / ||g64|| over the functions' parameters, g64 from odenet's
  autograd block in float64 on the same weights.

Peers are optional (``pip install --no-deps revlib memcnn``); a missing one's row says so.
Run: python benchmarks/real_shapes.py [--workloads llama conv mlp small_conv] [--depth 16] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import fresh_process, training_step

ROWS = ["autograd", "checkpoint", "reversible", "fixed_point", "revlib", "memcnn"]
WORKLOADS = ["llama", "conv", "mlp", "small_conv"]
DEPTH = {"llama": 4, "conv": 16, "mlp": 32, "small_conv": 32}  # couplings (llama: its 8 layers)
SCALING_ROWS = ["autograd", "checkpoint", "reversible", "revlib", "memcnn"]
PEERS = {"revlib": "revlib", "memcnn": "memcnn"}


def functions(workload: str, depth: int, dtype, quick: bool):
    """(f modules, g modules, input) for one workload, the same weights for the same arguments."""
    import torch
    from torch import nn

    import odenet

    torch.manual_seed(0)
    if workload == "llama":
        import logging

        import transformers  # imported for this workload only: it takes seconds

        logging.getLogger("transformers").setLevel(logging.ERROR)
        width, tokens, batch, layers = (32, 16, 2, 4) if quick else (256, 256, 4, 8)
        config = transformers.LlamaConfig(
            vocab_size=64, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=tokens,
            attn_implementation="sdpa", bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        llama = transformers.LlamaModel(config).to(dtype)
        x = torch.randn(batch, tokens, width, generator=torch.Generator().manual_seed(1)).to(dtype)
        positions = torch.arange(tokens)[None]
        rotary = llama.rotary_emb(x, position_ids=positions)
        residual = odenet.residual_functions(llama.layers)

        class Bound(nn.Module):
            def __init__(self, i):
                super().__init__()
                self.function = residual(i)

            def forward(self, h):
                return self.function(h, position_embeddings=rotary, position_ids=positions)

        fs = [Bound(i) for i in range(0, layers, 2)]
        gs = [Bound(i) for i in range(1, layers, 2)]
        return fs, gs, torch.cat([x, x], dim=1)
    if workload == "mlp":
        width, batch = (16, 64) if quick else (128, 2048)

        def mlp():
            return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width)).to(dtype)

        x = torch.randn(batch, 2 * width, generator=torch.Generator().manual_seed(1)).to(dtype)
        return [mlp() for _ in range(depth)], [mlp() for _ in range(depth)], x
    if workload == "small_conv":
        channels, side, batch = (4, 8, 2) if quick else (16, 32, 8)

        def small():
            return nn.Sequential(
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(channels, channels, 3, padding=1),
            ).to(dtype)

        x = torch.randn(batch, 2 * channels, side, side, generator=torch.Generator().manual_seed(1))
        return [small() for _ in range(depth)], [small() for _ in range(depth)], x.to(dtype)
    channels, side, batch = (8, 8, 4) if quick else (32, 32, 16)

    def branch():
        return nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        ).to(dtype)

    fs = [branch() for _ in range(depth)]
    gs = [branch() for _ in range(depth)]
    x = torch.randn(batch, 2 * channels, side, side, generator=torch.Generator().manual_seed(1)).to(dtype)
    return fs, gs, x


def build(workload: str, row: str, depth: int, dtype=None, quick: bool = False):
    """(network, input, the modules holding the functions' parameters)."""
    import torch
    from torch import nn

    import odenet

    dtype = dtype or torch.float32
    fs, gs, x = functions(workload, depth, dtype, quick)
    owner = nn.ModuleList([*fs, *gs])
    if row == "revlib":
        import revlib

        modules = [m for pair in zip(fs, gs, strict=True) for m in pair]
        return revlib.ReversibleSequential(*modules, split_dim=1), x, owner
    if row == "memcnn":
        import memcnn

        couplings = [
            memcnn.InvertibleModuleWrapper(memcnn.AdditiveCoupling(f, g), keep_input=False)
            for f, g in zip(fs, gs, strict=True)
        ]
        return nn.Sequential(*couplings), x, owner
    block = odenet.compile(
        "revnet",
        {"f": lambda i: fs[i], "g": lambda i: gs[i]},
        len(fs),
        "autograd" if row == "autograd" else row,
    )
    return block, x, owner


def _step(model, x) -> None:
    model(x).square().mean().backward()


def worker(argument: dict) -> dict:
    import torch

    import odenet

    torch.set_num_threads(1)
    workload, row, depth, quick = argument["workload"], argument["row"], argument["depth"], argument["quick"]
    model, x, owner = build(workload, row, depth, quick=quick)
    x = x.requires_grad_(row in PEERS)  # the peers rebuild only an input that requires grad
    _step(model, x)  # warm-up
    fresh = training_step(model, x, gradients="none")["peak_mib"]
    memory = training_step(model, x)
    memory["peak_none_mib"] = fresh
    if argument.get("scaling"):
        for p in model.parameters():
            p.grad = None
        return {**memory, "profile_peak_mib": odenet.profile(model, x).peak_bytes / 2**20}
    got = {name: p.grad.clone() for name, p in owner.named_parameters() if p.grad is not None}
    reference, x64, owner64 = build(workload, "autograd", depth, torch.float64, quick)
    _step(reference, x64)
    expected = {name: p.grad for name, p in owner64.named_parameters() if name in got}
    num = math.sqrt(sum((got[k].double() - g).square().sum().item() for k, g in expected.items()))
    den = math.sqrt(sum(g.square().sum().item() for g in expected.values()))
    for p in model.parameters():
        p.grad = None
    record = odenet.profile(model, x)
    return {**memory, "profile_peak_mib": record.peak_bytes / 2**20, "gradient_error": num / den}


def times(workload: str, rows: list[str], depth: int, rounds: int, quick: bool) -> dict[str, float]:
    """Median over interleaved rounds of (row / odenet's autograd) in one process."""
    import torch

    torch.set_num_threads(1)
    built = {row: build(workload, row, depth, quick=quick)[:2] for row in rows}
    baseline, x_base = built["autograd"]

    def timed(model, x, row) -> float:
        x = x.detach().requires_grad_(row in PEERS)
        start = time.perf_counter()
        _step(model, x)
        elapsed = time.perf_counter() - start
        for p in model.parameters():
            p.grad = None
        return elapsed

    for row, (model, x) in built.items():  # warm-up
        timed(model, x, row)
    samples: dict[str, list[float]] = {row: [] for row in rows}
    for i in range(rounds):
        for row in rows if i % 2 == 0 else rows[::-1]:
            model, x = built[row]
            base = timed(baseline, x_base, "autograd")
            samples[row].append(timed(model, x, row) / base)
    return {row: statistics.median(values) for row, values in samples.items()}


def _available(row: str) -> bool:
    if row not in PEERS:
        return True
    try:
        __import__(PEERS[row])
    except ImportError:
        return False
    return True


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", default=WORKLOADS, choices=WORKLOADS)
    parser.add_argument("--depth", type=int, help="couplings (conv 16, mlp and small_conv 32)")
    parser.add_argument(
        "--scaling", nargs="*", type=int, metavar="DEPTH",
        help="instead of the table: peak against depth (default 8 16 32 64 128 256) for the first "
        "workload given, drawn to docs/real_shapes_depth.png (--png)",
    )  # fmt: skip
    parser.add_argument(
        "--png", default=str(Path(__file__).resolve().parent.parent / "docs" / "real_shapes_depth.png")
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code path")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    if args.scaling is not None:
        return scaling(args.workloads[0], args.scaling or [8, 16, 32, 64, 128, 256], args)
    results = {}
    for workload in args.workloads:
        rows = [row for row in ROWS if _available(row)]
        missing = [row for row in ROWS if row not in rows]
        depth = args.depth or DEPTH[workload]
        ratios = times(workload, rows, depth, args.rounds, args.quick)
        print(f"\n### {workload}" + (f" (not installed: {', '.join(missing)})" if missing else ""))
        print(
            "| row | peak, profile (MiB) | peak RSS, gradients made (MiB) | peak RSS, gradients there (MiB) "
            "| saved (MiB) | time / autograd | gradient error |"
        )
        print("|---|---|---|---|---|---|---|")
        results[workload] = {}
        for row in rows:
            argument = {"workload": workload, "row": row, "depth": depth, "quick": args.quick}
            measured = fresh_process(__file__, argument)
            measured["time"] = ratios[row]
            results[workload][row] = measured
            if "error" in measured:
                print(f"| {row} | failed: {measured['error']} | | | | | |")
                continue
            print(
                f"| {row} | {measured['profile_peak_mib']:.1f} | {measured['peak_none_mib']:.1f} | "
                f"{measured['peak_mib']:.1f} | {measured['saved_mib']:.1f} | {measured['time']:.2f}x | "
                f"{measured['gradient_error']:.1e} |",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def scaling(workload: str, depths: list[int], args) -> int:
    """Peak memory of one training step against depth, each (row, depth) in a fresh process."""
    rows = [row for row in SCALING_ROWS if _available(row)]
    print(f"### {workload}: peak RSS (gradients made by the step) / peak of live tensors, MiB")
    print("| depth | " + " | ".join(rows) + " |")
    print("|---|" + "---|" * len(rows))
    results: dict[str, dict[int, dict]] = {row: {} for row in rows}
    for depth in depths:
        cells = []
        for row in rows:
            argument = {
                "workload": workload,
                "row": row,
                "depth": depth,
                "quick": args.quick,
                "scaling": True,
            }
            measured = results[row][depth] = fresh_process(__file__, argument)
            cells.append(
                "failed" if "error" in measured
                else f"{measured['peak_none_mib']:.1f} / {measured['profile_peak_mib']:.1f}"
            )  # fmt: skip
        print(f"| {depth} | " + " | ".join(cells) + " |", flush=True)
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharex=True)
    for ax, key, title in [
        (axes[0], "peak_none_mib", "peak RSS of a fresh process"),
        (axes[1], "profile_peak_mib", "peak of live tensors (odenet.profile)"),
    ]:
        for row in rows:
            points = [(d, r[key]) for d, r in results[row].items() if "error" not in r]
            ax.plot(*zip(*points, strict=True), marker="o", label=row)
        ax.set(xscale="log", yscale="log", xlabel="couplings (depth)", ylabel="MiB", title=title)
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"one training step, {workload} revnet couplings (gradients made by the step)")
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
