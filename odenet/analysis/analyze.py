"""``analyze(scheme)``: the facts a numerical analyst checks before trusting a network built from a
scheme, computed once and kept in one immutable :class:`Analysis`.

Symbolic facts (the amplification matrix, its characteristic polynomial and determinant, the
inverse) are exact sympy expressions in ``lambda`` and the parameters. Facts that need numbers
(intervals, zero-stability, backward amplification) are taken at the parameters' defaults, or at
the values passed as ``params``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy

from odenet.analysis.fields import domain_matrix
from odenet.analysis.html import analysis_html
from odenet.analysis.inverse import invert, lipschitz_limit
from odenet.analysis.latex import analysis_latex
from odenet.analysis.order import OrderResult, order_of_accuracy
from odenet.analysis.stability import (
    LAMBDA,
    ZETA,
    NumericSpectrum,
    amplification_matrix,
    deflate,
    exact_det,
    exact_spectrum,
    is_power_bounded,
    stable_interval,
    step_scaling,
)
from odenet.analysis.structure import Structure, structure
from odenet.analysis.verdict import axis_text, lipschitz_condition, short_verdict, verdict
from odenet.errors import NotReversibleError
from odenet.ir import Scheme
from odenet.ir.printing import format_expr, format_number

__all__ = ["Analysis", "Reversibility", "Stability", "analyze"]

Interval = tuple[float | None, float | None]


@dataclass(frozen=True, repr=False)
class Stability:
    """Linear stability with the test function ``f(u) = lambda*u``. ``repr``: the variable, its
    intervals on both axes, zero-stability and ``det M``."""

    amplification_matrix: sympy.Matrix
    characteristic_polynomial: sympy.Expr  # in ZETA
    det: sympy.Expr
    eigenvalues: tuple[sympy.Expr, ...] | None  # closed form, with multiplicity; None if none
    # The unit of the region and of every interval below: h*lambda, h**2*lambda (a second-order
    # ODE), or lambda itself where h does not factor out (no step, or exp(-c*h) in the step)
    variable: sympy.Expr
    ode_order: int  # 2 for schemes of a second-order ODE (h**2 scaling), else 1
    zero_stable: bool
    stable_at_zero: bool  # stable at lambda = 0 with the parameters' values
    real_interval: Interval | None  # in the variable; None when not even lambda = 0 is stable
    imag_interval: Interval | None  # imaginary parts of the variable
    scale: float  # variable / lambda at the parameter values: h, h**2 or 1
    numeric: NumericSpectrum = field(repr=False, compare=False)
    # whether each end of the intervals is itself stable (an end where a unit-modulus eigenvalue is
    # defective, as at leapfrog's h**2*lambda = 4, is not); True at infinite ends
    real_interval_closed: tuple[bool, bool] = (True, True)
    imag_interval_closed: tuple[bool, bool] = (True, True)
    # the parameter values the region in the variable depends on, and so the intervals (gamma for
    # momentum; none for leapfrog, whose h is scaled out; h and c for a damped step)
    at: Mapping[str, sympy.Expr] = field(default_factory=dict)

    def radius(self, lam):
        """Spectral radius of ``M(lambda)`` at the parameter values, for an array of ``lambda``."""
        return self.numeric.radius(np.asarray(lam))

    @property
    def variable_text(self) -> str:
        """The variable as the JSON and the reports write it: ``h**2*lambda``."""
        return format_expr(self.variable)

    @property
    def variable_label(self) -> str:
        """The variable for a reader: ``h**2*λ``."""
        return self.variable_text.replace("lambda", "λ")

    @property
    def at_text(self) -> str:
        """The parameter values the region depends on, ``gamma = 0.9``; empty when none."""
        return ", ".join(f"{k} = {format_number(v)}" for k, v in self.at.items())

    def __repr__(self) -> str:
        at = f" at {self.at_text}" if self.at else ""
        return (
            f"Stability({self.variable_label}{at}: real {axis_text(self, False)}, "
            f"imaginary {axis_text(self, True)}; {'zero-stable' if self.zero_stable else 'not zero-stable'}; "
            f"det M = {format_expr(self.det).replace('lambda', 'λ')})"
        )

    @property
    def real_closed(self) -> tuple[bool, bool]:
        """The old name of :attr:`real_interval_closed` (kept for one release)."""
        return self.real_interval_closed

    @property
    def imag_closed(self) -> tuple[bool, bool]:
        """The old name of :attr:`imag_interval_closed` (kept for one release)."""
        return self.imag_interval_closed


@dataclass(frozen=True, repr=False)
class Reversibility:
    """Can the old state be computed from the new one, and at what cost in rounding error? ``repr``:
    the kind, the inverse scheme or why there is none, volume and rounding."""

    kind: str  # "explicit", "fixed-point" or "none"
    inverse: Scheme | None
    solution: tuple[tuple[sympy.Symbol, sympy.Expr], ...]  # old value = expression of new values
    conditions: tuple[sympy.Expr, ...]  # each must be non-zero for the inverse to exist
    volume_preserving: bool  # |det M| == 1 identically
    backward_amplification: float | None  # spectral radius of M(0)^-1; None when M(0) is singular
    reason: str
    # a fixed-point inverse: the Lipschitz constant of the functions below which its iteration is
    # proved a contraction (None otherwise, or where the bound does not apply)
    lipschitz_limit: float | None = None

    def __repr__(self) -> str:
        parts = [self.kind]
        if self.inverse is not None:
            parts.append(f"inverse {self.inverse!r}")
        else:
            parts.append(self.reason if len(self.reason) <= 120 else self.reason[:117] + "...")
        parts.append("volume-preserving" if self.volume_preserving else "not volume-preserving")
        if self.backward_amplification is not None:
            parts.append(f"backward amplification {self.backward_amplification:.3g}")
        if self.lipschitz_limit is not None:
            parts.append(f"contraction for Lipschitz constants below {self.lipschitz_limit:.3g}")
        return f"Reversibility({'; '.join(parts)})"

    @property
    def steps(self) -> tuple[tuple[sympy.Symbol, sympy.Expr], ...]:
        """The inverse as a person writes it: in order, each value in terms of the new values and
        the values above it (``a[n] = a[n+1] - f(b[n])``, where :attr:`solution` writes out ``b[n]``
        inside the call: a value with stages nests its whole update in every call that reads it).
        Each replacement is an identity (a value above equals its expression)."""
        done: list[tuple[sympy.Symbol, sympy.Expr]] = []
        for i, (old, expr) in enumerate(self.solution):
            for name, explicit in reversed(self.solution[:i]):  # the largest first
                expr = expr.subs(explicit, name)
            done.append((old, expr))
        return tuple(done)


@dataclass(frozen=True, repr=False)
class SplitStability:
    """The test equation with a lambda for each function (``f(u) = lambda_f*u``, ``g(u) =
    lambda_g*u``), for a scheme of several functions: :class:`Stability` gives them one lambda.
    ``repr``: each function's real interval alone."""

    variables: Mapping[str, sympy.Symbol]  # each function's lambda: lambda_f, lambda_g
    matrix: sympy.Matrix  # M(lambda_f, lambda_g, ...), the parameters symbolic
    alone: Mapping[str, Stability]  # each function's lambda alone, the others' 0

    def __repr__(self) -> str:
        alone = ", ".join(
            f"{name} alone: {s.variable_label} in {axis_text(s, False)}" for name, s in self.alone.items()
        )
        return f"SplitStability({alone})"

    def radius(self, lambdas: Mapping[str, np.ndarray], values: Mapping[str, sympy.Expr]) -> np.ndarray:
        """The spectral radius at each point of a grid of lambdas (arrays of one shape), at the
        parameter ``values``."""
        numbers = {sympy.Symbol(k, real=True): v for k, v in values.items()}
        symbols = list(self.variables.values())
        grids = np.broadcast_arrays(*(np.asarray(lambdas[name], dtype=complex) for name in self.variables))
        matrix = self.matrix.xreplace(numbers)
        stacked = np.empty(grids[0].shape + matrix.shape, dtype=complex)
        with np.errstate(divide="ignore", invalid="ignore"):  # a pole of an implicit step: inf
            for i in range(matrix.rows):
                for j in range(matrix.cols):
                    stacked[..., i, j] = sympy.lambdify(symbols, matrix[i, j], "numpy")(*grids)
        finite = np.isfinite(stacked).all(axis=(-2, -1))
        out = np.full(finite.shape, np.inf)
        out[finite] = np.abs(np.linalg.eigvals(stacked[finite])).max(axis=-1)
        return out


@dataclass(frozen=True, repr=False)
class Analysis:
    """What :func:`analyze` found. ``repr`` is one line (the scheme's name and a short verdict);
    ``str`` is the whole verdict, one sentence a line."""

    scheme: Scheme
    params: Mapping[str, sympy.Expr]
    stability: Stability
    reversibility: Reversibility
    accuracy: OrderResult
    structure: Structure  # symplectic and symmetric, each with its reason

    @property
    def explicit(self) -> bool:
        return self.scheme.is_explicit

    @functools.cached_property
    def split(self) -> SplitStability | None:
        """A lambda for each function, for a scheme of several (None for one): computed on first
        use (the verdict, the JSON and the reports use it)."""
        return _split(self.scheme, dict(self.params))

    @property
    def order(self) -> int | None:
        """The order of accuracy in h, or None (no h, inconsistent, or not analyzable)."""
        return self.accuracy.order

    def __repr__(self) -> str:
        return f"Analysis({self.scheme.name}: {short_verdict(self)})"

    def __str__(self) -> str:
        return "\n".join([f"{self.scheme.name}:", *(f"- {line}." for line in verdict(self))])

    def to_latex(self) -> str:
        """The facts as a LaTeX ``tabular`` (``odenet analyze --latex``): order, the consistent ODE,
        zero-stability, the stable intervals, ``det M`` and the reversibility."""
        return analysis_latex(self)

    def _repr_html_(self) -> str:
        """A notebook's display: the verdict, the facts as a table, the region as an inline PNG."""
        return analysis_html(self)

    def to_json(self) -> dict:
        """The stable JSON contract of ``odenet analyze --json`` (documented in docs/analysis.md)."""
        s, r = self.stability, self.reversibility
        return {
            "scheme": self.scheme.name,
            "states": list(self.scheme.states),
            "history": dict(self.scheme.history),
            "functions": [f.name for f in self.scheme.functions],
            "params": {name: _number(v) for name, v in self.params.items()},
            "explicit": self.explicit,
            "order": self.order,
            "ode": list(self.accuracy.ode),
            "symplectic": self.structure.symplectic,
            "symplectic_reason": self.structure.symplectic_reason,
            "symmetric": self.structure.symmetric,
            "symmetric_reason": self.structure.symmetric_reason,
            "time_scale": None if self.accuracy.time_scale is None else format_expr(self.accuracy.time_scale),
            "stability": {
                "amplification_matrix": [
                    [format_expr(e) for e in s.amplification_matrix.row(i)]
                    for i in range(s.amplification_matrix.rows)
                ],
                "characteristic_polynomial": format_expr(s.characteristic_polynomial),
                "det": format_expr(s.det),
                "zero_stable": s.zero_stable,
                "variable": s.variable_text,
                "at": {name: _number(v) for name, v in s.at.items()},
                "real_interval": _interval(s.real_interval),
                "imag_interval": _interval(s.imag_interval),
                "real_interval_closed": list(s.real_interval_closed),
                "imag_interval_closed": list(s.imag_interval_closed),
            },
            "per_function": None
            if self.split is None
            else {
                name: {
                    "variable": format_expr(alone.variable),
                    "real_interval": _interval(alone.real_interval),
                    "imag_interval": _interval(alone.imag_interval),
                    "real_interval_closed": list(alone.real_interval_closed),
                    "imag_interval_closed": list(alone.imag_interval_closed),
                }
                for name, alone in self.split.alone.items()
            },
            "reversibility": {
                "kind": r.kind,
                "inverse": (
                    None if r.inverse is None else {str(old): format_expr(expr) for old, expr in r.solution}
                ),
                "inverse_steps": (
                    None if r.inverse is None else [[str(old), format_expr(expr)] for old, expr in r.steps]
                ),
                "conditions": [f"{format_expr(c)} != 0" for c in r.conditions],
                "volume_preserving": r.volume_preserving,
                "backward_amplification": r.backward_amplification,
                "lipschitz_limit": _finite_or_none(r.lipschitz_limit),
            },
        }


def _finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def _number(v: sympy.Expr) -> float | int:
    return int(v) if v.is_Integer else float(v)


def _interval(interval: Interval | None) -> list | None:
    return None if interval is None else [interval[0], interval[1]]


# ---------------------------------------------------------------------------------------------------


def _param_values(scheme: Scheme, params: Mapping[str, float] | None) -> dict[str, sympy.Expr]:
    scheme.check_param_names(params or {})
    values = {p.name: p.default for p in scheme.params}
    for name, v in (params or {}).items():
        values[name] = sympy.nsimplify(v, rational=True) if isinstance(v, float) else sympy.sympify(v)
    return values


def _end(t: float | None, direction: complex, scale: sympy.Expr) -> float | None:
    """An interval's end in the variable (or its imaginary part) from a distance ``t >= 0`` in
    lambda, scaled exactly (400 times h**2 = 1/100 is 4, not 4.000000000000001)."""
    if t is None:
        return None
    sign = -1 if direction in (-1, -1j) else 1
    return float(f"{float(sign * sympy.Rational(t) * scale):.12g}") + 0.0  # + 0.0 turns -0.0 into 0.0


def _readable(root: sympy.Expr) -> sympy.Expr:
    """A closed-form eigenvalue, expanded, with the radicands factored (``sympy.simplify`` would
    do as well, at the price of loading sympy.physics on its first call)."""
    root = sympy.expand(root)

    def shortest(base):
        forms = [sympy.factor_terms(base), sympy.factor(base), base]
        return min(forms, key=sympy.count_ops)

    return root.replace(
        lambda e: e.is_Pow and e.exp.is_Rational and not e.exp.is_Integer,
        lambda e: shortest(e.base) ** e.exp,
    )


# Factoring over the integers (Wang's algorithm) searches for primes beyond the coefficients' size:
# seconds for a polynomial with 16-digit decimals. Such polynomials are shown with their common
# factors pulled out only.
_FACTOR_DIGITS = 12


def _factored(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` factored for display, when its numbers are small enough to factor quickly."""
    numbers = sympy.together(expr).atoms(sympy.Rational)
    if any(max(abs(int(q.p)), int(q.q)) >= 10**_FACTOR_DIGITS for q in numbers):
        return sympy.factor_terms(expr)
    return sympy.factor(expr)


def _split(scheme: Scheme, values: dict[str, sympy.Expr]) -> SplitStability | None:
    """Each function with its own lambda, for a scheme of several functions (None for one)."""
    names = [f.name for f in scheme.functions]
    if len(names) < 2:
        return None
    variables = {name: sympy.Symbol(f"lambda_{name}") for name in names}
    alone = {
        name: _stability(
            scheme,
            values,
            amplification_matrix(scheme, {g: LAMBDA if g == name else sympy.Integer(0) for g in names}),
        )
        for name in names
    }
    return SplitStability(variables, amplification_matrix(scheme, variables), alone)


def _stability(
    scheme: Scheme, values: dict[str, sympy.Expr], matrix: sympy.Matrix | None = None
) -> Stability:
    if matrix is None:
        matrix = amplification_matrix(scheme)
    # The states the step never reads (stages written as states) only add eigenvalues 0: the
    # spectrum's other facts are decided on the rest.
    reduced = deflate(matrix)
    exact = domain_matrix(reduced)  # over the field of the entries: no simplification rounds
    coefficients = [exact.domain.to_sympy(c) for c in exact.charpoly()]
    n = len(coefficients) - 1
    reduced_charpoly = sympy.expand(sum(c * ZETA ** (n - k) for k, c in enumerate(coefficients)))
    charpoly = sympy.collect(sympy.expand(reduced_charpoly * ZETA ** (matrix.rows - n)), ZETA)
    det = _factored(exact.domain.to_sympy(exact.det())) if n == matrix.rows else sympy.Integer(0)
    variable, k = step_scaling(scheme, charpoly)
    ode_order = 2 if k == 2 else 1
    eigenvalues = None
    if reduced.rows == 1:  # a one-step method of one state: the stability function itself
        eigenvalues = (reduced[0, 0],) + (sympy.Integer(0),) * (matrix.rows - 1)
    else:
        roots = sympy.roots(sympy.Poly(charpoly, ZETA), cubics=False, quartics=False)
        if sum(roots.values()) == matrix.rows:
            eigenvalues = tuple(_readable(r) for r, m in roots.items() for _ in range(m))

    subs = {sympy.Symbol(name, real=True): v for name, v in values.items()}
    # Zero-stability: all functions 0 (lambda = 0) and, with a step h, h -> 0.
    homogeneous = reduced.subs(LAMBDA, 0)
    if scheme.step in values:
        homogeneous = homogeneous.subs(sympy.Symbol(scheme.step, real=True), 0)
    zero_stable = is_power_bounded(exact_spectrum(homogeneous.subs(subs)), ode_order)
    at_zero = reduced.subs(LAMBDA, 0).subs(subs)
    stable_at_zero = is_power_bounded(exact_spectrum(at_zero), ode_order)

    numeric = NumericSpectrum(matrix.subs(subs))
    exact_scale = variable.subs(LAMBDA, 1).subs(subs)
    scale = float(exact_scale)
    real = imag = None
    real_closed = imag_closed = (True, True)
    if stable_at_zero:
        at_values, matrix_at_values = reduced_charpoly.subs(subs), reduced.subs(subs)
        found = {d: stable_interval(matrix_at_values, at_values, d) for d in (-1, 1, -1j, 1j)}
        real = (_end(found[-1][0], -1, exact_scale), _end(found[1][0], 1, exact_scale))
        imag = (_end(found[-1j][0], -1j, exact_scale), _end(found[1j][0], 1j, exact_scale))
        real_closed = (found[-1][1], found[1][1])
        imag_closed = (found[-1j][1], found[1j][1])
    # the parameters the characteristic polynomial still reads once written in the variable
    z = sympy.Dummy("z")
    in_variable = sympy.expand(charpoly.subs(LAMBDA, z / variable.subs(LAMBDA, 1)))
    read = {sym.name for sym in in_variable.free_symbols - {z, ZETA}}
    at = {name: v for name, v in values.items() if name in read}
    return Stability(
        amplification_matrix=matrix,
        characteristic_polynomial=charpoly,
        det=det,
        eigenvalues=eigenvalues,
        variable=variable,
        ode_order=ode_order,
        zero_stable=zero_stable,
        stable_at_zero=stable_at_zero,
        real_interval=real,
        imag_interval=imag,
        real_interval_closed=real_closed,
        imag_interval_closed=imag_closed,
        at=at,
        scale=scale,
        numeric=numeric,
    )


def _reversibility(scheme: Scheme, stability: Stability, values: dict[str, sympy.Expr]) -> Reversibility:
    subs = {sympy.Symbol(name, real=True): v for name, v in values.items()}
    det = stability.det
    volume_preserving = bool(det.is_number and abs(det) == 1)
    at_zero = stability.amplification_matrix.subs(LAMBDA, 0).subs(subs)
    det_zero = exact_det(at_zero)
    amplification = None
    if not det_zero.is_zero:  # exact: M(0) is often defective (leapfrog), where floats lose digits
        amplification = float(f"{exact_spectrum(at_zero.inv()).radius:.12g}")
    try:
        derivation = invert(scheme)
    except NotReversibleError as exc:
        limit = None
        if det_zero.is_zero:
            kind = "none"
            reason = "M(0) is singular: the step loses information, so no inverse exists"
        else:
            kind = "fixed-point"
            limit = lipschitz_limit(scheme, subs) if scheme.is_explicit else None
            reason = (
                f"{exc} Since det M(0) = {format_expr(det_zero)} != 0, the inverse is a fixed point "
                f"that iteration finds when {lipschitz_condition(scheme, limit, values)}"
            )
        return Reversibility(kind, None, (), (), volume_preserving, amplification, reason, limit)
    return Reversibility(
        kind="explicit",
        inverse=derivation.scheme,
        solution=derivation.solution,
        conditions=derivation.conditions,
        volume_preserving=volume_preserving,
        backward_amplification=amplification,
        reason="the step equations solve for the old state with forward function evaluations only",
    )


def analyze(scheme: Scheme, params: Mapping[str, float] | None = None) -> Analysis:
    """Analyze ``scheme`` (numbers at the parameters' defaults, or at ``params``)."""
    values = _param_values(scheme, params)
    stability = _stability(scheme, values)
    reversibility = _reversibility(scheme, stability, values)
    symbols = {sympy.Symbol(name, real=True): v for name, v in values.items()}
    solution = reversibility.solution if reversibility.kind == "explicit" else None
    return Analysis(
        scheme=scheme,
        params=values,
        stability=stability,
        reversibility=reversibility,
        accuracy=order_of_accuracy(scheme, symbols),
        structure=structure(scheme, values, stability.amplification_matrix, solution),
    )
