"""(a) A momentum network learns x -> -x**3, an Euler ResNet with the same shared function cannot.

The map reverses the order of points on the line. The flow of a first-order ODE x' = f(x) in 1-D
keeps their order (trajectories cannot cross), so a ResNet x <- x + h f(x) with small steps cannot
represent it; a momentum network (x, v) lives in 2-D phase space and can (Sander et al. 2021,
Li & Gao 2021). Both networks: no stem and no head (the output is the final x), one shared MLP
f: R -> R (hidden 32, tanh), 20 layers, h = 0.1 for Euler; full-batch Adam on 200 points.
Prints and writes the test MSE of each, and a figure of the learned maps and trajectories.
"""

from __future__ import annotations

import torch
from common import POINT_FLOW, arguments, run, write_json

from odenet.report.plotting import new_figure, save_figure

args = arguments(__doc__.splitlines()[0])
epochs = 20 if args.quick else 600
depth = 4 if args.quick else 20
seeds = [0] if args.quick else [0, 1, 2]
results = {}
models = {}
for scheme in ("euler", "momentum"):
    rows = []
    for seed in seeds:
        model, m = run(
            scheme,
            "cross1d",
            epochs=epochs,
            seed=seed,
            batch_size=200,
            width=1,
            depth=depth,
            head=False,
            **POINT_FLOW,
        )
        rows.append(m["test_loss"])
        models.setdefault(scheme, model)
        print(f"{scheme:9s} seed {seed}: test MSE {m['test_loss']:.5f}")
    results[scheme] = {"test_mse": rows, "mean_test_mse": sum(rows) / len(rows)}
baseline = float(torch.linspace(-1, 1, 1001).pow(3).square().mean())  # MSE of predicting 0
results["mse_of_predicting_zero"] = baseline
results["setup"] = {"depth": depth, "epochs": epochs, "seeds": seeds, "hidden": 32}
write_json(args.out / "a_cross1d.json", results)
print(
    f"mean test MSE: euler {results['euler']['mean_test_mse']:.5f}, "
    f"momentum {results['momentum']['mean_test_mse']:.5f} (predicting 0: {baseline:.5f})"
)

fig, axes = new_figure(1, 3, figsize=(12, 3.6), dpi=100)
x = torch.linspace(-1, 1, 201)[:, None]
axes[0].plot(x, -(x**3), "k--", label="target -x³")
for scheme, model in models.items():
    with torch.no_grad():
        axes[0].plot(x, model(x), label=scheme)
axes[0].legend()
axes[0].set_title("learned map (seed 0)")
for ax, scheme in zip(axes[1:], models, strict=True):
    block = models[scheme].stages[0]
    starts = torch.linspace(-1, 1, 11)[:, None]
    with torch.no_grad():
        state = block.initial_state(starts)
        path = [block.output(state)]
        for n in range(block.depth):
            state = block.step(n, state)
            path.append(block.output(state))
    path = torch.stack(path)[:, :, 0]
    ax.plot(range(block.depth + 1), path, color="C0" if scheme == "euler" else "C1")
    ax.set_title(f"{scheme}: x over layers")
    ax.set_xlabel("layer")
save_figure(fig, args.out / "a_cross1d.png")
