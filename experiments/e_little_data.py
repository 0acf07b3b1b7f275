"""(e) Little data: a Hamiltonian network against a ResNet of equal state width on digits, trained on
5%, 10%, 20% and 100% of the training set, three seeds each (Chang et al. 2018 report the
Hamiltonian network ahead of ResNet with little data).

Both conv networks, 2 stages of 8 layers with pooling and channel doubling between:
- ResNet: euler with h = 1 and conv-BN-ReLU-conv residual branches, 16 channels;
- Hamiltonian: hamiltonian (h = 0.1, Chang et al.) with K^T s(K y + b) functions, y and z of 8
  channels each (16 channels of state in all).
Each run takes about 160 optimizer steps (epochs = ceil(160 / batches per epoch)), Adam, lr 0.01.
The test set is always the whole fixed 360-example split.
"""

from __future__ import annotations

import math

from common import DIGITS_CONV, accuracy_plot, arguments, mean_std, run, write_json

args = arguments(__doc__.splitlines()[0])
fractions = [0.1, 1.0] if args.quick else [0.05, 0.1, 0.2, 1.0]
seeds = [0] if args.quick else [0, 1, 2]
steps = 4 if args.quick else 160
depth = 2 if args.quick else 8
models = {
    "resnet": dict(scheme="euler", family="bn", width=16, params={"h": 1.0}),
    "hamiltonian": dict(scheme="hamiltonian", family="chang", width=8),
}
results = {name: [] for name in models}
for fraction in fractions:
    train_size = round(1437 * fraction)
    epochs = max(1, math.ceil(steps / math.ceil(train_size / 64)))
    for name, spec in models.items():
        spec = dict(spec)
        scheme = spec.pop("scheme")
        accuracies, params = [], None
        for seed in seeds:
            _, m = run(
                scheme,
                "digits",
                epochs=epochs,
                seed=seed,
                train_fraction=fraction,
                depth=depth,
                **DIGITS_CONV,
                **spec,
            )
            accuracies.append(m["test_accuracy"])
            params = m["parameters"]
        mean, std = mean_std(accuracies)
        results[name].append(
            {
                "fraction": fraction,
                "train_examples": m["train_examples"],
                "epochs": epochs,
                "test_accuracy": accuracies,
                "mean": mean,
                "std": std,
                "parameters": params,
            }
        )
        print(
            f"{name:12s} {100 * fraction:5.0f}% of the training set: test accuracy "
            f"{100 * mean:.1f} ± {100 * std:.1f}% ({params} parameters)"
        )
write_json(args.out / "e_little_data.json", results)

accuracy_plot(results, "fraction", "share of the training set (%)", args.out / "e_little_data.png", scale=100)
