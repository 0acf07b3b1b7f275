"""Time to analyze schemes with odenet.analyze (no plotting).

Two sets:
- the library (default): median of --repeat runs per scheme in one process; target < 1 s.
- ``--catalogue``: every method of nodepy's Runge-Kutta and multistep catalogues written as a scheme
  (tests/catalogue.py; needs the test extra), each parsed and analyzed in a fresh Python process,
  so nothing is cached; target < 2 s per scheme. ``--timeout`` stops a scheme that runs longer.

Run: python benchmarks/analysis_speed.py [--repeat N] [--catalogue [--timeout S] [--json FILE]]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import odenet
from odenet.library import library_dir

TARGET_SECONDS = 1.0
CATALOGUE_TARGET_SECONDS = 2.0

# What one cold process does: import, parse, analyze; it prints the seconds of parse + analyze
# and the facts, as JSON.
_COLD = """
import json, sys, time
import odenet
text = sys.stdin.read()
start = time.perf_counter()
try:
    a = odenet.analyze(odenet.parse(text))
    s = a.stability
    facts = {"order": a.order, "zero_stable": s.zero_stable, "variable": s.variable_text,
             "real": None if s.real_interval is None else list(s.real_interval),
             "imag": None if s.imag_interval is None else list(s.imag_interval), "error": None}
except Exception as exc:
    facts = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
facts["seconds"] = time.perf_counter() - start
print(json.dumps(facts))
"""


def library(repeat: int) -> int:
    print(f"odenet {odenet.__version__}: median of {repeat} runs of odenet.analyze per library scheme")
    print("first: the first run in this process (sympy's caches cold for this scheme); median over all runs")
    print(f"{'scheme':<16} {'first s':>8} {'median s':>9} {'min s':>7}  target < {TARGET_SECONDS} s")
    worst = 0.0
    for path in sorted(library_dir().glob("*.scheme")):
        text = path.read_text(encoding="utf-8")
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            odenet.analyze(odenet.parse(text, source=str(path)))
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        worst = max(worst, median)
        flag = "ok" if median < TARGET_SECONDS else "SLOW"
        print(f"{path.stem:<16} {times[0]:8.3f} {median:9.3f} {min(times):7.3f}  {flag}")
    print(f"slowest median {worst:.3f} s: {'target met' if worst < TARGET_SECONDS else 'target missed'}")
    return 0


def _cold(text: str, timeout: float) -> dict:
    try:
        done = subprocess.run(
            [sys.executable, "-c", _COLD], input=text, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout: no answer in {timeout:g} s", "seconds": float("inf")}
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:160], "seconds": float("nan")}
    return json.loads(done.stdout)


def catalogue(timeout: float, workers: int, out: str | None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from catalogue import entries  # needs the test extra (nodepy)

    items = entries()
    print(
        f"odenet {odenet.__version__}: {len(items)} methods of nodepy's catalogue, each parsed and analyzed"
    )
    print(f"in a fresh process ({workers} at a time; seconds exclude the interpreter's start and imports)")
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda e: _cold(e.text, timeout), items))
    rows = []
    for entry, facts in zip(items, results, strict=True):
        rows.append({"name": entry.name, "kind": entry.kind, **facts})
        seconds = facts["seconds"]
        what = facts.get("error") or (
            f"order {facts['order']}, real {facts['real']}, imag {facts['imag']}, "
            f"zero-stable {facts['zero_stable']}"
        )
        flag = "ok" if seconds < CATALOGUE_TARGET_SECONDS else "SLOW"
        print(f"{entry.name:<22} {seconds:8.2f} s  {flag:4}  {what}")
    times = [r["seconds"] for r in rows]
    slow = [r["name"] for r in rows if not r["seconds"] < CATALOGUE_TARGET_SECONDS]
    errors = [r["name"] for r in rows if r.get("error")]
    finite = [t for t in times if t == t]
    print(
        f"median {statistics.median(finite):.2f} s, slowest {max(finite):.2f} s; "
        f"{len(slow)} of {len(rows)} at or over {CATALOGUE_TARGET_SECONDS} s; {len(errors)} without an answer"
    )
    if out:
        Path(out).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--catalogue", action="store_true", help="nodepy's catalogue, cold processes")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per catalogue scheme")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", help="write the catalogue's rows to this file")
    args = parser.parse_args()
    if args.catalogue:
        return catalogue(args.timeout, args.workers, args.json)
    return library(args.repeat)


if __name__ == "__main__":
    raise SystemExit(main())
