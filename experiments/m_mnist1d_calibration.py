"""(m) MNIST-1D calibration: networks odenet builds against the data set's published baselines
(Greydanus & Kobak: about 68% for an MLP, about 94% for a small CNN, on the same 4000/1000 split).

- MLP: the mlp layout (40 features), a stem Linear(40, 100), one Euler layer with h = 1 and a ReLU
  MLP function W2 relu(W1 y + b1) + b2 (hidden 100), a Linear head: a two-hidden-layer MLP with a
  skip connection. 150 epochs of Adam at lr 0.01 (about the published 6000 steps of batch 100).
- Conv ResNet: the conv1d layout, 32 channels, 2 stages of 4 Euler layers (h = 1) with
  conv-BN-ReLU-conv branches, 10 epochs of Adam at lr 0.01.
Three seeds each, batch 64, cosine decay.
"""

from __future__ import annotations

from common import arguments, mean_std, percent, run, write_json

from odenet.report.plotting import new_figure, save_figure

args = arguments(__doc__.splitlines()[0])
seeds = [0] if args.quick else [0, 1, 2]
networks = {
    "mlp": dict(layout="mlp", family="mlp", activation="relu", width=100, depth=1, epochs=150, published=68),
    "conv resnet": dict(layout="conv1d", stages=2, family="bn", width=32, depth=4, epochs=10, published=94),
}
results = {}
for name, spec in networks.items():
    spec = dict(spec)
    published = spec.pop("published")
    epochs = 1 if args.quick else spec.pop("epochs")
    spec.pop("epochs", None)
    accuracies, parameters = [], None
    for seed in seeds:
        _, m = run("euler", "mnist1d", epochs=epochs, seed=seed, params={"h": 1.0}, **spec)
        accuracies.append(m["test_accuracy"])
        parameters = m["parameters"]
    results[name] = {
        "test_accuracy": accuracies,
        "mean": mean_std(accuracies)[0],
        "published": published,
        "parameters": parameters,
        "epochs": epochs,
    }
    print(
        f"{name}: {percent(accuracies)}% ({parameters} parameters; published about {published}%)", flush=True
    )
write_json(args.out / "m_mnist1d_calibration.json", results)

fig, ax = new_figure(figsize=(5, 3.5), dpi=100)
names = list(results)
ax.bar([i - 0.2 for i in range(len(names))], [100 * results[n]["mean"] for n in names], 0.4, label="odenet")
ax.bar([i + 0.2 for i in range(len(names))], [results[n]["published"] for n in names], 0.4, label="published")
ax.set_xticks(range(len(names)), names)
ax.set_ylabel("test accuracy (%)")
ax.legend()
save_figure(fig, args.out / "m_mnist1d_calibration.png")
