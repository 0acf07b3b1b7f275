"""Every compilable library scheme trained with its defaults: `odenet train SCHEME --epochs 5` and
nothing else (digits), in autograd mode and in its memory-saving mode; the table goes into
docs/training.md (the block between ``<!-- generated: train-defaults -->`` markers).

Each run is a fresh `python -m odenet train` process (two at a time, one thread each); accuracy is
on the 360 held-out digits; the time is the run's own training seconds. Target: >= 95% in autograd
mode, and within 2 points of it in the memory-saving mode.

Run: python benchmarks/train_defaults.py [--epochs 5] [--jobs 2] [--write docs/training.md]
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
from odenet.training.defaults import LIBRARY_DEFAULTS

TARGET, GAP = 0.95, 0.02


def _run(scheme: str, memory: str, epochs: int, root: Path) -> dict:
    out = root / f"{scheme}-{memory}"
    command = [sys.executable, "-m", "odenet", "train", scheme, "--epochs", str(epochs), "--json"]
    command += ["--memory", memory, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument(
        "--write", metavar="FILE", help="replace the generated table in FILE (docs/training.md)"
    )
    args = parser.parse_args()
    schemes = [name for name in library_names() if load(name).is_explicit]
    runs = [(s, m) for s in schemes for m in ("autograd", LIBRARY_DEFAULTS[s].memory_saving)]
    with tempfile.TemporaryDirectory() as root, ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip(runs, pool.map(lambda r: _run(*r, args.epochs, Path(root)), runs), strict=True))
    lines = [
        f"`python benchmarks/train_defaults.py` (odenet {odenet.__version__}; `odenet train SCHEME --epochs "
        f"{args.epochs}` on digits, and the same with `--memory` set to the memory-saving mode; 2 CPU cores, "
        "two runs at a time):",
        "",
        "| scheme | family | lr | autograd | s | memory-saving mode | accuracy | s | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    failures = 0
    for scheme in schemes:
        d = LIBRARY_DEFAULTS[scheme]
        plain, saving = results[(scheme, "autograd")], results[(scheme, d.memory_saving)]
        if "error" in plain or "error" in saving:
            failures += 1
            first, second = plain.get("error", ""), saving.get("error", "")
            lines.append(
                f"| {scheme} | {d.family} | {d.lr:g} | {first} | | {d.memory_saving} | {second} | | FAILED |"
            )
            continue
        a, b = plain["test_accuracy"], saving["test_accuracy"]
        ok = a >= TARGET and b >= a - GAP
        failures += not ok
        lines.append(
            f"| {scheme} | {d.family} | {d.lr:g} | {100 * a:.1f}% | {plain['seconds']:.0f} "
            f"| {d.memory_saving} | {100 * b:.1f}% | {saving['seconds']:.0f} | {'ok' if ok else 'MISSED'} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = Path(args.write)
        text = path.read_text(encoding="utf-8")
        pattern = re.compile(r"(<!-- generated: train-defaults -->\n)(.*?)(\n<!-- end generated -->)", re.S)
        new, count = pattern.subn(lambda m: m.group(1) + table + m.group(3), text)
        if count != 1:
            raise SystemExit(f"{path}: expected one block <!-- generated: train-defaults -->")
        path.write_text(new, encoding="utf-8")
        print(f"wrote the table into {path}")
    print(
        f"{len(schemes)} schemes; {failures} missed the target "
        f"(>= {TARGET:.0%}, memory-saving within {GAP:.0%})"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
