"""(i) A Hamiltonian network of 1202 layers against one of 16 on digits, in reversible mode (Chang et al.
2018: very deep Hamiltonian networks train, with memory flat in depth).

Both networks discretize the same ODE over the same time T = 1.6: h = T / depth (0.1 at 16 layers,
0.00133 at 1202), so the deep one is a finer discretization rather than a longer flow (h = 0.1 at
1202 layers, a horizon of 120, trained to 23% in experiment (c)). Chang's K^T s(K y + b) functions,
mlp layout, 32 features per state (y and z), 10 epochs of Adam at lr 0.003 with cosine decay, batch
64, three seeds; each run is `odenet train` in its own process with one thread, so its peak resident
memory is its own. One autograd run of the deep network gives the memory reversible mode saves.
"""

from __future__ import annotations

from common import arguments, mean_std, percent, train_command, write_json

from odenet.report.plotting import new_figure, save_figure

args = arguments(__doc__.splitlines()[0])
horizon = 1.6
depths = [4, 32] if args.quick else [16, 1202]
seeds = [0] if args.quick else [0, 1, 2]
epochs = 1 if args.quick else 10


def words(depth: int, seed: int, memory: str = "reversible") -> list[str]:
    return [
        "train", "hamiltonian", "--data", "digits", "--layout", "mlp", "--family", "chang",
        "--width", "32", "--depth", str(depth), "--step", f"{horizon / depth:.6g}", "--memory", memory,
        "--lr", "3e-3", "--epochs", str(epochs), "--seed", str(seed),
    ]  # fmt: skip


rows = []
for depth in depths:
    for memory in ("reversible", "autograd"):
        if memory == "autograd" and depth != depths[-1]:
            continue
        for seed in seeds if memory == "reversible" else seeds[:1]:
            result = train_command(words(depth, seed, memory))
            row = {
                "depth": depth,
                "memory": memory,
                "seed": seed,
                "command": "odenet " + " ".join(words(depth, seed, memory)),
            }
            row.update(
                {
                    k: result.get(k)
                    for k in ("test_accuracy", "peak_memory_mb", "seconds", "parameters", "failed")
                }
            )
            rows.append(row)
            print(row, flush=True)

summary = {}
for depth in depths:
    runs = [r for r in rows if r["depth"] == depth and r["memory"] == "reversible" and not r["failed"]]
    summary[depth] = {
        "accuracy": percent([r["test_accuracy"] for r in runs]),
        "mean": mean_std([r["test_accuracy"] for r in runs])[0],
        "peak_memory_mb": mean_std([r["peak_memory_mb"] for r in runs])[0],
        "seconds": mean_std([r["seconds"] for r in runs])[0],
        "parameters": runs[0]["parameters"],
        "seeds": len(runs),
    }
    print(f"{depth} layers, reversible: {summary[depth]}")
shallow, deep = summary[depths[0]], summary[depths[-1]]
gap = 100 * (shallow["mean"] - deep["mean"])
print(f"gap (16 minus deep): {gap:.1f} points; the claim holds if it is at most 2")
write_json(args.out / "i_deep_hamiltonian.json", {"runs": rows, "summary": summary, "gap_points": gap})

fig, axes = new_figure(1, 2, figsize=(9, 3.5), dpi=100)
for ax, key, label in (
    (axes[0], "test_accuracy", "test accuracy (%)"),
    (axes[1], "peak_memory_mb", "peak RSS (MiB)"),
):
    for memory, marker in (("reversible", "o"), ("autograd", "s")):
        sel = [r for r in rows if r["memory"] == memory and not r["failed"]]
        scale = 100 if key == "test_accuracy" else 1
        ax.plot([r["depth"] for r in sel], [scale * r[key] for r in sel], marker, label=memory, alpha=0.7)
    ax.set_xscale("log")
    ax.set_xlabel("layers")
    ax.set_ylabel(label)
    ax.legend()
    ax.grid(True, alpha=0.3)
fig.suptitle("hamiltonian on digits, T = 1.6 (h = T / depth)")
save_figure(fig, args.out / "i_deep_hamiltonian.png")
