"""(g) Implicit layers at a large step: backward Euler and the trapezoidal rule against Euler on digits.

An explicit Euler layer is stable only where its step keeps h*lambda within [-2, 0] (on the real
axis); backward Euler is A-stable (the whole left half-plane) and the trapezoidal rule too. The
test: the same network (digits as 64 features, a stem to width 32, one stage of 6 layers of
``W2 tanh(W1 y + b1) + b2``, Adam at 1e-2, 5 epochs, 3 seeds) with the step h in {0.1, 1, 3}:
test accuracy, seconds per epoch, and each implicit layer's solver work (Newton-GMRES: the
step's Newton corrections and Jacobian-vector products, and the adjoint system's GMRES products in
the backward pass, per layer, averaged over the last evaluation and the last training batch).
Newton, because at h >= 1 the trained functions' h*Lip(f) passes 1 and the fixed-point iteration
(and Anderson's, slowly) stops converging: measured at h = 1, depth 2, one epoch. A solve that
fails to converge stops that run; it is reported, not left out.
"""

from __future__ import annotations

import statistics

from common import arguments, run, write_json

from odenet.errors import ConvergenceError
from odenet.report.plotting import new_figure, save_figure

args = arguments(__doc__.splitlines()[0])
epochs = 1 if args.quick else 5
depth = 2 if args.quick else 6
seeds = [0] if args.quick else [0, 1, 2]
steps = [1.0] if args.quick else [0.1, 1.0, 3.0]
schemes = ["euler", "backward_euler", "trapezoidal"]
results: dict[str, list[dict]] = {}
for scheme in schemes:
    for h in steps:
        rows = []
        for seed in seeds:
            try:
                model, m = run(
                    scheme,
                    "digits",
                    epochs=epochs,
                    seed=seed,
                    family="mlp",
                    width=32,
                    depth=depth,
                    params={"h": h},
                    solver="newton",
                )
            except ConvergenceError as exc:
                rows.append({"seed": seed, "error": str(exc).split(". ")[0]})
                print(f"{scheme:15s} h={h:<4g} seed {seed}: {rows[-1]['error']}")
                continue
            block = model.stages[0]
            row = {
                "seed": seed,
                "test_accuracy": m["test_accuracy"],
                "seconds_per_epoch": m["seconds"] / epochs,
            }
            if block.implicit:
                row["forward_iterations"] = statistics.fmean(s.iterations for s in block.solves)
                row["forward_evaluations"] = statistics.fmean(s.evaluations for s in block.solves)
                row["adjoint_iterations"] = statistics.fmean(s.iterations for s in block.backward_solves)
            rows.append(row)
            work = ""
            if block.implicit:
                work = (
                    f", {row['forward_iterations']:.1f} corrections ({row['forward_evaluations']:.0f} "
                    f"evaluations), {row['adjoint_iterations']:.1f} adjoint products"
                )
            print(
                f"{scheme:15s} h={h:<4g} seed {seed}: test accuracy {100 * m['test_accuracy']:.1f}%, "
                f"{row['seconds_per_epoch']:.2f} s/epoch{work}"
            )
        results[f"{scheme} h={h:g}"] = rows
results["setup"] = {"epochs": epochs, "depth": depth, "seeds": seeds, "steps": steps, "width": 32}  # type: ignore[assignment]
write_json(args.out / "g_implicit.json", results)
fig, ax = new_figure(figsize=(5.5, 4), dpi=100)
for scheme in schemes:
    xs, means, sds = [], [], []
    for h in steps:
        done = [100 * r["test_accuracy"] for r in results[f"{scheme} h={h:g}"] if "error" not in r]
        if done:
            xs.append(h)
            means.append(statistics.fmean(done))
            sds.append(statistics.stdev(done) if len(done) > 1 else 0.0)
    ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=scheme)
ax.set_xscale("log")
ax.set_xlabel("step h")
ax.set_ylabel("test accuracy (%)")
ax.set_title("digits, 6 layers: explicit and implicit steps")
ax.legend()
save_figure(fig, args.out / "g_implicit.png")
columns = ["network", "h", "test accuracy % (mean +- sd)", "s/epoch", "Newton corrections", "G evaluations"]
print("| " + " | ".join([*columns, "adjoint products"]) + " |")
print("|---|---|---|---|---|---|---|")
for name, rows in results.items():
    if name == "setup":
        continue
    scheme, h = name.split(" h=")
    done = [r for r in rows if "error" not in r]
    failed = len(rows) - len(done)
    if not done:
        print(f"| {scheme} | {h} | did not converge ({failed} of {len(rows)} seeds) | | | | |")
        continue
    acc = [100 * r["test_accuracy"] for r in done]
    sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
    note = f" ({failed} of {len(rows)} seeds did not converge)" if failed else ""
    secs = statistics.median(r["seconds_per_epoch"] for r in done)  # robust to a busy machine
    work = ["", "", ""]
    if "forward_iterations" in done[0]:
        keys = ("forward_iterations", "forward_evaluations", "adjoint_iterations")
        work = [f"{statistics.fmean(r[k] for r in done):.1f}" for k in keys]
    accuracy = f"{statistics.fmean(acc):.1f} +- {sd:.1f}{note}"
    print(f"| {scheme} | {h} | {accuracy} | {secs:.2f} | {' | '.join(work)} |")
