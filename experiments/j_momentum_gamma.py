"""(j) Momentum reversible networks at gamma 0.5, 0.9 and 0.99 on MNIST-1D: accuracy, memory and the
exact copies the reversible mode keeps (Li & Gao 2021, m-RevNet; Sander et al. 2021).

The momentum step v <- gamma v + (1 - gamma) f(x), x <- x + v is inverted exactly by
v = (v' - (1 - gamma) f(x)) / gamma: rounding errors grow by 1/gamma per layer going back, so a small
gamma makes the rebuilt activations drift, and the reversible mode's guard keeps exact copies of the
state to bound it (docs/compile.md). gamma is fixed here (a scheme file `param gamma = G`, as in Li
& Gao), not learned. Defaults of `odenet train` for MNIST-1D otherwise (conv1d, 32 channels, 2
stages of 16 layers, conv-BN-ReLU-conv, lr 0.01, 5 epochs), reversible mode and, for memory,
autograd; three seeds, each run its own process with one thread. Copies: after training, one
training-mode forward of 64 test signals, the bytes the blocks keep beyond their outputs divided by
the bytes of one state.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from common import arguments, mean_std, percent, train_command, write_json

from odenet.report.plotting import new_figure, save_figure
from odenet.training import load_checkpoint, load_data

args = arguments(__doc__.splitlines()[0], keep=True)
gammas = [0.5, 0.99] if args.quick else [0.5, 0.9, 0.99]
seeds = [0] if args.quick else [0, 1, 2]
extra = ["--depth", "2", "--epochs", "1", "--train-fraction", "0.05"] if args.quick else []
data = load_data("mnist1d", "conv1d")
SCHEME = """scheme momentum_fixed
state x, v
param gamma = {gamma}
init v = 0
v[n+1] = gamma*v[n] + (1 - gamma)*f(x[n])
x[n+1] = x[n] + v[n+1]
"""


def copies(folder: Path) -> float:
    """Exact copies kept by the reversible blocks in one training-mode forward, in states."""
    model, _ = load_checkpoint(folder / "checkpoint.pt")
    x = data.x_test[:64]
    state_bytes = {}

    def record(stage: int, layer: int, state: tuple) -> None:
        state_bytes.setdefault(stage, sum(t.numel() * t.element_size() for t in state))

    model.eval()
    with torch.no_grad():
        model.features(x, lambda *call: None, record)
    model.train()
    with torch.enable_grad():
        model(x)
    return sum(block.kept_bytes / state_bytes[i] for i, block in enumerate(model.stages))


earlier = args.out / "j_momentum_gamma.json"
kept = {}
if args.keep and earlier.is_file():  # a run stopped from outside is recorded as failed: train it again
    for row in json.loads(earlier.read_text())["runs"]:
        if not row["failed"]:
            kept[row["gamma"], row["memory"], row["seed"]] = row
rows = []
with tempfile.TemporaryDirectory() as scratch:
    for gamma in gammas:
        path = Path(scratch) / f"momentum_{gamma}.scheme"
        path.write_text(SCHEME.format(gamma=gamma))
        for memory in ("reversible", "autograd"):
            for seed in seeds:
                if (gamma, memory, seed) in kept:
                    rows.append(kept[gamma, memory, seed])
                    continue
                out = Path(scratch) / f"run-{gamma}-{memory}-{seed}"
                words = [
                    "train",
                    str(path),
                    "--data",
                    "mnist1d",
                    "--memory",
                    memory,
                    "--seed",
                    str(seed),
                    *extra,
                ]
                result = train_command(words, out=out)
                row = {"gamma": gamma, "memory": memory, "seed": seed}
                row.update(
                    {k: result.get(k) for k in ("test_accuracy", "peak_memory_mb", "seconds", "failed")}
                )
                if memory == "reversible" and not result.get("failed"):
                    row["copies"] = copies(out)
                rows.append(row)
                print(row, flush=True)

summary = []
for gamma in gammas:
    entry = {"gamma": gamma}
    for memory in ("reversible", "autograd"):
        runs = [r for r in rows if r["gamma"] == gamma and r["memory"] == memory and not r["failed"]]
        entry[memory] = {
            "accuracy": percent([r["test_accuracy"] for r in runs]) if runs else "failed",
            "peak_memory_mb": mean_std([r["peak_memory_mb"] for r in runs])[0] if runs else None,
            "seconds": mean_std([r["seconds"] for r in runs])[0] if runs else None,
            "failed": sum(1 for r in rows if r["gamma"] == gamma and r["memory"] == memory and r["failed"]),
        }
        if memory == "reversible" and runs:
            entry[memory]["copies"] = mean_std([r["copies"] for r in runs])[0]
    summary.append(entry)
    print(entry)
write_json(args.out / "j_momentum_gamma.json", {"runs": rows, "summary": summary})

fig, axes = new_figure(1, 2, figsize=(9, 3.5), dpi=100)
for memory, marker in (("reversible", "o"), ("autograd", "s")):
    sel = [r for r in rows if r["memory"] == memory and not r["failed"]]
    axes[0].plot([r["gamma"] for r in sel], [100 * r["test_accuracy"] for r in sel], marker, label=memory)
    axes[1].plot([r["gamma"] for r in sel], [r["peak_memory_mb"] for r in sel], marker, label=memory)
axes[0].set_ylabel("test accuracy (%)")
axes[1].set_ylabel("peak RSS (MiB)")
for ax in axes:
    ax.set_xlabel("gamma")
    ax.legend()
    ax.grid(True, alpha=0.3)
fig.suptitle("momentum networks on MNIST-1D")
save_figure(fig, args.out / "j_momentum_gamma.png")
