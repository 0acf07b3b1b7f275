"""nodepy's catalogue of Runge-Kutta and linear multistep methods, each written as a scheme.

Used by ``tests/test_catalogue.py`` (odenet's analysis against nodepy and against a high-precision
evaluation of the stability function) and by ``benchmarks/analysis_speed.py --catalogue``.
nodepy is a test-only dependency: import this module only where it is installed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import mpmath
import nodepy.linear_multistep_method as lmm
import nodepy.runge_kutta_method as rkm
import numpy as np
import sympy

from odenet.ir.methods import _number, multistep_text, runge_kutta_text


@dataclass(frozen=True)
class Entry:
    name: str  # a valid scheme name
    kind: str  # "rk" or "lmm"
    text: str  # the scheme
    method: object  # nodepy's object


def _name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text.replace("ö", "o")).strip("_")
    return name if name[0].isalpha() else "m" + name


def _rk(name: str, method, stages_as_states: bool = False) -> Entry:
    text = runge_kutta_text(name, method.A, method.b, stages_as_states=stages_as_states)
    return Entry(name, "rk", text, method)


def _implicit(method) -> bool:
    a = np.asarray(method.A)
    return bool(np.any(np.triu(a != 0)))


def _lmm(name: str, method, carried: bool = False) -> Entry:
    return Entry(name, "lmm", multistep_text(name, method.alpha, method.beta, carried=carried), method)


@functools.cache
def entries() -> tuple[Entry, ...]:
    found: dict[str, Entry] = {}

    def add(entry: Entry) -> None:
        found.setdefault(entry.name, entry)

    for key, method in sorted(rkm.loadRKM("All").items()):
        name = _name(key)
        add(_rk(name, method))
        if _implicit(method):  # the same method with its stages carried as states
            add(_rk(name + "_as_states", method, stages_as_states=True))
        embedded = getattr(method, "embedded_method", None)
        if embedded is not None:
            add(_rk(name + "_embedded", embedded))
    for p in range(2, 7):
        add(_rk(f"extrap{p}", rkm.extrap(p)))
    for s in range(2, 6):
        add(_rk(f"SSPRK2_{s}", rkm.SSPRK2(s)))
    for s in (4, 9):
        add(_rk(f"SSPRK3_{s}", rkm.SSPRK3(s)))
    for key, method in sorted(lmm.loadLMM("All").items()):
        if type(method) is lmm.LinearMultistepMethod:  # additive (IMEX) methods have two right-hand sides
            add(_lmm(_name(key), method))
    families = {
        "AB": (lmm.Adams_Bashforth, range(1, 7)),
        "AM": (lmm.Adams_Moulton, range(1, 6)),
        "BDF": (lmm.backward_difference_formula, range(1, 8)),
        "MS": (lmm.Milne_Simpson, range(2, 6)),
        "Nystrom": (lmm.Nystrom, range(2, 6)),
        "elmSSP2_": (lmm.elm_ssp2, range(3, 6)),
        "sand": (lmm.sand_cc, range(1, 3)),
    }
    for prefix, (make, steps) in families.items():
        for k in steps:
            method = make(k)
            add(_lmm(f"{prefix}{k}", method))
            if len(method.alpha) > 2:
                add(_lmm(f"{prefix}{k}_carried", method, carried=True))
    return tuple(found.values())


# -- references --------------------------------------------------------------------------------------


def _mp(c) -> mpmath.mpf:
    """A coefficient as the scheme text writes it (a float as its shortest decimal), to 60 digits:
    the oracle judges the same numbers odenet reads."""
    text = _number(c)
    try:
        exact = sympy.Rational(text)  # decimals and fractions exactly (sympify would round to 15 digits)
    except (TypeError, ValueError):
        exact = sympy.sympify(text)
    return mpmath.mpmathify(sympy.N(exact, 60))


def structure_oracle(entry: Entry) -> tuple[bool | None, bool | None]:
    """``(symplectic, symmetric)`` from nodepy's own coefficients as the scheme text writes them, in
    60-digit arithmetic (a condition holds when it is below 1e-40): for Runge-Kutta methods,
    ``b_i a_ij + b_j a_ji = b_i b_j`` and a stage bijection ``sigma`` with ``a_sigma(i)sigma(j) = b_j
    - a_ij``, ``b_sigma(i) = b_i`` (Hairer, Lubich & Wanner, Theorems VI.4.3 and V.2.3); for linear
    multistep methods, no symplecticity (not one-step maps) and ``alpha_j = -alpha_(k-j)``,
    ``beta_j = beta_(k-j)``."""
    with mpmath.workdps(60):
        tol = mpmath.mpf(10) ** -40
        if entry.kind == "lmm":
            alpha = [_mp(c) for c in entry.method.alpha]
            beta = [_mp(c) for c in entry.method.beta]
            while abs(alpha[0]) < tol and abs(beta[0]) < tol:  # MS3 as nodepy writes it reads x[n-2] with 0
                alpha, beta = alpha[1:], beta[1:]
            k = len(alpha) - 1
            if k == 1:  # a one-step method: the theta-method's tableau, with stages f(x[n]), f(x[n+1])
                b = [beta[0] / alpha[1], beta[1] / alpha[1]]
                return _runge_kutta_structure([[0, 0], b], b, tol)
            symmetric = all(
                abs(alpha[j] + alpha[k - j]) < tol and abs(beta[j] - beta[k - j]) < tol for j in range(k + 1)
            )
            return None, symmetric
        a = [[_mp(c) for c in row] for row in np.asarray(entry.method.A, dtype=object)]
        return _runge_kutta_structure(a, [_mp(c) for c in entry.method.b], tol)


def _runge_kutta_structure(a, b, tol) -> tuple[bool, bool]:
    with mpmath.workdps(60):
        s = len(b)
        symplectic = all(
            abs(b[i] * a[i][j] + b[j] * a[j][i] - b[i] * b[j]) < tol for i in range(s) for j in range(s)
        )
        sigma: list[int] = []

        def extend() -> bool:
            i = len(sigma)
            if i == s:
                return True
            for j in range(s):
                fits = j not in sigma and abs(b[j] - b[i]) < tol
                fits = fits and all(
                    abs(a[j][sigma[m]] - b[m] + a[i][m]) < tol and abs(a[sigma[m]][j] - b[i] + a[m][i]) < tol
                    for m in range(i)
                )
                if fits and abs(a[j][j] - b[i] + a[i][i]) < tol:
                    sigma.append(j)
                    if extend():
                        return True
                    sigma.pop()
            return False

        return symplectic, extend()


def radius(entry: Entry, z: complex) -> mpmath.mpf:
    """The spectral radius of the step at ``lambda*h = z``, in 50 digits."""
    with mpmath.workdps(50):
        z = mpmath.mpmathify(z)
        if entry.kind == "rk":
            a = mpmath.matrix([[_mp(c) for c in row] for row in np.asarray(entry.method.A, dtype=object)])
            b = mpmath.matrix([_mp(c) for c in entry.method.b])
            s = len(entry.method.b)
            stages = mpmath.lu_solve(mpmath.eye(s) - z * a, mpmath.matrix([1] * s))
            return abs(1 + z * (b.T * stages)[0])
        alpha = [_mp(c) for c in entry.method.alpha]
        beta = [_mp(c) for c in entry.method.beta]
        coefficients = [alpha[j] - z * beta[j] for j in reversed(range(len(alpha)))]
        while coefficients and abs(coefficients[0]) == 0:
            coefficients = coefficients[1:]
        if len(coefficients) <= 1:
            return mpmath.mpf(0)
        roots = mpmath.polyroots(coefficients, maxsteps=200, extraprec=100)
        return max(abs(r) for r in roots)


def interval_end(entry: Entry, direction: complex, reach: float = 50.0, samples: int = 2000) -> float | None:
    """The first ``t > 0`` on a grid of ``[0, reach]`` (refined by bisection) where the step at
    ``t*direction`` has spectral radius above 1 (by more than 1e-40, in 50-digit arithmetic); ``None``
    when no sample leaves the disc. The definition, sampled: the oracle for odenet's intervals."""
    with mpmath.workdps(50):
        limit = mpmath.mpf(1) + mpmath.mpf(10) ** -40

        def unstable(t: float) -> bool:
            return radius(entry, t * direction) > limit

        previous = 0.0
        for t in np.geomspace(1e-4, reach, samples):
            if unstable(t):
                low, high = previous, float(t)
                for _ in range(50):
                    middle = (low + high) / 2
                    low, high = (low, middle) if unstable(middle) else (middle, high)
                return high
            previous = float(t)
        return None


# -- the oracle's answers, computed once ----------------------------------------------------------------
# The 50-digit oracle takes minutes for the whole catalogue; its answers depend only on the scheme
# texts, so they are kept in a file with a digest of each text. The suite compares odenet's analysis
# with the file; `pytest --exhaustive` recomputes the oracle and compares it with the file too.
# Regenerate after changing the catalogue: python tests/catalogue.py

ORACLE = Path(__file__).resolve().parent / "data" / "catalogue_oracle.json"
DIRECTIONS = {"-1": -1, "1": 1, "1j": 1j}


def digest(entry: Entry) -> str:
    return hashlib.sha256(entry.text.encode()).hexdigest()[:16]


def oracle_ends(entry: Entry) -> dict[str, float | None]:
    """The first unstable ``t`` along each direction (None: none within 200), as the oracle finds it."""
    return {key: interval_end(entry, d, reach=200.0, samples=200) for key, d in DIRECTIONS.items()}


@functools.cache
def stored_oracle() -> dict:
    return json.loads(ORACLE.read_text()) if ORACLE.is_file() else {}


if __name__ == "__main__":
    table = {e.name: {"digest": digest(e), "ends": oracle_ends(e)} for e in entries()}
    ORACLE.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    print(f"wrote {ORACLE} ({len(table)} entries)", file=sys.stderr)
