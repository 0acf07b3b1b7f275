"""(h) The leaderboard: every library scheme, in plain autograd and in its memory-saving mode, on
digits and MNIST-1D, with the defaults `odenet train` gave it before the tuning sweep (o), over three
seeds: lr 0.01 (revnet 0.001), the scheme's own step h = 0.1, bn functions, given on the command
line so that the table stays what it measured; experiment (o) trains each at its tuned setting.

Each run is one `python -m odenet train SCHEME --data DATA --memory MODE --seed S --json` in its
own process (so that its peak resident memory is its own), with OMP_NUM_THREADS=--threads (1 by
default: the same compute for every row, and the other core free). Every flag not named is the
command's default: the data set's layout and width (digits: conv, 16 channels; MNIST-1D: conv1d,
32 channels), two stages of 16 layers, 5 epochs of Adam with cosine decay, batch 64. An implicit scheme's
memory-saving mode is autograd (each layer keeps one evaluation), so it has one row.

The script is resumable: each finished run is a file in docs/experiments/h_leaderboard/, skipped
when it exists, and the tables (docs/experiments/h_leaderboard.md, spliced into
docs/experiments.md) are rebuilt from whatever files exist. A run that fails (diverges, a solve that
does not converge) is recorded and reported as such: no scheme is left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import splice, summary, train_command

from odenet.files import write_text
from odenet.library import library_names, load
from odenet.report.plotting import new_figure, save_figure
from odenet.training.defaults import MEMORY_SAVING

DOCS = Path(__file__).resolve().parent.parent / "docs"
DATA = ("digits", "mnist1d")
BEGIN, END = "<!-- leaderboard: begin (experiments/h_leaderboard.py) -->", "<!-- leaderboard: end -->"


# Is it the scheme or its settings? revnet trains at lr 1e-3 with no step (each coupling adds its
# function's whole output); every other explicit scheme at lr 1e-2, with h = 0.1 where it has a
# step. These runs give Euler and Hamiltonian revnet's settings, and split Euler's change into its
# learning rate and its step: (data, scheme, lr, step).
CONTROLS = (
    ("mnist1d", "euler", 0.001, 1.0),
    ("mnist1d", "euler", 0.001, 0.1),
    ("mnist1d", "euler", 0.01, 1.0),
    ("mnist1d", "hamiltonian", 0.001, 1.0),
    ("digits", "euler", 0.001, 1.0),
)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two schemes, one seed, tiny sizes")
    parser.add_argument("--out", type=Path, default=DOCS / "experiments", help="where results go")
    parser.add_argument("--data", nargs="+", choices=DATA, default=list(DATA))
    parser.add_argument("--schemes", nargs="+", help="library schemes (default: every one)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--tables-only", action="store_true", help="rebuild the tables from the files")
    return parser.parse_args()


def modes(scheme: str) -> list[str]:
    saving = MEMORY_SAVING[scheme]
    return ["autograd"] if saving == "autograd" else ["autograd", saving]


def old_defaults(scheme: str) -> tuple[float, float | None]:
    """The learning rate and step every scheme trained with before the sweep: lr 0.01 (revnet's
    0.001) and the scheme's own step, 0.1 (none for momentum and revnet); bn functions."""
    loaded = load(scheme)
    return (1e-3 if scheme == "revnet" else 1e-2), (None if loaded.step_param is None else 0.1)


def command(
    scheme: str,
    data: str,
    mode: str,
    seed: int,
    quick: bool,
    lr: float | None = None,
    step: float | None = None,
) -> list[str]:
    """The run's command: the old defaults, or the ``lr`` and ``step`` of a control."""
    words = ["odenet", "train", scheme, "--data", data, "--memory", mode, "--seed", str(seed)]
    old_lr, old_step = old_defaults(scheme)
    lr, step = (old_lr if lr is None else lr), (old_step if step is None else step)
    words += ["--lr", f"{lr:g}", "--family", "bn"] + ([] if step is None else ["--step", f"{step:g}"])
    if quick:
        words += ["--depth", "2", "--epochs", "1", "--train-fraction", "0.1"]
    return words


def collect(folder: Path, schemes: list[str], data_sets: list[str], seeds: list[int]) -> dict:
    """{data: {(scheme, mode): [run, ...]}} from the result files."""
    table: dict = {data: {} for data in data_sets}
    for data in data_sets:
        for scheme in schemes:
            for mode in modes(scheme):
                runs = []
                for seed in seeds:
                    path = folder / f"{data}-{scheme}-{mode}-{seed}.json"
                    if path.is_file():
                        runs.append(json.loads(path.read_text()))
                table[data][scheme, mode] = runs
    return table


def control_path(folder: Path, data: str, scheme: str, lr: float, step: float, seed: int) -> Path:
    return folder / f"control-{data}-{scheme}-lr{lr:g}-step{step:g}-{seed}.json"


def row_cells(s: dict | None, runs: list[dict]) -> str:
    """The accuracy and seed cells of a row: mean and sd, or why every seed failed."""
    if not runs:
        return "not run yet | 0"
    if s is None:
        return f"failed on every seed: {runs[0]['failed'].replace('|', '/')[:160]} | 0"
    failed = f" ({s['failed']} failed)" if s["failed"] else ""
    return f"{s['mean']:.1f} ± {s['sd']:.1f} | {s['seeds']}{failed}"


def controls_markdown(folder: Path, schemes: list[str], data_sets: list[str], seeds: list[int]) -> str:
    """Each control beside the same scheme at its defaults (autograd), where it was run."""
    lines = []
    for data, scheme in dict.fromkeys((d, name) for d, name, _, _ in CONTROLS):
        if data not in data_sets or scheme not in schemes:
            continue
        plain = [folder / f"{data}-{scheme}-autograd-{seed}.json" for seed in seeds]
        defaults = [json.loads(path.read_text()) for path in plain if path.is_file()]
        rows = [(recorded_settings(defaults, scheme) + " (its defaults)", defaults)]
        for _, _, lr, step in (c for c in CONTROLS if c[:2] == (data, scheme)):
            found = [control_path(folder, data, scheme, lr, step, seed) for seed in seeds]
            runs = [json.loads(path.read_text()) for path in found if path.is_file()]
            if runs:
                rows.append((settings(scheme, lr, step), runs))
        if len(rows) > 1:
            lines += [f"| {data} | {scheme} | {label} | {row_cells(summary(r), r)} |" for label, r in rows]
    if not lines:
        return ""
    head = [
        "**Controls** (autograd; the scheme or its settings? Euler and Hamiltonian at revnet's learning "
        "rate and a step of 1, and Euler with one of the two changed)",
        "",
        "| data | scheme | lr, step | test accuracy % (mean ± sd) | seeds |",
        "|---|---|---|---|---|",
    ]
    return "\n".join(head + lines) + "\n"


def markdown(table: dict, seeds: list[int]) -> str:
    parts = []
    for data, rows in table.items():
        ranked = sorted(rows.items(), key=lambda kv: -(summary(kv[1]) or {"mean": -1})["mean"])
        lines = [
            f"**{data}** (test accuracy over seeds {', '.join(map(str, seeds))}; time and peak "
            "resident memory of the training process, mean over seeds)",
            "",
            "| rank | scheme | memory | lr, step | test accuracy % (mean ± sd) | seeds | parameters | "
            "train time s | peak RSS MiB |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for rank, ((scheme, mode), runs) in enumerate(ranked, 1):
            s = summary(runs)
            place = rank if s is not None else ""
            tail = (
                f" | {s['parameters']:,} | {s['seconds']:.0f} | {s['peak_rss_mib']:.0f} |"
                if s
                else " | | | |"
            )
            cells = f"{recorded_settings(runs, scheme)} | {row_cells(s, runs)}{tail}"
            lines.append(f"| {place} | {scheme} | {mode} | {cells}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def recorded_settings(runs: list[dict], scheme: str) -> str:
    """The learning rate and step the runs recorded (each run stores its scheme's defaults when it
    starts); the current defaults for rows not run yet. Runs that disagree are flagged."""
    found = {r.get("settings") for r in runs} - {None}
    if len(found) > 1:
        return "mixed: " + "; ".join(sorted(found))
    return found.pop() if found else settings(scheme)


def settings(scheme: str, lr: float | None = None, step: float | None = None) -> str:
    """The learning rate and step a scheme trains with, as the table shows them: the old defaults,
    or the ``lr`` and ``step`` given (a control)."""
    loaded = load(scheme)
    old_lr, old_step = old_defaults(scheme)
    lr = old_lr if lr is None else lr
    step = old_step if step is None else step
    return f"{lr:g}, " + ("no step" if step is None else f"{loaded.step} = {step:g}")


def plot(table: dict, path: Path) -> None:
    """Accuracy (mean and standard deviation over seeds) of every row, ranked, one panel per data
    set; the colour is the parameter count. The counts take two values per data set (one function
    per layer, or two), so a parameter axis would stack every scheme on two vertical lines."""
    rows_per_panel = max(len(rows) for rows in table.values())
    fig, axes = new_figure(ncols=len(table), figsize=(6.5 * len(table), 1.2 + 0.22 * rows_per_panel), dpi=100)
    axes = axes if len(table) > 1 else [axes]
    for ax, (data, rows) in zip(axes, table.items(), strict=True):
        done = [(key, s) for key, runs in rows.items() if (s := summary(runs)) is not None]
        done.sort(key=lambda item: item[1]["mean"])
        counts = sorted({s["parameters"] for _, s in done})
        colours = {count: f"C{i}" for i, count in enumerate(counts)}
        for y, ((_, mode), s) in enumerate(done):
            ax.errorbar(
                s["mean"], y, xerr=s["sd"], marker="o" if mode == "autograd" else "s",
                color=colours[s["parameters"]], capsize=2, ls="none", ms=4,
            )  # fmt: skip
        ax.set_yticks(range(len(done)), [f"{scheme} ({mode})" for (scheme, mode), _ in done], fontsize=7)
        for count, colour in colours.items():
            ax.plot([], [], "o", color=colour, label=f"{count:,} parameters")
        ax.legend(fontsize=7, loc="upper left")
        ax.set_xlabel("test accuracy % (mean ± sd over seeds)")
        ax.set_title(f"{data} (circles: autograd; squares: memory-saving mode)", fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    save_figure(fig, path)


def run_once(path: Path, words: list[str], threads: int, recorded: str) -> None:
    """Train ``words`` in its own process unless ``path`` holds its result already; ``recorded``:
    the learning rate and step it trains with, stored beside the result."""
    if path.is_file():
        return
    result = {"command": " ".join(words), "settings": recorded, **train_command(words[1:], threads)}
    result["threads"] = threads
    write_text(path, json.dumps(result, indent=2) + "\n")
    outcome = result.get("failed") or f"{100 * result['test_accuracy']:.1f}%"
    print(f"{path.stem}: {outcome} ({result['wall_seconds']:.0f} s)", flush=True)


def train_schemes(schemes: list[str], folder: Path, args: argparse.Namespace, seeds: list[int]) -> None:
    """Every run of ``schemes`` (each data set, mode and seed) not yet in ``folder``."""
    for scheme in schemes:
        for data in args.data:
            for mode in modes(scheme):
                for seed in seeds:
                    words = command(scheme, data, mode, seed, args.quick)
                    path = folder / f"{data}-{scheme}-{mode}-{seed}.json"
                    run_once(path, words, args.threads, settings(scheme))


def main() -> None:
    args = arguments()
    schemes = args.schemes or (["euler", "leapfrog"] if args.quick else library_names())
    seeds = [0] if args.quick else args.seeds
    folder = args.out / "h_leaderboard"
    folder.mkdir(parents=True, exist_ok=True)
    explicit = sorted(name for name in schemes if load(name).is_explicit)
    implicit = sorted(name for name in schemes if not load(name).is_explicit)
    if not args.tables_only:
        # the explicit schemes first (minutes each), then the controls, the implicit ones (a solve
        # per layer) last
        train_schemes(explicit, folder, args, seeds)
        for data, control, lr, step in CONTROLS:
            if control not in schemes or data not in args.data:
                continue
            for seed in seeds:
                words = command(control, data, "autograd", seed, args.quick, lr, step)
                path = control_path(folder, data, control, lr, step, seed)
                run_once(path, words, args.threads, settings(control, lr, step))
        train_schemes(implicit, folder, args, seeds)
    table = collect(folder, schemes, args.data, seeds)
    text = markdown(table, seeds)
    if controls := controls_markdown(folder, schemes, args.data, seeds):
        text += "\n" + controls
    summaries = {
        data: [
            {"scheme": scheme, "memory": mode, **(summary(runs) or {})}
            for (scheme, mode), runs in rows.items()
        ]
        for data, rows in table.items()
    }
    write_text(args.out / "h_leaderboard.json", json.dumps(summaries, indent=2) + "\n")
    write_text(args.out / "h_leaderboard.md", text)
    plot(table, args.out / "h_leaderboard.png")
    if args.out.resolve() == (DOCS / "experiments").resolve():
        splice(DOCS / "experiments.md", text, BEGIN, END)
    print(text)


if __name__ == "__main__":
    main()
