"""(e) Little data: a Hamiltonian network against a ResNet on digits, each at the learning rate tuned
for it with the same budget (Chang et al. 2018 report the Hamiltonian network ahead of ResNet with
little data).

Both conv networks, 2 stages of 8 layers with pooling and channel doubling between:
- ResNet: euler with h = 1 and conv-BN-ReLU-conv residual branches, 16 channels;
- Hamiltonian: hamiltonian (h = 0.1, Chang et al.) with K^T s(K y + b) functions, y and z of 8
  channels each (16 channels of state in all).
Per seed, 20% of the 1437 training images (stratified) are held out as a validation set and the
training subset (5%, 10%, 20%, 50% of the rest) is drawn from the others; the 360-image test set is
never looked at until the end. Tuning, the same for both: every learning rate of {1e-3, 3e-3, 1e-2,
3e-2} trained once (seed 0) per size, the best on validation kept. Then three seeds at that rate.
Each run takes about 160 optimizer steps (epochs = ceil(160 / batches per epoch)), Adam, batch 64.
"""

from __future__ import annotations

import math

import torch
from common import DIGITS_CONV, accuracy_plot, arguments, mean_std, model_config, write_json

from odenet.training import TrainSettings, evaluate, load_data, train
from odenet.training.data import Dataset

args = arguments(__doc__.splitlines()[0])
fractions = [0.1, 0.5] if args.quick else [0.05, 0.1, 0.2, 0.5]
seeds = [0] if args.quick else [0, 1, 2]
rates = [3e-3, 1e-2] if args.quick else [1e-3, 3e-3, 1e-2, 3e-2]
steps = 4 if args.quick else 160
depth = 2 if args.quick else 8
models = {
    "resnet": dict(scheme="euler", family="bn", width=16, params={"h": 1.0}),
    "hamiltonian": dict(scheme="hamiltonian", family="chang", width=8),
}
digits = load_data("digits", "conv")


def split(seed: int, fraction: float) -> tuple[Dataset, Dataset]:
    """(training subset, validation set) of the digits training images for ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    train_index, valid_index = [], []
    for label in range(10):
        members = torch.nonzero(digits.y_train == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held = round(0.2 * len(members))
        valid_index.append(members[:held])
        rest = members[held:]
        train_index.append(rest[: max(1, round(fraction * len(rest)))])
    t, v = torch.cat(train_index), torch.cat(valid_index)
    x, y = digits.x_train, digits.y_train
    subset = Dataset("digits", "classification", x[t], y[t], digits.x_test, digits.y_test, 10)
    valid = Dataset("digits", "classification", x[v], y[v], x[v], y[v], 10)
    return subset, valid


def fit(spec: dict, data: Dataset, lr: float, seed: int):
    spec = dict(spec)
    config = model_config(spec.pop("scheme"), data, depth=depth, **DIGITS_CONV, **spec)
    epochs = max(1, math.ceil(steps / math.ceil(len(data.x_train) / 64)))
    model, metrics = train(config, data, TrainSettings(epochs=epochs, lr=lr, seed=seed), stream=None)
    return model, metrics, epochs


results = {name: [] for name in models}
for fraction in fractions:
    for name, spec in models.items():
        subset, valid = split(0, fraction)
        scores = {}
        for lr in rates:
            model, _, _ = fit(spec, subset, lr, seed=0)
            scores[lr] = evaluate(model, valid.x_train, valid.y_train, "classification")["accuracy"]
        best = max(rates, key=lambda lr: scores[lr])
        accuracies = []
        for seed in seeds:
            subset, _ = split(seed, fraction)
            _, m, epochs = fit(spec, subset, best, seed=seed)
            accuracies.append(m["test_accuracy"])
        mean, std = mean_std(accuracies)
        results[name].append(
            {
                "fraction": fraction,
                "train_examples": len(subset.x_train),
                "epochs": epochs,
                "validation_accuracy": {str(lr): scores[lr] for lr in rates},
                "lr": best,
                "test_accuracy": accuracies,
                "mean": mean,
                "std": std,
                "parameters": m["parameters"],
            }
        )
        print(
            f"{name:12s} {100 * fraction:4.0f}% ({len(subset.x_train)} examples): lr {best:g} "
            f"(validation {', '.join(f'{lr:g}: {100 * s:.1f}%' for lr, s in scores.items())}); "
            f"test accuracy {100 * mean:.1f} ± {100 * std:.1f}% ({m['parameters']} parameters)",
            flush=True,
        )
write_json(args.out / "e_little_data.json", results)

accuracy_plot(
    results, "fraction", "share of the training images (%)", args.out / "e_little_data.png", scale=100
)
