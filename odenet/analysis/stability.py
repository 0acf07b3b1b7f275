"""Linear stability: the amplification matrix and what its spectrum says.

Every function symbol is linearized as ``f(u) -> lambda*u`` (one shared ``lambda``; a function of
several arguments as ``lambda*(u1 + ... + uk)``). The step then becomes linear,
``s[n+1] = M(lambda) s[n]``, on the full state vector ``s = (x[n], x[n-1], ..., v[n], ...)``, and
``M`` is the amplification (companion) matrix. The scheme is stable at ``lambda`` when the spectral
radius of ``M`` is at most 1 and the eigenvalues on the unit circle are not defective beyond what
the ODE allows (a Jordan block of size 2 for schemes of a second-order ODE, ``h**2`` scaling).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import mpmath
import numpy as np
import sympy
from sympy.core.function import AppliedUndef

from odenet.analysis.fields import domain_matrix, field_of
from odenet.analysis.fields import poly as field_poly
from odenet.errors import SchemeValueError
from odenet.ir import Scheme, parse_value, value

__all__ = [
    "LAMBDA",
    "ZETA",
    "Spectrum",
    "amplification_matrix",
    "deflate",
    "exact_det",
    "exact_spectrum",
    "is_power_bounded",
    "iteration_radius",
    "linearize",
    "stable_interval",
    "step_scaling",
]

LAMBDA = sympy.Symbol("lambda")
ZETA = sympy.Symbol("zeta")


def linearize(expr: sympy.Expr, lam: sympy.Expr | Mapping[str, sympy.Expr] = LAMBDA) -> sympy.Expr:
    """Replace every call ``f(u1, ..., uk)`` by ``lam*(u1 + ... + uk)`` (inner calls first); with a
    mapping, each function by its own ``lam[name]`` (the test equation with a lambda each)."""

    def factor(call):
        return lam[call.func.__name__] if isinstance(lam, Mapping) else lam

    return expr.replace(lambda e: isinstance(e, AppliedUndef), lambda e: factor(e) * sympy.Add(*e.args))


def iteration_radius(scheme: Scheme, values: Mapping[str, float]) -> float:
    """How far one fixed-point iteration of an implicit step moves per unit move of its guess, with
    each function ``f(u) = lambda_f*u`` at ``lambda_f = 1`` or ``-1`` (the largest over the signs,
    each function its own): the spectral radius of the Jacobian of the step's map (each equation in
    order, reading the guess for an unknown not yet computed: implicit layers' ``G``) at the
    parameter ``values`` (by name; others at their defaults). Backward Euler's is ``h``; a theta
    method's ``h*theta``. 0 for an explicit step. A solve at a larger radius needs functions of a
    smaller Lipschitz constant. (The generated map evaluates a call repeated in the step once; this
    reads each occurrence where it stands, which differs only for a call repeated around the line
    that computes its argument.)"""
    if scheme.is_explicit:
        return 0.0
    jacobian, signs = _iteration_jacobian(scheme)
    jacobian = jacobian.xreplace({p.symbol: values.get(p.name, p.default) for p in scheme.params})
    radius = 0.0
    for chosen in itertools.product((1, -1), repeat=len(signs)):
        matrix = np.array(jacobian.xreplace(dict(zip(signs, chosen, strict=True))).evalf(), dtype=complex)
        radius = max(radius, float(np.abs(np.linalg.eigvals(matrix)).max()))
    return radius


@functools.cache
def _iteration_jacobian(scheme: Scheme) -> tuple[sympy.Matrix, tuple[sympy.Symbol, ...]]:
    """The Jacobian of an implicit step's map in its guess, each function ``f`` linearized to
    ``lambda_f*u`` (a symbol each, so that ``f(f(u))`` is ``lambda_f**2*u``), and those symbols."""
    unknowns = scheme.implicit_unknowns
    guesses = [sympy.Dummy(f"guess_{i}") for i in range(len(unknowns))]
    signs = {f.name: sympy.Symbol(f"lambda_{f.name}") for f in scheme.functions}
    computed: dict[sympy.Symbol, sympy.Expr] = {}
    for eq in scheme.steps:
        reads = {u: g for u, g in zip(unknowns, guesses, strict=True) if u not in computed}
        computed[eq.target] = linearize(eq.expr, signs).xreplace({**reads, **computed})
    return sympy.Matrix([computed[u] for u in unknowns]).jacobian(guesses), tuple(signs.values())


def solve_step(scheme: Scheme, transform=lambda e: e) -> dict[sympy.Symbol, sympy.Expr]:
    """Stage and new values of an explicit step in terms of the old values, after ``transform`` of
    each right-hand side: substituted in order."""
    values: dict[sympy.Symbol, sympy.Expr] = {}
    for eq in scheme.steps:
        values[eq.target] = sympy.expand(transform(eq.expr).xreplace(values))
    return values


def _implicit_derivatives(scheme: Scheme, transform) -> dict[sympy.Symbol, list[sympy.Expr]]:
    """For each stage and new value of an implicit step (linear after ``transform``), its
    derivatives with respect to the state vector: ``A u = B s`` solved for ``U = A**-1 B`` with the
    columns of ``B`` as right-hand sides, so that no solution is ever differentiated.

    Solved over the field of the coefficients (rational functions of lambda, h and the other
    parameters, with algebraic numbers where the scheme has them) by fraction-free elimination over
    the polynomials (each row's denominators cleared first) and one division at the end: far faster
    than eliminating in the field of fractions, which cancels a multivariate gcd after every step."""
    unknowns = [eq.target for eq in scheme.steps]
    equations = [eq.target - transform(eq.expr) for eq in scheme.steps]
    try:
        a, b = sympy.linear_eq_to_matrix(equations, unknowns)
    except sympy.polys.polyerrors.PolynomialError:
        raise SchemeValueError(
            f"scheme {scheme.name}: the linearized implicit step is not linear in its new values"
        ) from None
    n = len(unknowns)
    system = domain_matrix(a.row_join(b.jacobian(sympy.Matrix(scheme.state_vector))))
    field = system.domain
    if field.is_Field and field.has_assoc_Ring and not field.is_EX:
        _, system = system.clear_denoms_rowwise(convert=True)
    matrix, rhs = system[:, :n], system[:, n:]
    try:
        numerators, denominator = matrix.solve_den(rhs)
    except sympy.polys.matrices.exceptions.DMNonInvertibleMatrixError:
        raise SchemeValueError(
            f"scheme {scheme.name}: the implicit step has no unique linear solution"
        ) from None
    ring = system.domain
    denominator = field.convert_from(denominator, ring)
    rows = numerators.to_list()
    return {
        u: [field.to_sympy(field.convert_from(x, ring) / denominator) for x in row]
        for u, row in zip(unknowns, rows, strict=True)
    }


def next_state_vector(scheme: Scheme, values: dict[sympy.Symbol, sympy.Expr]) -> list[sympy.Expr]:
    """The state vector one step later, in the order of ``scheme.state_vector``: the history shifts."""
    new = []
    for symbol in scheme.state_vector:
        state, offset = parse_value(symbol)
        new.append(values[value(state, 1)] if offset == 0 else value(state, offset + 1))
    return new


def amplification_matrix(scheme: Scheme, lam: sympy.Expr | Mapping[str, sympy.Expr] = LAMBDA) -> sympy.Matrix:
    """``M(lambda)``: the Jacobian of the linearized step on ``scheme.state_vector`` (with a mapping,
    each function linearized with its own lambda)."""
    old = sympy.Matrix(scheme.state_vector)
    if scheme.is_explicit:
        values = solve_step(scheme, lambda e: linearize(e, lam))
        matrix = sympy.Matrix(next_state_vector(scheme, values)).jacobian(old)
    else:
        derivatives = _implicit_derivatives(scheme, lambda e: linearize(e, lam))
        position = {symbol: k for k, symbol in enumerate(scheme.state_vector)}
        rows = []
        for symbol in scheme.state_vector:
            state, offset = parse_value(symbol)
            if offset == 0:
                rows.append(derivatives[value(state, 1)])
            else:  # history shifts: x[n-1] <- x[n]
                rows.append(
                    [sympy.Integer(int(k == position[value(state, offset + 1)])) for k in range(len(old))]
                )
        matrix = sympy.Matrix(rows)
    return matrix.applyfunc(sympy.factor_terms)


def deflate(matrix: sympy.Matrix) -> sympy.Matrix:
    """``matrix`` without the states whose old value the step never reads (a zero column, such as
    the stages of a Runge-Kutta method written as states), repeatedly: each removal takes out one
    eigenvalue 0, which never decides stability, and leaves the other eigenvalues and their Jordan
    blocks as they were (the matrix is block triangular in that state)."""
    while True:
        keep = [j for j in range(matrix.cols) if any(not e.is_zero for e in matrix.col(j))]
        if len(keep) == matrix.cols or not keep:
            return matrix
        matrix = matrix.extract(keep, keep)


def step_scaling(scheme: Scheme, charpoly: sympy.Expr) -> tuple[sympy.Expr, int]:
    """``(z, k)`` where the spectrum depends on ``lambda`` only through ``z = h**k*lambda``.

    ``k = 1`` for a first-order ODE (Euler, RK4), ``k = 2`` for a second-order one (leapfrog,
    ``h**2`` scaling); ``(lambda, 0)`` when the scheme has no parameter ``h`` or no such scaling.
    """
    if scheme.step_param is None:
        return LAMBDA, 0
    h = scheme.step_param.symbol
    z = sympy.Symbol("z")
    for k in (1, 2):
        scaled = sympy.expand(charpoly.subs(LAMBDA, z / h**k))
        if h not in scaled.free_symbols:
            return h**k * LAMBDA, k
    return LAMBDA, 0


# ---------------------------------------------------------------------------------------------------
# The spectrum, exactly at one point and in floating point along lines


@dataclass(frozen=True)
class Spectrum:
    """The eigenvalues of a constant matrix (each distinct one once), with the size of its largest
    Jordan block and where it lies: -1 inside the unit circle, 0 on it, 1 outside."""

    eigenvalues: tuple[complex, ...]
    jordan_block: tuple[int, ...]
    position: tuple[int, ...] = ()

    @property
    def radius(self) -> float:
        return max((abs(e) for e in self.eigenvalues), default=0.0)


# Precision of the root finding: roots are computed to DIGITS digits, and a modulus within
# 10**-CIRCLE_DIGITS of 1 is on the unit circle.
DIGITS = 60
CIRCLE_DIGITS = 40


def exact_spectrum(matrix: sympy.Matrix) -> Spectrum:
    """Eigenvalues and Jordan block sizes of a constant matrix.

    The characteristic polynomial is computed exactly over the field of the entries (the rationals,
    or the algebraic numbers they generate, such as ``i`` for a point of the imaginary axis) and
    split into its square-free parts; a part whose roots are repeated is factored into irreducible
    factors ``g``, whose roots share one Jordan structure: the largest block is the smallest ``k``
    with ``rank(g(M)**k) = n - m deg g`` (``m``: the multiplicity), a rank over that field. No
    eigenvalue is ever written in radicals; the roots themselves are located to 60 digits.
    """
    from sympy.polys.matrices import DomainMatrix

    n = matrix.shape[0]
    domain, entries = field_of(list(matrix))
    dm = DomainMatrix([entries[i * n : (i + 1) * n] for i in range(n)], (n, n), domain)
    charpoly = sympy.Poly(dm.charpoly(), ZETA, domain=domain)
    factors = []
    for part, multiplicity in charpoly.sqf_list()[1]:
        if multiplicity == 1:
            factors.append((part, 1))
            continue
        try:
            factors += [(g, multiplicity) for g, _ in part.factor_list()[1]]
        except (NotImplementedError, sympy.polys.polyerrors.DomainError):
            factors.append((part, multiplicity))  # one block size for all its roots: the largest
    values, blocks, positions = [], [], []
    identity = DomainMatrix.eye(n, domain)
    for factor, multiplicity in factors:
        block = 1
        if multiplicity > 1:
            at_matrix = DomainMatrix.zeros((n, n), domain)
            for c in factor.all_coeffs():  # Horner: g(M)
                at_matrix = at_matrix * dm + identity * domain.convert(c)
            power, target = at_matrix, n - multiplicity * factor.degree()
            while power.rank() > target and block < multiplicity:
                power, block = power * at_matrix, block + 1
        for root in _roots(factor):
            # at the roots' precision: at mpmath's default 15 digits, 1 + 1e-30 is on the circle
            with mpmath.workdps(DIGITS):
                modulus = abs(root)
                on_circle = abs(modulus - 1) <= mpmath.mpf(10) ** -CIRCLE_DIGITS
                outside = modulus > 1
            values.append(complex(root))
            blocks.append(block)
            positions.append(0 if on_circle else (1 if outside else -1))
    return Spectrum(tuple(values), tuple(blocks), tuple(positions))


def exact_det(matrix: sympy.Matrix) -> sympy.Expr:
    """The determinant of a constant matrix, exactly, over the field of its entries."""
    from sympy.polys.matrices import DomainMatrix

    n = matrix.shape[0]
    domain, entries = field_of(list(matrix))
    dm = DomainMatrix([entries[i * n : (i + 1) * n] for i in range(n)], (n, n), domain)
    return domain.to_sympy(dm.det())


def _roots(factor: sympy.Poly) -> list:
    """The roots of a square-free polynomial, to DIGITS digits (mpmath numbers)."""
    with mpmath.workdps(DIGITS):
        coefficients = [
            mpmath.mpmathify(sympy.N(factor.domain.to_sympy(c), DIGITS + 10)) for c in factor.rep.to_list()
        ]
        if len(coefficients) == 2:
            return [-coefficients[1] / coefficients[0]]
        return list(mpmath.polyroots(coefficients, maxsteps=400, extraprec=4 * DIGITS))


def is_power_bounded(spectrum: Spectrum, ode_order: int = 1) -> bool:
    """Whether a constant matrix's powers stay bounded: no eigenvalue outside the unit circle; on it,
    Jordan blocks of size 1, except a block of size 2 at zeta = 1 for a second-order ODE (whose
    solutions grow linearly, as y'' = 0 allows)."""
    for eig, block, position in zip(
        spectrum.eigenvalues, spectrum.jordan_block, spectrum.position, strict=True
    ):
        if position > 0:
            return False
        if position == 0:
            allowed = 2 if ode_order == 2 and abs(eig - 1) <= 1e-12 else 1
            if block > allowed:
                return False
    return True


class NumericSpectrum:
    """``M(lambda)`` at fixed parameter values, its entries as numpy rational functions of lambda,
    for fast evaluation at many points (the region plot, trained-network spectra)."""

    def __init__(self, matrix: sympy.Matrix):
        self.n = matrix.shape[0]
        self.entries = [[_rational_coeffs(matrix[i, j]) for j in range(self.n)] for i in range(self.n)]

    def matrices(self, lam: np.ndarray) -> np.ndarray:
        lam = np.asarray(lam, dtype=complex)
        out = np.empty((*lam.shape, self.n, self.n), dtype=complex)
        with np.errstate(divide="ignore", invalid="ignore"):
            for i in range(self.n):
                for j in range(self.n):
                    num, den = self.entries[i][j]
                    out[..., i, j] = np.polyval(num, lam) / np.polyval(den, lam)
        return out

    def radius(self, lam: np.ndarray) -> np.ndarray:
        matrices = self.matrices(lam)
        finite = np.isfinite(matrices).all(axis=(-2, -1))
        radius = np.full(matrices.shape[:-2], np.inf)
        if finite.any():
            radius[finite] = np.abs(np.linalg.eigvals(matrices[finite])).max(axis=-1)
        return radius


def _rational_coeffs(expr: sympy.Expr) -> tuple[np.ndarray, np.ndarray]:
    num, den = sympy.fraction(sympy.cancel(sympy.together(expr)))
    out = []
    for part in (num, den):
        poly = sympy.Poly(sympy.expand(part), LAMBDA)
        if poly.free_symbols - {LAMBDA}:
            raise SchemeValueError(f"cannot evaluate {expr}: unknown symbols {poly.free_symbols - {LAMBDA}}")
        out.append(np.array([complex(c) for c in poly.all_coeffs()], dtype=complex))
    return out[0], out[1]


_T = sympy.Symbol("t", real=True)


def boundary_candidates(
    charpoly: sympy.Expr, direction: complex
) -> list[tuple[sympy.Rational, sympy.Rational]]:
    """The real ``t`` at which the stability of ``lambda = t*direction`` can change, each as a
    rational interval ``(low, high)`` that isolates it (``low == high`` for a rational one), sorted
    and disjoint.

    Stability changes only where a root of ``P(zeta)`` meets the unit circle, where roots collide,
    or where the degree drops (a root escapes to infinity). A root on the circle is a common root of
    ``P`` and its conjugate reciprocal ``P*(zeta) = zeta**n conj(P(1/conj(zeta)))``, so the
    candidates are the real roots of their resultant, of the discriminant and of the leading
    coefficient. When ``P`` and ``P*`` share a factor for every ``t`` (roots that stay on the circle,
    as in leapfrog) that factor is divided out first; its roots move only through collisions.
    """
    num = sympy.fraction(sympy.together(charpoly))[0]
    if sympy.degree(num, ZETA) == 1 and num.free_symbols <= {ZETA, LAMBDA} and not num.has(sympy.I):
        return _merge(sorted(_one_step_candidates(num, direction)))
    lam = {1: _T, -1: -_T, 1j: sympy.I * _T, -1j: -sympy.I * _T}[direction]
    # The coefficients in zeta as expressions (a Poly would place them in an algebraic field of its
    # own choosing, whose elements sympy cannot conjugate).
    coeffs = sympy.Poly(sympy.expand(num.subs(LAMBDA, lam)), ZETA, domain=sympy.EX).all_coeffs()
    coeffs = [sympy.expand(c) for c in coeffs]
    # Polynomials in (zeta, t) over the field of the coefficients (rationals, with i and the
    # scheme's algebraic numbers adjoined): exact, and far faster than sympy's expression domain.
    n = len(coeffs) - 1

    numbers = [*coeffs, *(sympy.conjugate(c) for c in coeffs)]  # one field for P and P*

    def in_zeta_t(coefficients) -> sympy.Poly:
        expr = sympy.expand(sum(c * ZETA ** (len(coefficients) - 1 - k) for k, c in enumerate(coefficients)))
        return field_poly(expr, ZETA, _T, numbers=numbers)

    poly = in_zeta_t(coeffs)
    star = in_zeta_t([sympy.conjugate(c) for c in reversed(coeffs)])
    common = poly.gcd(star)
    moving = poly.quo(common) if common.degree(ZETA) > 0 else poly
    moving_coeffs = sympy.Poly(moving.as_expr(), ZETA).all_coeffs()
    moving_star = in_zeta_t([sympy.conjugate(c) for c in reversed(moving_coeffs)])
    polys_in_t = [coeffs[0]]
    if moving.degree(ZETA) > 0:
        polys_in_t.append(moving.resultant(moving_star).as_expr())
    if n > 1:
        polys_in_t.append(poly.discriminant().as_expr())
    intervals = [interval for expr in polys_in_t for interval in _real_roots(sympy.expand(expr))]
    return _merge(sorted(intervals))


def _one_step_candidates(num: sympy.Expr, direction: complex) -> list[tuple]:
    """The candidates of a one-step method of one state (after deflation), ``a(lambda)*zeta + b(lambda)``
    with real coefficients: ``|R| = |b/a| = 1`` where ``|b|**2 - |a|**2`` vanishes, and the degree
    drops where ``a`` does. On the imaginary axis ``a(i*t) = a_even(t) + i*a_odd(t)``, so
    ``|a|**2 = a_even**2 + a_odd**2``: every polynomial stays over the real field of the scheme's
    numbers (no ``i`` adjoined, which doubles the degree of the field and slows every operation)."""
    p = field_poly(num, ZETA, LAMBDA)
    field = p.domain
    a, b = {}, {}
    for (i, j), c in p.as_dict(native=True).items():
        (a if i == 1 else b)[j] = c

    def poly(coefficients: dict[int, object]) -> sympy.Poly:
        return sympy.Poly.from_dict({(j,): c for j, c in coefficients.items()}, _T, domain=field)

    sign = -1 if direction in (-1, -1j) else 1
    if direction in (1, -1):
        along = {name: poly({j: c * sign**j for j, c in part.items()}) for name, part in (("a", a), ("b", b))}
        polys = [along["a"], along["b"] ** 2 - along["a"] ** 2]
    else:

        def halves(part):  # q(i*t) = even(t) + i*odd(t)
            even = poly({j: c * (-1) ** (j // 2) for j, c in part.items() if j % 2 == 0})
            odd = poly({j: c * (-1) ** (j // 2) for j, c in part.items() if j % 2 == 1})
            return even, odd

        (a_even, a_odd), (b_even, b_odd) = halves(a), halves(b)
        polys = [a_even.gcd(a_odd), b_even**2 + b_odd**2 - a_even**2 - a_odd**2]
    return [interval for g in polys for interval in _isolate(g)]


def _merge(intervals: list[tuple]) -> list[tuple]:
    """Sorted intervals with the overlapping ones joined (one candidate, or close ones together:
    a probe is only ever taken between the joined intervals)."""
    merged: list[list] = []
    for low, high in intervals:
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    return [(low, high) for low, high in merged]


def _real_roots(expr: sympy.Expr) -> list[tuple[sympy.Rational, sympy.Rational]]:
    """Isolating rational intervals of the real roots in t of an expression that may have complex
    coefficients, each refined to a relative width of 1e-16: exact isolation over the rationals
    (sympy's Vincent-Akritas-Strzebonski), through the norm for algebraic coefficients (a rational
    polynomial with these roots among its own); to 60 digits for any other number."""
    real, imag = (sympy.expand(part) for part in expr.as_real_imag())
    parts = [p for p in (real, imag) if not p.is_zero]
    if not parts:
        return []
    g = field_poly(parts[0], _T, numbers=parts)
    for p in parts[1:]:
        g = g.gcd(field_poly(p, _T, numbers=parts))
    if g.degree() <= 0:
        return []
    if g.domain.is_AlgebraicField or g.domain.is_QQ or g.domain.is_ZZ:
        return _isolate(g)
    return _numeric_real_roots(g)


def _isolate(g: sympy.Poly) -> list[tuple[sympy.Rational, sympy.Rational]]:
    """Isolating rational intervals of the real roots of ``g`` (over the rationals, or a number
    field through the norm), refined to a relative width of 1e-16."""
    if g.is_zero or g.degree() <= 0:
        return []
    if not (g.domain.is_AlgebraicField or g.domain.is_QQ or g.domain.is_ZZ):
        return _numeric_real_roots(g)  # numbers outside any number field (exp(-1), tanh(1/2))
    if g.domain.is_AlgebraicField:
        g = g.norm()
    g = g.sqf_part()
    out = []
    for (low, high), _ in g.intervals():
        if low != high:
            width = max(abs(low), abs(high), 1) * sympy.Rational(1, 10**16)
            low, high = g.refine_root(low, high, eps=width)
        out.append((sympy.Rational(low), sympy.Rational(high)))
    return out


def _numeric_real_roots(g: sympy.Poly) -> list[tuple[sympy.Rational, sympy.Rational]]:
    """The real roots of a polynomial with numbers outside any number field (``exp(1/20)``,
    ``cos(1/10)``), to 60 digits. Such numbers can be equal without being spelled alike (sympy
    does not reduce ``sin(a)**2 + cos(a)**2``), so a coefficient that vanishes to 60 digits against
    the size of its terms is taken as 0: a polynomial that vanishes everywhere gives no candidate
    (its roots stay on the circle, as where P and P* share a factor), and a zero constant term is
    a root at 0 exactly (a scheme's lambda = 0 boundary), not the 5e-31 that root finding makes."""
    coefficients = [c if not _negligible(c) else sympy.Integer(0) for c in g.all_coeffs()]
    while coefficients and coefficients[0] == 0:
        coefficients.pop(0)
    if len(coefficients) <= 1:
        return []
    exact = []
    if coefficients[-1] == 0:
        exact.append((sympy.Integer(0), sympy.Integer(0)))
        while coefficients[-1] == 0:
            coefficients.pop()
    if len(coefficients) <= 1:
        return exact
    return exact + _numeric_nonzero_roots(sympy.Poly(coefficients, g.gen, domain=sympy.EX))


def _negligible(c) -> bool:
    """Whether ``c`` vanishes to ``DIGITS`` digits relative to the sum of its terms' sizes."""
    c = sympy.expand(sympy.sympify(c))
    if c == 0:
        return True
    size = sum(abs(sympy.N(term, DIGITS + 10)) for term in sympy.Add.make_args(c))
    return abs(sympy.N(c, DIGITS + 10)) <= size * sympy.Float(10) ** -DIGITS


def _numeric_nonzero_roots(g: sympy.Poly) -> list[tuple[sympy.Rational, sympy.Rational]]:
    with mpmath.workdps(DIGITS):
        coefficients = [mpmath.mpmathify(sympy.N(c, DIGITS + 10)) for c in g.all_coeffs()]
        roots = mpmath.polyroots(coefficients, maxsteps=400, extraprec=4 * DIGITS)
        out = []
        for r in roots:
            if abs(r.imag) <= mpmath.mpf(10) ** -30:
                centre = sympy.Rational(str(r.real))
                width = max(abs(centre), 1) * sympy.Rational(1, 10**30)
                out.append((centre - width, centre + width))
        return out


def stable_at(matrix: sympy.Matrix, lam: sympy.Expr) -> bool:
    """Whether ``M(lam)`` is power-bounded, decided on the exact characteristic polynomial (see
    :func:`exact_spectrum`); a repeated eigenvalue on the unit circle must not be defective."""
    return is_power_bounded(exact_spectrum(matrix.subs(LAMBDA, lam)), ode_order=1)


def stable_interval(
    matrix: sympy.Matrix, charpoly: sympy.Expr, direction: complex
) -> tuple[float | None, bool]:
    """``(t, closed)``: the largest ``t >= 0`` with ``lambda = s*direction`` stable for every ``s``
    in ``[0, t)``, given that ``lambda = 0`` is stable, and whether ``t`` itself is stable; ``(None,
    True)`` when there is no bound. ``matrix`` is ``M(lambda)`` at the parameters' values.

    Stability can change only at the candidates of :func:`boundary_candidates`; between two of them
    it is decided at one rational point, exactly (:func:`stable_at`)."""
    sign = 1
    if direction in (-1, -1j):
        sign, direction = -1, -direction
    unit = sympy.I if direction == 1j else sympy.Integer(1)
    cuts = boundary_candidates(charpoly, direction)
    if sign < 0:
        cuts = [(-high, -low) for low, high in reversed(cuts)]
    cuts = [(low, high) for low, high in cuts if high > 0 and not (low <= 0 <= high and high == 0)]
    previous: tuple = (sympy.Integer(0), sympy.Integer(0))
    for cut in [*cuts, None]:
        if cut is not None and cut[0] <= 0:  # an interval around 0 itself: stability at 0 is known
            previous = (sympy.Integer(0), cut[1])
            continue
        probe = (previous[1] + cut[0]) / 2 if cut is not None else 2 * previous[1] + 1
        if not stable_at(matrix, sign * probe * unit):
            end = (previous[0] + previous[1]) / 2
            closed = end == 0 or _endpoint_stable(matrix, previous, sign, unit)
            return float(end), closed
        if cut is None:
            return None, True
        previous = cut
    raise AssertionError("unreachable: the loop returns at its last probe")


def _endpoint_stable(matrix: sympy.Matrix, interval: tuple, sign: int, unit: sympy.Expr) -> bool:
    """Stability at an interval's end: exact at a rational end; at an algebraic one, decided on the
    eigenvalues to 60 digits, a repeated one on the circle counted as defective (its growth is at
    least linear there)."""
    low, high = interval
    if low == high:
        return stable_at(matrix, sign * low * unit)
    with mpmath.workdps(DIGITS):
        at = matrix.subs(LAMBDA, sign * (low + high) / 2 * unit).evalf(DIGITS + 10)
        m = mpmath.matrix(
            [[mpmath.mpc(str(sympy.re(c)), str(sympy.im(c))) for c in at.row(i)] for i in range(at.rows)]
        )
        eigenvalues = mpmath.eig(m, left=False, right=False)
        if isinstance(eigenvalues, tuple):  # mpmath returns (E, ER, EL) for some inputs
            eigenvalues = eigenvalues[0]
        if any(abs(e) > 1 + mpmath.mpf(10) ** -12 for e in eigenvalues):
            return False
        near = [e for e in eigenvalues if abs(abs(e) - 1) <= mpmath.mpf(10) ** -12]
        return all(sum(abs(e - f) <= mpmath.mpf(10) ** -8 for f in near) == 1 for e in near)
