"""Every explicit library scheme trained with its defaults: `odenet train SCHEME --data DATA` and
nothing else, in autograd mode and in its memory-saving mode, beside the tuning sweep's three-seed
mean at the same setting (docs/experiments/o_tuning.json); the table goes into docs/training.md (the
block between ``<!-- generated: train-defaults-DATA -->`` markers).

A second table does the same for schemes a user writes (benchmarks/user_schemes/, the tutorial's
damped scheme, the oracle tests' Runge-Kutta methods), whose defaults are derived from their analysis,
next to the library scheme each resembles, trained in the same run: block ``train-user-defaults``.

Each run is a fresh `python -m odenet train` process (two at a time, one thread each); accuracy is
on the data set's test set; the time is the run's own training seconds. Target: within 1.5 points
of the sweep's tuned three-seed mean in autograd mode (95% on digits for a scheme the sweep has not
reached), and within 2 points of autograd in the memory-saving mode; a user's scheme within 2
points of the library scheme it resembles.

Run: python benchmarks/train_defaults.py [--data digits|mnist1d] [--jobs 2] [--only library|users]
     [--write docs/training.md]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import odenet
from odenet.library import library_names, load
from odenet.training.defaults import library_defaults, scheme_defaults

TARGET, GAP, TUNED_GAP = 0.95, 0.02, 0.015
ROOT = Path(__file__).resolve().parent.parent
USER_SCHEMES = [
    *sorted((ROOT / "benchmarks" / "user_schemes").glob("*.scheme")),
    ROOT / "docs" / "tutorial" / "damped.scheme",
    ROOT / "tests" / "data" / "midpoint_rk.scheme",
    ROOT / "tests" / "data" / "rk4_38.scheme",
]


def _run(scheme: str, memory: str, data: str, root: Path) -> dict:
    out = root / f"{Path(scheme).stem}-{memory}"
    command = [sys.executable, "-m", "odenet", "train", scheme, "--data", data, "--json"]
    command += ["--memory", memory, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout)


def _accuracy(result: dict) -> str:
    return result.get("error") or f"{100 * result['test_accuracy']:.1f}%"


def _seconds(result: dict) -> str:
    return "" if "error" in result else f"{result['seconds']:.0f}"


def _tuned_mean(data: str, scheme: str) -> float | None:
    """The sweep's three-seed test accuracy at the scheme's tuned setting (a fraction), if recorded."""
    path = ROOT / "docs" / "experiments" / "o_tuning.json"
    row = json.loads(path.read_text()).get(data, {}).get(scheme) if path.is_file() else None
    return None if not row or not row.get("tuned") else row["tuned"]["mean"] / 100


def _library_table(schemes: list[str], results: dict, data: str, header: str) -> tuple[str, int]:
    lines = [
        header,
        "",
        "| scheme | family | lr | step | autograd | s | memory-saving mode | accuracy | s | tuned, 3 seeds "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    failures = 0
    for scheme in schemes:
        d = library_defaults(scheme, data)
        plain, saving = results[(scheme, "autograd")], results[(scheme, d.memory_saving)]
        tuned = _tuned_mean(data, scheme)
        target = TARGET if tuned is None else tuned - TUNED_GAP
        ok = (
            "error" not in plain
            and "error" not in saving
            and plain["test_accuracy"] >= target
            and saving["test_accuracy"] >= plain["test_accuracy"] - GAP
        )
        failures += not ok
        step = d.step_value(load(scheme))
        lines.append(
            f"| {scheme} | {d.family} | {d.lr:g} | {'none' if step is None else f'{step:g}'} "
            f"| {_accuracy(plain)} | {_seconds(plain)} | {d.memory_saving} | {_accuracy(saving)} "
            f"| {_seconds(saving)} | {'not swept' if tuned is None else f'{100 * tuned:.1f}%'} "
            f"| {'ok' if ok else 'MISSED'} |"
        )
    return "\n".join(lines), failures


def _user_table(paths: list[Path], results: dict, data: str, header: str) -> tuple[str, int]:
    lines = [
        header,
        "",
        "| scheme file | resembles | step | autograd | memory-saving mode | accuracy "
        "| resembled scheme: autograd | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    failures = 0
    for path in paths:
        d = scheme_defaults(odenet.load(path), data)
        plain, saving = results[(str(path), "autograd")], results[(str(path), d.memory_saving)]
        reference = results[(d.like, "autograd")]
        ok = (
            "error" not in plain
            and "error" not in saving
            and "error" not in reference
            and plain["test_accuracy"] >= reference["test_accuracy"] - GAP
            and saving["test_accuracy"] >= plain["test_accuracy"] - GAP
        )
        failures += not ok
        step = "its own" if d.step is None else f"{d.step:g}"
        lines.append(
            f"| `{path.relative_to(ROOT)}` | {d.like} | {step} | {_accuracy(plain)} | {d.memory_saving} "
            f"| {_accuracy(saving)} | {_accuracy(reference)} | {'ok' if ok else 'MISSED'} |"
        )
    return "\n".join(lines), failures


def _write(path: Path, name: str, table: str) -> None:
    text = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- end generated -->)", re.S)
    new, count = pattern.subn(lambda m: m.group(1) + table + "\n" + m.group(3), text)
    if count != 1:
        raise SystemExit(f"{path}: expected one block <!-- generated: {name} -->")
    path.write_text(new, encoding="utf-8")
    print(f"wrote the table into {path} ({name})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=("digits", "mnist1d"), default="digits")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", choices=("library", "users"), help="one of the two tables")
    parser.add_argument(
        "--write", metavar="FILE", help="replace the generated tables in FILE (docs/training.md)"
    )
    args = parser.parse_args()
    library = [name for name in library_names() if load(name).is_explicit]
    users = [] if args.only == "library" else USER_SCHEMES
    resembled = sorted({scheme_defaults(odenet.load(p), args.data).like for p in users})
    runs = []
    for scheme in library if args.only != "users" else resembled:
        runs += [(scheme, "autograd"), (scheme, library_defaults(scheme, args.data).memory_saving)]
    for path in users:
        saving = scheme_defaults(odenet.load(path), args.data).memory_saving
        runs += [(str(path), "autograd"), (str(path), saving)]
    with tempfile.TemporaryDirectory() as root, ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(runs, pool.map(lambda r: _run(*r, args.data, Path(root)), runs), strict=True))
    how = (
        f"(odenet {odenet.__version__}; `odenet train SCHEME --data {args.data}`, and the same with "
        f"`--memory` set to the memory-saving mode; 2 CPU cores, {args.jobs} run(s) at a time, one thread "
        "each)"
    )
    tables, failures = [], 0
    if args.only != "users":
        header = f"`python benchmarks/train_defaults.py --data {args.data}` {how}:"
        table, missed = _library_table(library, results, args.data, header)
        tables.append((f"train-defaults-{args.data}", table))
        failures += missed
    if users:
        header = (
            f"`python benchmarks/train_defaults.py --data {args.data}` {how}; each scheme file with the "
            "defaults derived from its analysis, and the library scheme it resembles trained in the same run:"
        )
        table, missed = _user_table(users, results, args.data, header)
        tables.append((f"train-user-defaults-{args.data}", table))
        failures += missed
    for name, table in tables:
        print(table, end="\n\n")
        if args.write:
            _write(Path(args.write), name, table)
    print(
        f"{len(runs)} runs; {failures} scheme(s) missed the target (library: within 1.5 points of the "
        f"tuned 3-seed mean, or >= {TARGET:.0%} where not swept; a user's scheme: within {GAP:.0%} of the "
        f"scheme it resembles; memory-saving within {GAP:.0%} of autograd)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
