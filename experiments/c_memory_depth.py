"""(c) Memory against depth up to 1202 layers: hamiltonian in reversible mode against plain autograd;
and a 1202-layer hamiltonian network trained on digits in reversible mode (Chang et al. 2018).

Each (mode, depth) runs in a fresh subprocess: it builds the digits classifier (mlp layout, chang
family, 32 features per state, y and z), takes one training step on a batch of 256 and reports the
peak RSS of the step minus the RSS before it (MiB, measured by the operating system) and the bytes
of tensors autograd saved for backward (parameters excluded).
"""

from __future__ import annotations

import json
import subprocess
import sys

from common import arguments, run, write_json

from odenet.report.plotting import new_figure, save_figure


def worker(mode: str, depth: int) -> dict:
    import torch

    from odenet.ir import format_scheme
    from odenet.library import load
    from odenet.models import ModelConfig, build_model
    from odenet.nn.memory import peak_rss_mib, rss_mib, saved_tensor_bytes
    from odenet.training import load_data

    torch.manual_seed(0)
    data = load_data("digits")
    config = ModelConfig(
        format_scheme(load("hamiltonian")),
        data.input_shape,
        10,
        family="chang",
        width=32,
        depth=depth,
        memory=mode,
    )
    model = build_model(config)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    x, y = data.x_train[:256], data.y_train[:256]
    before = rss_mib()
    peak_before = peak_rss_mib()
    with saved_tensor_bytes(exclude=model.parameters()) as saved:
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    peak = peak_rss_mib()
    kept = sum(block.kept_bytes for block in model.stages)
    return {
        "mode": mode,
        "depth": depth,
        "step_peak_mib": max(peak, peak_before) - before,
        "saved_mib": (saved.bytes + kept) / 2**20,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


if len(sys.argv) > 1 and sys.argv[1] == "--worker":
    print(json.dumps(worker(sys.argv[2], int(sys.argv[3]))))
    sys.exit(0)

args = arguments(__doc__.splitlines()[0])
depths = [8, 32] if args.quick else [8, 32, 128, 512, 1202]
rows = []
for depth in depths:
    for mode in ("autograd", "reversible"):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", mode, str(depth)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"depth {depth:5d} {mode:10s}: step peak RSS {row['step_peak_mib']:8.1f} MiB, "
            f"saved for backward {row['saved_mib']:8.2f} MiB"
        )

train_depth = 16 if args.quick else 1202
_, m = run(
    "hamiltonian",
    "digits",
    epochs=1 if args.quick else 3,
    family="chang",
    width=32,
    depth=train_depth,
    memory="reversible",
    lr=3e-3,
)
deep = {
    "depth": train_depth,
    "epochs": m["epochs"],
    "test_accuracy": m["test_accuracy"],
    "seconds": m["seconds"],
    "peak_memory_mb": m["peak_memory_mb"],
}
print(
    f"hamiltonian, {train_depth} layers, reversible: test accuracy {100 * m['test_accuracy']:.1f}% "
    f"after {m['epochs']} epochs ({m['seconds']:.0f} s)"
)
write_json(args.out / "c_memory_depth.json", {"steps": rows, "deep_training": deep})

fig, axes = new_figure(1, 2, figsize=(10, 3.8), dpi=100)
for mode, color in (("autograd", "C3"), ("reversible", "C0")):
    sel = [r for r in rows if r["mode"] == mode]
    axes[0].plot([r["depth"] for r in sel], [r["step_peak_mib"] for r in sel], "o-", color=color, label=mode)
    axes[1].plot([r["depth"] for r in sel], [r["saved_mib"] for r in sel], "o-", color=color, label=mode)
for ax, title in zip(axes, ("peak RSS of a training step (MiB)", "saved for backward (MiB)"), strict=True):
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel("layers")
    ax.set_title(title)
    ax.legend()
fig.suptitle("hamiltonian, digits, batch 256")
save_figure(fig, args.out / "c_memory_depth.png")
