"""(b) Nested rings: a momentum network separates them, an Euler ResNet with the same shared function
in the plane cannot (a flow of the plane keeps the inner disk enclosed by the ring).

Both networks: no stem (the state is the 2-D point), a linear head to two classes, one shared MLP
f: R^2 -> R^2 (hidden 32, tanh), 20 layers; Adam, 1000 training points. Prints test accuracy.
"""

from __future__ import annotations

import torch
from common import POINT_FLOW, arguments, run, write_json

from odenet.report.plotting import new_figure, save_figure

args = arguments(__doc__.splitlines()[0])
epochs = 2 if args.quick else 60
depth = 4 if args.quick else 20
seeds = [0] if args.quick else [0, 1, 2]
results = {}
models = {}
for scheme in ("euler", "momentum"):
    rows = []
    for seed in seeds:
        model, m = run(
            scheme,
            "rings",
            epochs=epochs,
            seed=seed,
            width=2,
            depth=depth,
            **POINT_FLOW,
        )
        rows.append(m["test_accuracy"])
        models.setdefault(scheme, model)
        print(f"{scheme:9s} seed {seed}: test accuracy {100 * m['test_accuracy']:.1f}%")
    results[scheme] = {"test_accuracy": rows, "mean_test_accuracy": sum(rows) / len(rows)}
results["setup"] = {"depth": depth, "epochs": epochs, "seeds": seeds, "hidden": 32}
write_json(args.out / "b_rings.json", results)

from odenet.training import load_data  # noqa: E402

data = load_data("rings")
fig, axes = new_figure(1, 2, figsize=(8, 3.8), dpi=100)
for ax, (scheme, model) in zip(axes, models.items(), strict=True):
    with torch.no_grad():
        features = model.features(data.x_test)
    ax.scatter(features[:, 0], features[:, 1], c=data.y_test, s=4, cmap="coolwarm")
    acc = results[scheme]["test_accuracy"][0]
    ax.set_title(f"{scheme}: points after the last layer ({100 * acc:.0f}%)")
save_figure(fig, args.out / "b_rings.png")
