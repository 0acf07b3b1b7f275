"""Median time to analyze each library scheme (odenet.analyze, no plotting).

Target (issue 3): under 1 s per scheme on the development machine (2 cores).
Run: python benchmarks/analysis_speed.py [--repeat N]
Each repetition analyzes a freshly parsed scheme, so no cached facts are reused.
"""

from __future__ import annotations

import argparse
import statistics
import time

import odenet
from odenet.library import library_dir

TARGET_SECONDS = 1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"odenet {odenet.__version__}: median of {args.repeat} runs of odenet.analyze per library scheme")
    print("first: the first run in this process (sympy's caches cold for this scheme); median over all runs")
    print(f"{'scheme':<16} {'first s':>8} {'median s':>9} {'min s':>7}  target < {TARGET_SECONDS} s")
    worst = 0.0
    for path in sorted(library_dir().glob("*.scheme")):
        text = path.read_text(encoding="utf-8")
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            odenet.analyze(odenet.parse(text, source=str(path)))
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        worst = max(worst, median)
        flag = "ok" if median < TARGET_SECONDS else "SLOW"
        print(f"{path.stem:<16} {times[0]:8.3f} {median:9.3f} {min(times):7.3f}  {flag}")
    print(f"slowest median {worst:.3f} s: {'target met' if worst < TARGET_SECONDS else 'target missed'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
