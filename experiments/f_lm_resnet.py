"""(f) LM-ResNet against ResNet on MNIST-1D: test accuracy against parameter count (Lu et al. 2018 report
LM-ResNet matching ResNet with about half the parameters).

MNIST-1D rather than digits, where both saturate near 99%: capacity matters there. Both conv1d
networks with conv-BN-ReLU-conv residual branches (length-3 convolutions), 16 channels, 2 stages,
h = 1: ResNet is euler, LM-ResNet is lm_resnet (u[n+1] = (1-k) u[n] + k u[n-1] + f(u[n]), k
learnable per layer in (-1, 1), starting at 0.5). Depth per stage 1, 2, 4, 8; three seeds; 5
epochs, Adam with learning rate 0.003.
"""

from __future__ import annotations

from common import accuracy_plot, arguments, mean_std, run, write_json

args = arguments(__doc__.splitlines()[0])
depths = [1, 2] if args.quick else [1, 2, 4, 8]
seeds = [0] if args.quick else [0, 1, 2]
epochs = 1 if args.quick else 5
results = {"resnet": [], "lm_resnet": []}
for depth in depths:
    for name, scheme in (("resnet", "euler"), ("lm_resnet", "lm_resnet")):
        accuracies = []
        for seed in seeds:
            _, m = run(
                scheme,
                "mnist1d",
                epochs=epochs,
                seed=seed,
                family="bn",
                width=16,
                depth=depth,
                layout="conv1d",
                stages=2,
                params={"h": 1.0},
                lr=3e-3,
            )
            accuracies.append(m["test_accuracy"])
        mean, std = mean_std(accuracies)
        results[name].append(
            {
                "depth": depth,
                "parameters": m["parameters"],
                "test_accuracy": accuracies,
                "mean": mean,
                "std": std,
            }
        )
        print(
            f"{name:10s} depth {depth} per stage ({m['parameters']} parameters): test accuracy "
            f"{100 * mean:.1f} ± {100 * std:.1f}%"
        )
write_json(args.out / "f_lm_resnet.json", results)

accuracy_plot(results, "parameters", "parameters", args.out / "f_lm_resnet.png")
