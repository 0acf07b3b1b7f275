"""Every compilable library scheme trained with its defaults: `odenet train SCHEME --epochs 5` and
nothing else (digits), in autograd mode and in its memory-saving mode; the table goes into
docs/training.md (the block between ``<!-- generated: train-defaults -->`` markers).

A second table does the same for schemes a user writes (benchmarks/user_schemes/, the tutorial's
damped scheme, the oracle tests' Runge-Kutta methods), whose defaults are derived from their analysis,
next to the library scheme each resembles, trained in the same run: block ``train-user-defaults``.

Each run is a fresh `python -m odenet train` process (two at a time, one thread each); accuracy is
on the 360 held-out digits; the time is the run's own training seconds. Target: >= 95% in autograd
mode, and within 2 points of it in the memory-saving mode; a user's scheme within 2 points of the
library scheme it resembles.

Run: python benchmarks/train_defaults.py [--epochs 5] [--jobs 2] [--only library|users]
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
from odenet.training.defaults import LIBRARY_DEFAULTS, scheme_defaults

TARGET, GAP = 0.95, 0.02
ROOT = Path(__file__).resolve().parent.parent
USER_SCHEMES = [
    *sorted((ROOT / "benchmarks" / "user_schemes").glob("*.scheme")),
    ROOT / "docs" / "tutorial" / "damped.scheme",
    ROOT / "tests" / "data" / "midpoint_rk.scheme",
    ROOT / "tests" / "data" / "rk4_38.scheme",
]


def _run(scheme: str, memory: str, epochs: int, root: Path) -> dict:
    out = root / f"{Path(scheme).stem}-{memory}"
    command = [sys.executable, "-m", "odenet", "train", scheme, "--epochs", str(epochs), "--json"]
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


def _library_table(schemes: list[str], results: dict, header: str) -> tuple[str, int]:
    lines = [
        header,
        "",
        "| scheme | family | lr | autograd | s | memory-saving mode | accuracy | s | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    failures = 0
    for scheme in schemes:
        d = LIBRARY_DEFAULTS[scheme]
        plain, saving = results[(scheme, "autograd")], results[(scheme, d.memory_saving)]
        ok = (
            "error" not in plain
            and "error" not in saving
            and plain["test_accuracy"] >= TARGET
            and saving["test_accuracy"] >= plain["test_accuracy"] - GAP
        )
        failures += not ok
        lines.append(
            f"| {scheme} | {d.family} | {d.lr:g} | {_accuracy(plain)} | {_seconds(plain)} "
            f"| {d.memory_saving} | {_accuracy(saving)} | {_seconds(saving)} | {'ok' if ok else 'MISSED'} |"
        )
    return "\n".join(lines), failures


def _user_table(paths: list[Path], results: dict, header: str) -> tuple[str, int]:
    lines = [
        header,
        "",
        "| scheme file | resembles | step | autograd | memory-saving mode | accuracy "
        "| resembled scheme: autograd | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    failures = 0
    for path in paths:
        d = scheme_defaults(odenet.load(path))
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
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", choices=("library", "users"), help="one of the two tables")
    parser.add_argument(
        "--write", metavar="FILE", help="replace the generated tables in FILE (docs/training.md)"
    )
    args = parser.parse_args()
    library = [name for name in library_names() if load(name).is_explicit]
    users = [] if args.only == "library" else USER_SCHEMES
    resembled = sorted({scheme_defaults(odenet.load(p)).like for p in users})
    runs = []
    for scheme in library if args.only != "users" else resembled:
        runs += [(scheme, "autograd"), (scheme, LIBRARY_DEFAULTS[scheme].memory_saving)]
    for path in users:
        runs += [(str(path), "autograd"), (str(path), scheme_defaults(odenet.load(path)).memory_saving)]
    with tempfile.TemporaryDirectory() as root, ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(runs, pool.map(lambda r: _run(*r, args.epochs, Path(root)), runs), strict=True))
    how = (
        f"(odenet {odenet.__version__}; `odenet train SCHEME --epochs {args.epochs}` on digits, and the same "
        "with `--memory` set to the memory-saving mode; 2 CPU cores, two runs at a time)"
    )
    tables, failures = [], 0
    if args.only != "users":
        table, missed = _library_table(library, results, f"`python benchmarks/train_defaults.py` {how}:")
        tables.append(("train-defaults", table))
        failures += missed
    if users:
        header = (
            f"`python benchmarks/train_defaults.py` {how}; each scheme file with the defaults derived from "
            "its analysis, and the library scheme it resembles trained in the same run:"
        )
        table, missed = _user_table(users, results, header)
        tables.append(("train-user-defaults", table))
        failures += missed
    for name, table in tables:
        print(table, end="\n\n")
        if args.write:
            _write(Path(args.write), name, table)
    print(
        f"{len(runs)} runs; {failures} scheme(s) missed the target (library: >= {TARGET:.0%}; a user's "
        f"scheme: within {GAP:.0%} of the scheme it resembles; memory-saving within {GAP:.0%} of autograd)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
