"""(o) The tuning sweep: a learning rate, a step and a residual-function family per library scheme and
data set, chosen by successive halving on a validation split; then three seeds at the chosen setting
on the test set (the leaderboard at tuned settings).

- The grid: learning rates 3e-4, 1e-3, 3e-3, 1e-2 (Adam, cosine decay); the value of the scheme's
  step parameter 0.1, 0.3, 1 (schemes without one, momentum and revnet, have no step axis); the
  families bn (conv-BN-ReLU-conv) and mlp (conv-ReLU-conv, no normalization). 24 settings, 8 without a
  step. Every other option is `odenet train`'s default (the data set's layout and width, two stages of
  16 layers, batch 64, plain autograd).
- The implicit schemes (a solve per layer: 10 to 25 times an explicit layer's time) sweep a smaller
  grid, drawn from what the explicit sweep found: it chose bn and lr 1e-3 for every explicit scheme
  on MNIST-1D, so they keep bn and the learning rates 3e-4, 1e-3, 3e-3, with the same three steps
  (9 settings).
- Successive halving, in rungs of about 50 optimizer steps or more: on MNIST-1D every setting trains
  1 epoch, the best third 2 epochs, the best third of those (at least two) 5 epochs, the default
  budget; on digits (a third of the examples) every setting trains 3 epochs and the best third 5.
  Each rung trains afresh with its schedule over its own epochs. Ranked by validation accuracy (then
  loss) on seed 0, so a rung compares settings, not seeds; digits' last rung trains each setting at
  seeds 0, 1, 2 and ranks by the mean (its 287 validation examples: see LAST_RUNG_SEEDS).
- The validation split: 20% of each class of the training set (`odenet train --validation 0.2`, one
  split for every run); the test set is read only by the final runs.
- The final runs: the best setting on the whole training set, seeds 0, 1, 2, scored on the test set.
  A setting whose final run fails (an implicit layer's solve that does not converge from one seed's
  initial weights) is not a default to give: the choice passes to the next setting of the last rung,
  then to those an earlier rung dropped, best first, and the table names the settings passed over.

One process per run (`odenet train ... --json`, OMP_NUM_THREADS=1), `--jobs` of them at a time. The
sweep is resumable: each finished run is a JSON file in docs/experiments/o_tuning/ (its command and
metrics), skipped when it exists; the order is MNIST-1D's explicit schemes, their final runs, the
same for digits, then the implicit schemes (a solve per layer: minutes per epoch). The tables
(docs/experiments/o_tuning.md, spliced into docs/experiments.md) and the plot are rebuilt from
whatever files exist; `--tables-only` rebuilds them without training.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
from dataclasses import dataclass
from pathlib import Path

from common import splice, summary, train_command

from odenet.files import write_text
from odenet.library import library_names, load
from odenet.report.plotting import new_figure, save_figure

DOCS = Path(__file__).resolve().parent.parent / "docs"
DATA = ("mnist1d", "digits")
LRS = (3e-4, 1e-3, 3e-3, 1e-2)
STEPS = (0.1, 0.3, 1.0)
FAMILIES = ("bn", "mlp")
IMPLICIT = dict(lrs=(3e-4, 1e-3, 3e-3), steps=STEPS, families=("bn",))  # see the docstring
# epochs of each rung, per data set: MNIST-1D's first rung is 50 optimizer steps (3200 examples,
# batch 64); digits' is 3 epochs, 54 steps (1150 examples). Its first sweep began with 1 epoch, 18
# steps, which ranked settings by noise (o_tuning/digits-first-attempt/, docs/experiments.md (o)).
RUNGS = {"mnist1d": (1, 2, 5), "digits": (3, 5)}
# the seeds of each data set's last rung, ranked by their mean: digits' validation split is 287
# examples, where seed 0 alone left the best settings tied or 1 or 2 errors apart (the second sweep's first
# results, docs/experiments.md (o)); MNIST-1D's 800 did not
LAST_RUNG_SEEDS = {"mnist1d": (0,), "digits": (0, 1, 2)}
VALIDATION = 0.2
SEEDS = (0, 1, 2)
BEGIN, END = "<!-- tuning: begin (experiments/o_tuning.py) -->", "<!-- tuning: end -->"
QUICK = dict(
    lrs=(1e-2, 1e-3), steps=(0.1, 1.0), families=("bn",), rungs=(1, 1), seeds=(0,), last_rung_seeds=(0, 1)
)


@dataclass(frozen=True)
class Setting:
    lr: float
    step: float | None
    family: str

    def words(self) -> list[str]:
        step = [] if self.step is None else ["--step", f"{self.step:g}"]
        return ["--lr", f"{self.lr:g}", *step, "--family", self.family]

    def label(self) -> str:
        step = "no step" if self.step is None else f"h {self.step:g}"
        return f"lr {self.lr:g}, {step}, {self.family}"

    def key(self) -> str:
        return f"lr{self.lr:g}-h{'none' if self.step is None else f'{self.step:g}'}-{self.family}"


@dataclass(frozen=True)
class Run:
    data: str
    scheme: str
    setting: Setting
    rung: int | None  # None: a final run on the test set
    seed: int = 0

    def path(self, folder: Path) -> Path:
        if self.rung is None:  # named by its setting: a changed choice trains its own
            name = f"test-{self.setting.key()}-seed{self.seed}"
        else:  # seed 0's name has no seed: the rungs had one seed when the sweep began
            name = f"rung{self.rung}-{self.setting.key()}" + (f"-seed{self.seed}" if self.seed else "")
        return folder / self.data / self.scheme / f"{name}.json"

    def words(self, grid: dict) -> list[str]:
        words = ["train", self.scheme, "--data", self.data, "--memory", "autograd", "--seed", str(self.seed)]
        words += self.setting.words()
        if self.rung is not None:
            words += [
                "--validation",
                f"{VALIDATION:g}",
                "--epochs",
                str(rungs_of(grid, self.data)[self.rung]),
            ]
        else:
            words += ["--epochs", str(rungs_of(grid, self.data)[-1])]
        return words + grid["extra"]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two schemes, a tiny grid and sizes")
    parser.add_argument("--out", type=Path, default=DOCS / "experiments", help="where results go")
    parser.add_argument("--data", nargs="+", choices=DATA, default=list(DATA))
    parser.add_argument("--schemes", nargs="+", help="library schemes (default: every one)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each one thread)")
    parser.add_argument("--tables-only", action="store_true", help="rebuild the tables from the files")
    parser.add_argument("--explicit-only", action="store_true", help="leave the implicit schemes out")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="train again the runs recorded as failed (else they rank last)",
    )
    parser.add_argument(
        "--print-defaults",
        action="store_true",
        help="print the TUNED mapping for odenet/training/defaults.py",
    )
    return parser.parse_args()


def grid_of(quick: bool) -> dict:
    if quick:
        return {**QUICK, "quick": True, "extra": ["--depth", "2", "--train-fraction", "0.1"]}
    return dict(
        lrs=LRS,
        steps=STEPS,
        families=FAMILIES,
        rungs=RUNGS,
        seeds=SEEDS,
        last_rung_seeds=LAST_RUNG_SEEDS,
        extra=[],
    )


def rungs_of(grid: dict, data: str) -> tuple[int, ...]:
    """The epochs of each rung on ``data``."""
    rungs = grid["rungs"]
    return rungs[data] if isinstance(rungs, dict) else rungs


def last_rung_seeds(grid: dict, data: str) -> tuple[int, ...]:
    """The seeds the last rung on ``data`` trains each setting with, ranked by their mean."""
    seeds = grid["last_rung_seeds"]
    return seeds[data] if isinstance(seeds, dict) else seeds


def rung_seeds(grid: dict, data: str, rung: int) -> tuple[int, ...]:
    """The seeds a rung trains each setting with: seed 0, or the data set's last-rung seeds."""
    return last_rung_seeds(grid, data) if rung == len(rungs_of(grid, data)) - 1 else (0,)


def settings(scheme: str, grid: dict) -> list[Setting]:
    loaded = load(scheme)
    axes = grid if loaded.is_explicit or grid.get("quick") else {**grid, **IMPLICIT}
    steps = axes["steps"] if loaded.step_param is not None else (None,)
    return [Setting(lr, step, f) for f in axes["families"] for step in steps for lr in axes["lrs"]]


def read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def score(result: dict) -> tuple:
    """Higher is better: validation (or test) accuracy, then minus the loss; a failed run last."""
    if "failed" in result:
        return (-1.0, -math.inf)
    return (result["test_accuracy"], -result["test_loss"])


def merge(results: list[dict]) -> dict:
    """One setting's runs of a rung (one per seed) as one result: the mean accuracy and loss, the
    summed time, how many runs; failed if any seed failed (a default that fails one seed in three
    is not one to give), so it ranks last."""
    runs, seconds = len(results), sum(r["wall_seconds"] for r in results)
    failed = [r["failed"] for r in results if "failed" in r]
    if failed:
        return {"failed": failed[0], "runs": runs, "wall_seconds": seconds}
    mean = {k: sum(r[k] for r in results) / runs for k in ("test_accuracy", "test_loss")}
    return {**mean, "runs": runs, "wall_seconds": seconds}


def keep(count: int, rung: int, rungs: int) -> int:
    """How many settings of a rung of ``count`` go on: a third (at least two) before the last rung."""
    return 1 if rung == rungs - 1 else min(count, max(2, math.ceil(count / 3)))


def halving(folder: Path, data: str, scheme: str, grid: dict) -> tuple[list[Run], dict]:
    """The runs ``(data, scheme)`` needs next (those of its first unfinished rung, or its final runs),
    and what is known: {"rungs": [[(setting, result), ...], ...], "best": setting or None,
    "passed_over": [(setting, why), ...]}. The choice is the best setting of the last rung whose
    final runs did not fail: a setting that fails at one test seed (an implicit layer's solve that
    does not converge from that seed's initial weights) is not a default to give, so the choice
    passes to the next of the last rung, then to those an earlier rung dropped, best first."""
    alive = settings(scheme, grid)
    epochs = rungs_of(grid, data)
    known: dict = {
        "rungs": [],
        "best": None,
        "rung": len(epochs),
        "passed_over": [],
        "validation": None,  # the choice's, with the epochs and seeds of the rung that measured it
        "epochs": None,
        "seeds": None,
    }
    reached: list[list[tuple[Setting, dict]]] = []  # per rung, the settings it ranked, best first
    for rung in range(len(epochs)):
        runs = {s: [Run(data, scheme, s, rung, seed) for seed in rung_seeds(grid, data, rung)] for s in alive}
        found = {s: [read(r.path(folder)) for r in rs] for s, rs in runs.items()}
        known["rungs"].append([(s, merge([r for r in rs if r])) for s, rs in found.items() if any(rs)])
        missing = [r for s, rs in runs.items() for r, res in zip(rs, found[s], strict=True) if res is None]
        if missing:
            return missing, {**known, "rung": rung}
        results = [merge(found[s]) for s in alive]
        ranked = sorted(zip(alive, results, strict=True), key=lambda pair: score(pair[1]), reverse=True)
        reached.append(ranked)
        alive = [s for s, _ in ranked[: keep(len(alive), rung, len(epochs))]]
    # a setting that failed in any rung is never a choice (not even on an earlier rung's score)
    seen = {setting for ranked in reached for setting, result in ranked if "failed" in result}
    for rung in reversed(range(len(reached))):  # the last rung's settings, then those each earlier dropped
        for setting, result in reached[rung]:
            if setting in seen:
                continue
            seen.add(setting)
            finals = [Run(data, scheme, setting, None, seed) for seed in grid["seeds"]]
            found = [read(r.path(folder)) for r in finals]
            failed = [res["failed"] for res in found if res and "failed" in res]
            if failed:
                known["passed_over"].append((setting, failed[0]))
                continue
            seeds = len(rung_seeds(grid, data, rung))
            known.update(best=setting, validation=result["test_accuracy"], epochs=epochs[rung], seeds=seeds)
            return [r for r, res in zip(finals, found, strict=True) if res is None], known
    return [], known  # every setting failed: nothing to choose


def order(schemes: list[str], data_sets: list[str]) -> list[tuple[str, str]]:
    """(data, scheme) in the order they are swept: each data set's explicit schemes, then the
    implicit ones of every data set."""
    explicit = [(d, s) for d in data_sets for s in schemes if load(s).is_explicit]
    return explicit + [(d, s) for d in data_sets for s in schemes if not load(s).is_explicit]


def sweep(folder: Path, pairs: list[tuple[str, str]], grid: dict, jobs: int) -> None:
    """Train every missing run, ``jobs`` at a time, the earliest pair's first; a run's result is
    written the moment it ends, so an interrupted sweep loses only the runs in flight."""
    running: dict = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        while True:
            for data, scheme in pairs:
                for run in halving(folder, data, scheme, grid)[0]:
                    if len(running) < jobs and run not in running.values():
                        running[pool.submit(train_command, run.words(grid))] = run
            if not running:
                return
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                run = running.pop(future)
                result = {"command": "odenet " + " ".join(run.words(grid)), **future.result()}
                run.path(folder).parent.mkdir(parents=True, exist_ok=True)
                write_text(run.path(folder), json.dumps(result, indent=2) + "\n")
                outcome = result.get("failed") or f"{100 * result['test_accuracy']:.1f}%"
                stage = (
                    f"rung {run.rung} seed {run.seed}" if run.rung is not None else f"test seed {run.seed}"
                )
                print(
                    f"{run.data} {run.scheme} {stage} {run.setting.label()}: {outcome} "
                    f"({result['wall_seconds']:.0f} s)",
                    flush=True,
                )


def defaults_runs(out: Path, data: str, scheme: str) -> list[dict]:
    """The leaderboard's runs of ``scheme`` at the old defaults (experiment h, autograd)."""
    paths = [out / "h_leaderboard" / f"{data}-{scheme}-autograd-{seed}.json" for seed in SEEDS]
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def cell(s: dict | None) -> str:
    if s is None:
        return "not run yet"
    failed = f" ({s['failed']} failed)" if s["failed"] else ""
    return f"{s['mean']:.1f} ± {s['sd']:.1f}{failed}"


def collect(out: Path, pairs: list[tuple[str, str]], grid: dict) -> dict:
    """Per data set, per scheme: the sweep's state, the final runs' summary, the old defaults'."""
    folder = out / "o_tuning"
    table: dict = {}
    for data, scheme in pairs:
        _, known = halving(folder, data, scheme, grid)
        best = known["best"]
        finals = [read(Run(data, scheme, best, None, s).path(folder)) for s in grid["seeds"]] if best else []
        # every run trained, those of settings a later rung dropped and of an earlier choice included
        runs = [json.loads(p.read_text()) for p in sorted((folder / data / scheme).glob("*.json"))]
        table.setdefault(data, {})[scheme] = {
            "best": None if best is None else best.__dict__,
            "rung": known["rung"],  # the first unfinished rung; len(rungs) when the sweep is done
            "validation_accuracy": known["validation"],
            "validation_epochs": known["epochs"],
            "passed_over": [[o.__dict__, why] for o, why in known["passed_over"]],
            "settings": len(settings(scheme, grid)),
            "validation_seeds": known["seeds"],
            "tuned": summary([f for f in finals if f]),
            "defaults": summary(defaults_runs(out, data, scheme)),
            "runs": len(runs),
            "wall_seconds": sum(r["wall_seconds"] for r in runs),
        }
    return table


def markdown(table: dict, grid: dict) -> str:
    parts = []
    for data, rows in table.items():
        ranked = sorted(rows.items(), key=lambda kv: -((kv[1]["tuned"] or {}).get("mean", -1)))
        runs = sum(r["runs"] for r in rows.values())
        hours = sum(r["wall_seconds"] for r in rows.values()) / 3600
        last = last_rung_seeds(grid, data)
        validation = "" if len(last) == 1 else f"; validation: the mean of seeds {', '.join(map(str, last))}"
        lines = [
            f"**{data}**: {runs} runs, {hours:.1f} h of one core in all (test accuracy over seeds "
            f"{', '.join(map(str, grid['seeds']))}{validation}; the old defaults are experiment (h)'s "
            "autograd rows: lr 0.01, h = 0.1, bn, lr 0.001 for revnet)",
            "",
            "| rank | scheme | tuned setting | validation % | tuned: test % (mean ± sd) "
            "| old defaults: test % | change | train time s | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rank, (scheme, r) in enumerate(ranked, 1):
            tuned, old = r["tuned"], r["defaults"]
            if r["best"] is None:
                rungs = len(rungs_of(grid, data))
                setting = f"sweeping (rung {r['rung'] + 1} of {rungs})" if r["runs"] else "not swept yet"
                if r["rung"] == rungs:
                    setting = "every setting failed"
            else:
                setting = Setting(**r["best"]).label()
            if r["passed_over"]:
                failed = "; ".join(Setting(**o).label() for o, _ in r["passed_over"])
                setting += f" (after {failed}: each failed a final run)"
            validation = "" if r["validation_accuracy"] is None else f"{100 * r['validation_accuracy']:.1f}"
            if r["validation_epochs"] not in (None, rungs_of(grid, data)[-1]):  # an earlier rung's
                seeds = r["validation_seeds"]
                validation += f" ({r['validation_epochs']} epochs, {seeds} seed{'s' * (seeds > 1)})"
            change = f"{tuned['mean'] - old['mean']:+.1f}" if tuned and old else ""
            tail = f"{tuned['seconds']:.0f} | {tuned['peak_rss_mib']:.0f}" if tuned else " | "
            place = rank if tuned else ""
            lines.append(
                f"| {place} | {scheme} | {setting} | {validation} | {cell(tuned)} | {cell(old)} | {change} "
                f"| {tail} |"
            )
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def plot(table: dict, path: Path) -> None:
    """Each scheme's test accuracy at the old defaults and at its tuned setting (mean, one standard
    deviation over seeds), one panel per data set, ordered by the tuned mean."""
    rows_per_panel = max(len(rows) for rows in table.values())
    fig, axes = new_figure(ncols=len(table), figsize=(6 * len(table), 1.2 + 0.3 * rows_per_panel), dpi=100)
    axes = axes if len(table) > 1 else [axes]
    for ax, (data, rows) in zip(axes, table.items(), strict=True):
        ranked = sorted(rows, key=lambda s: (rows[s]["tuned"] or {}).get("mean", -1))
        for y, scheme in enumerate(ranked):
            for key, marker, colour in (("defaults", "o", "C7"), ("tuned", "s", "C0")):
                s = rows[scheme][key]
                if s is not None:
                    ax.errorbar(s["mean"], y, xerr=s["sd"], marker=marker, color=colour, capsize=2, ms=4)
        ax.set_yticks(range(len(ranked)), ranked, fontsize=8)
        ax.plot([], [], "o", color="C7", label="old defaults")
        ax.plot([], [], "s", color="C0", label="tuned")
        ax.legend(fontsize=7, loc="lower left")
        ax.set_xlabel("test accuracy % (mean ± sd over seeds)")
        ax.set_title(data, fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    save_figure(fig, path)


def defaults_literal(table: dict, grid: dict) -> str:
    """The ``TUNED`` mapping of odenet/training/defaults.py for the finished sweeps, to paste there:
    a scheme whose chosen setting has not finished its final runs is a comment (a choice whose final
    run fails passes to the next setting, so it is not a default yet)."""
    lines = []
    for data, rows in table.items():
        lines.append(f'        "{data}": MappingProxyType(\n            {{')
        for scheme, r in sorted(rows.items()):
            if r["best"] is None and r["rung"] == len(rungs_of(grid, data)):
                lines.append(f"                # {scheme}: every setting failed")
            elif r["best"] is not None and (r["tuned"] or {}).get("seeds", 0) < len(grid["seeds"]):
                lines.append(f"                # {scheme}: its final runs are under way")
            elif r["best"] is not None:
                b, seeds = r["best"], r["validation_seeds"]
                lines.append(
                    f'                "{scheme}": Tuned("{b["family"]}", {b["lr"]!r}, {b["step"]!r}, '
                    f"{100 * r['validation_accuracy']:.1f}, {r['settings']}"
                    + (f", seeds={seeds}" if seeds > 1 else "")
                    + (
                        f", epochs={r['validation_epochs']}"
                        if r["validation_epochs"] != rungs_of(grid, data)[-1]
                        else ""
                    )
                    + (
                        f", passed_over={tuple(Setting(**o).label() for o, _ in r['passed_over'])!r}"
                        if r["passed_over"]
                        else ""
                    )
                    + "),"
                )
        lines.append("            }\n        ),")
    return "\n".join(lines)


def main() -> None:
    args = arguments()
    grid = grid_of(args.quick)
    schemes = args.schemes or (["euler", "momentum"] if args.quick else library_names())
    if args.explicit_only:
        schemes = [s for s in schemes if load(s).is_explicit]
    data_sets = ["digits"] if args.quick and args.data == list(DATA) else args.data
    pairs = order(schemes, data_sets)
    if args.retry_failed and not args.tables_only:
        for path in (args.out / "o_tuning").glob("*/*/*.json"):
            if "failed" in json.loads(path.read_text()):
                print(f"retrying {path.relative_to(args.out)}: {json.loads(path.read_text())['failed']}")
                path.unlink()
    if not args.tables_only:
        sweep(args.out / "o_tuning", pairs, grid, args.jobs)
    table = collect(args.out, pairs, grid)
    text = markdown(table, grid)
    write_text(args.out / "o_tuning.json", json.dumps(table, indent=2) + "\n")
    write_text(args.out / "o_tuning.md", text)
    plot(table, args.out / "o_tuning.png")
    if args.out.resolve() == (DOCS / "experiments").resolve():
        splice(DOCS / "experiments.md", text, BEGIN, END)
    print(defaults_literal(table, grid) if args.print_defaults else text)


if __name__ == "__main__":
    main()
