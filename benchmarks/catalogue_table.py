"""nodepy's catalogue, analyzed by odenet, with nodepy's own answers beside: docs/gallery/catalogue.md.

Every Runge-Kutta and linear multistep method of nodepy's catalogue is written as a scheme
(tests/catalogue.py; needs the test extra) and analyzed in this process. Beside odenet's order,
zero-stability and stability intervals (in h*lambda) stand nodepy's order and zero-stability, and a
reference for each interval end: nodepy's real and imaginary stability intervals for explicit
Runge-Kutta methods, the definition itself sampled in 50-digit arithmetic (the test oracle,
``catalogue.interval_end``) for the others. A row whose facts differ is marked, with the reason
where it is known (tests/test_catalogue.py holds the evidence).

Run: python benchmarks/catalogue_table.py [--out docs/gallery/catalogue.md]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

import odenet
from odenet.files import write_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import catalogue  # tests/catalogue.py: nodepy's methods as schemes

# Where odenet and nodepy differ on purpose (the evidence is asserted in tests/test_catalogue.py).
KNOWN = {
    "Tsit5": "nodepy's default tolerance (1e-14) is below the decimals' rounding; at 1e-12 it says 5",
    "SSP53": "the published weights sum to 1.00000000032373: consistent with x' = 1.00000000032373*f(x)",
}


def _end(value: float | str | None) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "∞"
    return "0" if value == 0 else f"{value:.6g}"


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    if a == 0 or b == 0:
        return abs(a - b) < 1e-3
    return math.isclose(a, b, rel_tol=1e-5)


def _verdict(v: bool | None) -> str:
    return {True: "yes", False: "no", None: "–"}[v]


def _nodepy_interval(entry, direction: complex) -> float | str | None:
    """nodepy's own interval (explicit Runge-Kutta methods only; "–" for the others)."""
    if entry.kind != "rk" or np.any(np.triu(np.asarray(entry.method.A) != 0)):
        return "–"
    method = entry.method
    found = float(
        method.real_stability_interval() if direction == -1 else method.imaginary_stability_interval()
    )
    return None if not math.isfinite(found) else found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/gallery/catalogue.md")
    args = parser.parse_args()
    rows, differing = [], 0
    for entry in catalogue.entries():
        start = time.perf_counter()
        a = odenet.analyze(odenet.parse(entry.text, source=f"{entry.name}.scheme"))
        seconds = time.perf_counter() - start
        s = a.stability
        if s.real_interval is None or s.imag_interval is None:  # not stable at 0 (BDF7)
            real = imag = 0.0
        else:
            real = None if s.real_interval[0] is None else -s.real_interval[0]
            imag = None if s.imag_interval[1] is None else s.imag_interval[1]
        ref_real = catalogue.interval_end(entry, -1, reach=200.0, samples=200)
        ref_imag = catalogue.interval_end(entry, 1j, reach=200.0, samples=200)
        nodepy_order = entry.method.order()
        zero = bool(entry.method.is_zero_stable()) if entry.kind == "lmm" else True
        same = (
            a.order == nodepy_order
            and s.zero_stable is zero
            and _close(real, ref_real)
            and _close(imag, ref_imag)
        )
        symplectic, symmetric = catalogue.structure_oracle(entry)
        st = a.structure
        if not entry.name.endswith(("_as_states", "_carried")):  # maps on more states than the method's
            same = same and st.symplectic == symplectic and st.symmetric == symmetric
        note = "" if same else KNOWN.get(entry.name, "DIFFERS")
        differing += not same and entry.name not in KNOWN
        written = a.accuracy.exact_order
        order = f"{a.order}" + (f" ({written} as written)" if written != a.order else "")
        rows.append(
            f"| {entry.name} | {entry.kind} | {order} | {nodepy_order} | "
            f"{'yes' if s.zero_stable else 'no'} | {'yes' if zero else 'no'} | "
            f"{_end(real)} | {_end(ref_real)} | {_end(_nodepy_interval(entry, -1))} | "
            f"{_end(imag)} | {_end(ref_imag)} | {_end(_nodepy_interval(entry, 1j))} | "
            f"{a.reversibility.kind} | {_verdict(st.symplectic)} | {_verdict(symplectic)} "
            f"| {_verdict(st.symmetric)} | {_verdict(symmetric)} | {seconds:.2f} | {note} |"
        )
        print(rows[-1], flush=True)
    header = [
        "# nodepy's catalogue, analyzed by odenet",
        "",
        f"Written by `python benchmarks/catalogue_table.py` (odenet {odenet.__version__}). Each method of",
        "nodepy's Runge-Kutta and linear multistep catalogues is written as a scheme by",
        "`odenet.ir.methods` (implicit Runge-Kutta methods twice: with coupled stages, and `_as_states`",
        "with their stages carried as states; multistep methods with history, and `_carried` with their",
        "past values as states) and analyzed. Intervals are in `h*lambda`: the left end of the real",
        "interval and the upper end of the imaginary one (∞: unbounded). The reference for an interval",
        "is the definition, the spectral radius sampled in 50-digit arithmetic and bisected (the test",
        "oracle); nodepy's own intervals (explicit Runge-Kutta methods) stand beside it, for",
        "information: they are floating-point estimates, and nodepy reports 0 for an imaginary",
        "interval shorter than its sampling step. Symplectic and symmetric: odenet's verdicts (decided on",
        "the scheme, – where undecided or not applicable) beside the textbook conditions computed from",
        "nodepy's own coefficients in 60-digit arithmetic (`catalogue.structure_oracle`; a map on more",
        "states than the method's, `_as_states` and `_carried`, is not compared). Seconds: this process,",
        "warm (the cold-process times are in [../benchmarks.md](../benchmarks.md)).",
        "",
        f"{len(rows)} methods; facts that differ from the reference without a known reason: {differing}.",
        "",
        "| method | kind | order | nodepy | zero-stable | nodepy | real end | 50 digits | nodepy "
        "| imag end | 50 digits | nodepy | inverse | symplectic | 60 digits | symmetric | 60 digits "
        "| s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    write_text(Path(args.out), "\n".join(header + rows) + "\n")
    print(f"wrote {args.out}: {len(rows)} methods, {differing} differing without a known reason")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
