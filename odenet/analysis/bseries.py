"""Order of accuracy by B-series: the order conditions on rooted trees, for systems of ODEs.

The scalar expansion of :mod:`odenet.analysis.order` gives the order conditions of a scalar ODE,
which are the general ones only up to order 4: from order 5 on, a Runge-Kutta method can satisfy the
scalar conditions and fail a condition on a tree (Butcher 1963). Here every value of one step is a
B-series in the elementary differentials ``F(tau)`` of ``x' = f(x)`` (``F(.) = f``,
``F([t1, ..., tm]) = f^(m)(F(t1), ..., F(tm))``), and the local truncation error is expanded tree by
tree, to any order:

* the evolving state takes the exact solution, ``x[n+j] = y(t + j h) = sum theta**|t| h**|t|
  F(t) / (sigma(t) gamma(t))`` with ``theta = j``;
* a call ``f(x + delta)``, with ``delta = sum c(t) h**|t| F(t)``, is ``sum_t h**(|t|-1) F(t) prod
  c(t_i)**k_i / k_i!`` over the trees ``t = [t_1**k_1, ...]`` (Taylor's formula, grouped by tree);
* new values of the other states (implicit stages written as states, carried values) are solved by
  fixed-point iteration, one more power of ``h`` per pass; their old values are the new values of an
  earlier step, evaluated with the exact solution shifted back in time.

The order is ``p`` when the residual of the evolving state's update has no term in ``h**q`` for
``q <= p``. Coefficients are exact (rationals, or sympy numbers such as ``sqrt(3)``); decimals are
handled by :func:`tree_order`'s tolerance.

This applies to schemes for one first-order ODE ``x' = f(x)``: one evolving state, one function
of one argument, the other states determined by the step. Anything else returns ``None``, and the
scalar expansion stands.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction

import mpmath
import sympy
from sympy.core.function import AppliedUndef

from odenet.analysis.fields import ALGEBRAIC_FAILURES, FieldElement, fast_field
from odenet.ir import Scheme, parse_value, value

__all__ = ["TreeOrder", "first_failing_pair", "symplectic_pair_failure", "tree_order", "trees"]

Tree = tuple  # a rooted tree: the sorted tuple of its children; the single node is ()


@functools.cache
def trees(order: int) -> tuple[Tree, ...]:
    """All rooted trees with ``order`` nodes, each once (children sorted)."""
    if order == 1:
        return ((),)
    found: set[Tree] = set()
    for forest in _forests(order - 1, order - 1):
        found.add(tuple(sorted(forest)))
    return tuple(sorted(found, key=lambda t: (len(t), t)))


def _forests(total: int, largest: int) -> list[tuple[Tree, ...]]:
    """Multisets of trees with ``total`` nodes in all, each tree of at most ``largest`` nodes
    (as tuples whose trees' orders do not increase, so each multiset appears once per order list)."""
    if total == 0:
        return [()]
    out = []
    for size in range(min(total, largest), 0, -1):
        for first in trees(size):
            for rest in _forests(total - size, size):
                if rest and _size(rest[0]) == size and rest[0] < first:
                    continue  # same order: keep the trees of one order sorted, so each multiset once
                out.append((first, *rest))
    return out


@functools.cache
def _size(tree: Tree) -> int:
    return 1 + sum(_size(child) for child in tree)


@functools.cache
def _gamma(tree: Tree) -> int:
    return _size(tree) * math.prod(_gamma(child) for child in tree)


@functools.cache
def _sigma(tree: Tree) -> int:
    return math.prod(_sigma(child) ** k * math.factorial(k) for child, k in Counter(tree).items())


@functools.cache
def _children(tree: Tree) -> tuple[tuple[Tree, int], ...]:
    """The distinct children of ``tree`` with their multiplicities."""
    return tuple(Counter(tree).items())


def exact_coefficient(tree: Tree, theta: int) -> Fraction:
    """The coefficient of ``h**|t| F(t)`` in ``y(t + theta h)``: ``theta**|t| / (sigma(t) gamma(t))``."""
    return Fraction(theta ** _size(tree), _sigma(tree) * _gamma(tree))


class _NotABSeriesError(Exception):
    """The scheme leaves the B-series calculus (a product of states, f of something that is not
    x + O(h), h**2 in front of f, ...): the scalar expansion is used instead."""


class _Numbers:
    """The arithmetic of the coefficients: Fractions when the scheme's numbers are rational, the
    algebraic field they generate when they are algebraic (exact either way), else 80-digit floats
    (numbers such as cos(pi/18) that sympy cannot place in a field)."""

    def __init__(self, constants: set[sympy.Expr], floats: bool = False):
        self.exact = not floats
        irrational = [c for c in constants if not c.is_Rational]
        if floats:
            self.kind = "float"
            self.convert = lambda c: float(c)
            return
        if not irrational:
            self.kind = "rational"
            self.convert = lambda c: Fraction(int(c.p), int(c.q))
            return
        try:
            basis, convert = fast_field(irrational)
            self.kind = "algebraic"
            self.convert = convert
            self.lift = lambda q: FieldElement.rational(basis, q)
        except ALGEBRAIC_FAILURES:
            self.kind = "numeric"
            self.exact = False
            self.convert = lambda c: mpmath.mpf(sympy.N(c, 70))

    def coefficient(self, q: Fraction):
        """An exact coefficient (a Fraction) in this arithmetic."""
        if self.kind == "rational":
            return q
        if self.kind == "float":
            return q.numerator / q.denominator
        if self.kind == "algebraic":
            return self.lift(q)
        return mpmath.mpf(q.numerator) / q.denominator

    def is_zero(self, x) -> bool:
        if self.kind == "float":
            return x == 0.0
        if self.kind == "numeric":
            return abs(x) <= mpmath.mpf(10) ** -45
        if self.kind == "algebraic":
            return not x
        return x == 0

    def to_sympy(self, x) -> sympy.Expr:
        if self.kind == "algebraic":
            return x.to_sympy()
        if self.kind == "rational":
            return sympy.Rational(x.numerator, x.denominator)
        return sympy.Float(x, 30)

    def magnitude(self, x) -> float:
        if self.kind == "algebraic":
            return abs(complex(x))
        return abs(float(x))


@dataclass
class _Series:
    """``x0 * x + sum c(t) h**(|t| - level) F(t)``: level 0 for values of the state, 1 for values
    of f (which carry one power of h less)."""

    level: int
    x0: object
    coefficients: dict

    def __add__(self, other: _Series) -> _Series:
        if self.level != other.level:
            if not other.coefficients and other.x0 == 0:
                return self
            if not self.coefficients and self.x0 == 0:
                return other
            raise _NotABSeriesError("a sum of a state and a function value without h")
        out = dict(self.coefficients)
        for t, c in other.coefficients.items():
            out[t] = out[t] + c if t in out else c
        return _Series(self.level, self.x0 + other.x0, out)

    def scaled(self, factor) -> _Series:
        return _Series(self.level, self.x0 * factor, {t: c * factor for t, c in self.coefficients.items()})


@dataclass(frozen=True)
class _Equation:
    target: sympy.Symbol
    expr: sympy.Expr
    is_stage: bool
    state: str | None
    coupled: bool = False  # a stage read before or in its own line (an implicit method's)


class _Step:
    """Evaluates the values of a step on B-series, truncated at ``h**power``, each on demand."""

    def __init__(self, steps, state: str, function: str, h, numbers: _Numbers, power: int):
        self.state, self.function, self.h = state, function, h
        self.equations = {eq.target: eq for eq in steps if eq.state != state}
        (self.update,) = [eq for eq in steps if eq.state == state]
        new = {t for t, eq in self.equations.items() if not eq.is_stage or eq.coupled}
        # new values read in their own step before they are computed: solved together, by iteration
        # ... and every value that reads one of those, to the closure: a coupled stage whose line
        # reads only another stage (k1 = f(x + h/2*k2), k2 = f(x + h/2*k1)) is recomputed with it
        self.coupled = {t for t, eq in self.equations.items() if eq.expr.free_symbols & new}
        while True:
            more = {t for t, eq in self.equations.items() if eq.expr.free_symbols & self.coupled}
            if more <= self.coupled:
                break
            self.coupled |= more
        self.numbers = numbers
        self.power = power
        self.truncation = power  # lowered while a coupled system's first passes run
        self.zero = numbers.coefficient(Fraction(0))
        self.one = numbers.coefficient(Fraction(1))
        self.values: dict[tuple[sympy.Symbol, int], _Series] = {}
        self.pending: set[tuple[sympy.Symbol, int]] = set()
        self.all_trees = [t for order in range(1, power + 2) for t in trees(order)]
        self.exacts: dict[int, _Series] = {}
        self.silent = False  # f taken as 0 (see scale)

    def exact(self, theta: int) -> _Series:
        if theta not in self.exacts:
            coefficients = {
                t: self.numbers.coefficient(exact_coefficient(t, theta))
                for t in self.all_trees
                if _size(t) <= self.power
            }
            self.exacts[theta] = _Series(0, self.one, coefficients)
        return self.exacts[theta]

    def call(self, argument: _Series) -> _Series:
        if self.silent:
            return _Series(1, self.zero, {})
        if argument.level != 0 or argument.x0 != self.one:
            raise _NotABSeriesError("f is evaluated away from the state")
        c = argument.coefficients
        out = {}
        for t in self.all_trees:  # by order
            if _size(t) - 1 > self.truncation:
                break
            product = self.one
            for child, k in _children(t):
                factor = c.get(child)
                if factor is None or self.numbers.is_zero(factor):
                    product = None
                    break
                product = product * factor**k / math.factorial(k) if k > 1 else product * factor
            if product is not None:
                out[t] = product
        return _Series(1, self.zero, out)

    def lookup(self, symbol: sympy.Symbol, shift: int) -> _Series:
        """A value of the step from ``n + shift``: the exact solution for the evolving state, the
        new value of an earlier step for another state's old value, else a stage or new value."""
        parsed = parse_value(symbol)
        if parsed is not None and parsed[0] == self.state:
            return self.exact(parsed[1] + shift)
        if parsed is not None and parsed[1] <= 0:
            return self.value(value(parsed[0], 1), shift + parsed[1] - 1)
        return self.value(symbol, shift)

    def value(self, target: sympy.Symbol, shift: int) -> _Series:
        key = (target, shift)
        if key in self.values:
            return self.values[key]
        if key in self.pending or shift < -64:
            raise _NotABSeriesError("a state that depends on its own past (a recurrence, not a value of x)")
        self.pending.add(key)
        if target in self.coupled:
            self.solve_coupled(shift)
        else:
            self.values[key] = self.evaluate(self.equations[target].expr, shift)
        self.pending.discard(key)
        return self.values[key]

    def solve_coupled(self, shift: int) -> None:
        """The coupled new values of one step, by fixed-point iteration from zero: each pass fixes
        one more power of h (they enter their equations multiplied by h)."""
        for target in self.coupled:
            self.values[(target, shift)] = _Series(0, self.zero, {})
        outer = self.truncation
        for passes in range(outer + 1):  # pass k is right up to h**k: truncate there
            self.truncation = passes
            for target in self.coupled:
                self.values[(target, shift)] = self.evaluate(self.equations[target].expr, shift)
        self.truncation = outer

    def evaluate(self, expr: sympy.Expr, shift: int) -> _Series:
        if isinstance(expr, sympy.Symbol):
            return self.lookup(expr, shift)
        if isinstance(expr, AppliedUndef):
            if expr.func.__name__ != self.function or len(expr.args) != 1:
                raise _NotABSeriesError("more than one function, or a function of several arguments")
            return self.call(self.evaluate(expr.args[0], shift))
        if expr.is_Add:
            terms = [self.evaluate(a, shift) for a in expr.args]
            out = terms[0]
            for term in terms[1:]:
                out = out + term
            return out
        if expr.is_Mul:
            factor, h_power, series = self.one, 0, None
            for a in expr.args:
                if a == self.h:
                    h_power += 1
                elif a.is_Pow and a.base == self.h and a.exp.is_Integer:
                    h_power += int(a.exp)
                elif a.is_number:
                    factor = factor * self.numbers.convert(a)
                elif series is None:
                    series = self.evaluate(a, shift)
                else:
                    raise _NotABSeriesError("a product of two values of the step")
            if series is None:
                raise _NotABSeriesError("a constant term")
            if h_power == 0:
                return series.scaled(factor)
            if h_power == 1 and not series.coefficients and series.x0 == self.zero:
                return _Series(0, self.zero, {})  # a coupled value's first guess
            if h_power != 1 or series.level != 1 or series.x0 != self.zero:
                raise _NotABSeriesError("h multiplies something other than values of f")
            return _Series(0, self.zero, {t: v * factor for t, v in series.coefficients.items()})
        if expr.is_number:
            if expr == 0:
                return _Series(0, self.zero, {})
            raise _NotABSeriesError("a constant term")
        raise _NotABSeriesError(f"{type(expr).__name__} of values of the step")

    def scale(self):
        """``rho'(1)``: the residual is ``rho'(1) h (x' - f(x)) + O(h**2)`` for a consistent method
        (1 for a one-step method, 2 for the two-step midpoint rule); from the update with f = 0."""
        self.silent, self.values = True, {}
        try:
            free = self.evaluate(self.update.expr, 0).coefficients.get((), self.zero)
        finally:
            self.silent, self.values = False, {}
        return self.one - free

    def residual(self) -> _Series:
        """``y(t + h)`` minus the update of the evolving state: the local truncation error."""
        return self.exact(1) + self.evaluate(self.update.expr, 0).scaled(-self.one)


@dataclass(frozen=True)
class TreeOrder:
    order: int  # the conditions hold on every tree with at most this many nodes (within tolerance)
    exact_order: int  # the same, with the coefficients as written, exactly
    lower_bound: bool  # no condition failed up to the largest order tried
    exact: bool  # the arithmetic was exact (rational or algebraic coefficients)
    failing: tuple[Tree, ...] = ()  # the trees of order + 1 whose condition fails
    # The local error's coefficient on each tree of order + 1 (exact minus the method's), as sympy
    # numbers: the leading error is h**(order+1) times their sum against the elementary differentials.
    error: tuple[tuple[Tree, sympy.Expr], ...] = ()
    scale: sympy.Expr = sympy.S.One  # rho'(1), see _Step.scale


def tree_order(
    scheme: Scheme,
    state: str,
    function: str,
    h: sympy.Symbol,
    values: dict,
    max_order: int = 12,
    decimals: int | None = None,
) -> TreeOrder | None:
    """The order of ``scheme`` for ``state' = function(state)`` from the tree conditions, up to
    ``max_order``; ``None`` when the scheme is not a method for one first-order ODE (see the module
    doc). With ``decimals`` (the scheme's coefficients are decimals of that many digits), a
    condition whose residual is below what those digits can resolve counts as met for ``order``
    (not for ``exact_order``, which takes the coefficients as written)."""
    steps = _equations(scheme, h, values)
    if [eq.state for eq in steps].count(state) != 1:
        return None
    exact_numbers = _exact_numbers(steps)
    if decimals is None:
        with mpmath.workdps(80):  # the precision of the "numeric" arithmetic (transcendental numbers)
            return _orders(steps, state, function, h, exact_numbers, None, max_order)
    # Decimals: exactly as written (a few orders suffice: they fail early), then in floating point
    # with the tolerance their digits allow.
    exact = _orders(steps, state, function, h, exact_numbers, None, min(4, max_order))
    if exact is None:
        return None
    floats = _Numbers(set(), floats=True)
    approximate = _orders(steps, state, function, h, floats, decimals, max_order)
    if approximate is None:
        return None
    exact_order = exact.order if not exact.lower_bound else approximate.order
    return replace(approximate, exact_order=exact_order, exact=False)


def _orders(steps, state, function, h, numbers: _Numbers, decimals: int | None, max_order: int):
    """The first order whose tree conditions fail. With ``decimals``, a condition on a tree of
    ``q`` nodes counts as met when its residual is below ``10**(2 - decimals) * q * m``, where ``m``
    is the same sum with every coefficient and term taken positive: what rounding each coefficient
    to that many digits can leave in it."""
    checked = 0
    for power in [p for p in (4, 6, 8, 10, 12, 16) if p < max_order] + [max_order]:
        step = _Step(steps, state, function, h, numbers, power)
        try:
            residual = step.residual()
        except _NotABSeriesError:
            return None
        if not numbers.is_zero(residual.x0):
            return None  # not consistent at h**0
        if checked == 0 and numbers.is_zero(step.scale()):
            return None  # rho'(1) = 0: not a method for x' = f(x) (the scalar expansion finds its ODE)
        magnitudes = {}
        if decimals is not None:
            absolute = _Numbers(set(), floats=True)
            absolute.convert = lambda c: abs(float(c))
            bound = _Step(steps, state, function, h, absolute, power)
            magnitudes = (bound.exact(1) + bound.evaluate(bound.update.expr, 0)).coefficients
        for q in range(checked + 1, power + 1):
            failing = []
            for t in trees(q):
                r = residual.coefficients.get(t)
                if r is None or numbers.is_zero(r):
                    continue
                if decimals is None:  # exact (or 80-digit) arithmetic: a residual that is not 0 fails
                    failing.append(t)
                    continue
                tolerance = 10.0 ** (2 - decimals) * q * magnitudes.get(t, 0.0)
                if numbers.magnitude(r) > tolerance:
                    failing.append(t)
            if failing:
                coefficients = residual.coefficients
                error = tuple((t, numbers.to_sympy(coefficients.get(t, step.zero))) for t in trees(q))
                scale = numbers.to_sympy(step.scale())
                return TreeOrder(q - 1, q - 1, False, numbers.exact, tuple(failing), error, scale)
        checked = power
    return TreeOrder(max_order, max_order, True, numbers.exact)


def symplectic_pair_failure(
    scheme: Scheme, state: str, function: str, h: sympy.Symbol, values: dict, max_size: int = 8
) -> tuple[bool, tuple[Tree, Tree] | None] | None:
    """The B-series symplecticity condition ``a(u o v) + a(v o u) = a(u) a(v)`` (Calvo and
    Sanz-Serna; necessary for a B-series method to be symplectic for every Hamiltonian system) on
    every pair of trees with at most ``max_size`` nodes in all, ``a`` the method's own B-series
    (``a(t) = sigma(t)`` times the coefficient of ``h**|t| F(t)`` in ``x[n+1]``): ``(True, None)``
    when it holds, ``(False, (u, v))`` at the first pair where it fails, None when the scheme is
    not a one-step B-series method for ``state' = function(state)`` in exact arithmetic (an update
    that reads its own new value included: its series here would be the exact solution's)."""
    steps = _equations(scheme, h, values)
    if [eq.state for eq in steps].count(state) != 1 or any(scheme.history.values()):
        return None
    if any(value(state, 1) in eq.expr.free_symbols for eq in steps):
        return None
    numbers = _exact_numbers(steps)
    if not numbers.exact:
        return None
    try:
        step = _Step(steps, state, function, h, numbers, max_size)
        series = step.evaluate(step.update.expr, 0)
    except _NotABSeriesError:
        return None
    if series.level != 0 or series.x0 != step.one:
        return None
    a = {t: c * _sigma(t) for t, c in series.coefficients.items()}
    pair = first_failing_pair(lambda t: a.get(t, step.zero), numbers.is_zero, max_size)
    return (pair is None), pair


def first_failing_pair(weight: Callable[[Tree], object], is_zero: Callable[[object], bool], max_size: int):
    """The first pair ``(u, v)`` of trees, by total size up to ``max_size``, where the B-series
    coefficients ``weight`` fail ``a(u o v) + a(v o u) = a(u) a(v)`` (``u o v``: ``v`` grafted on
    ``u``'s root); None if none does."""
    for total in range(2, max_size + 1):
        for size in range(1, total):
            for u in trees(size):
                for v in trees(total - size):
                    uv, vu = tuple(sorted((*u, v))), tuple(sorted((*v, u)))
                    if not is_zero(weight(uv) + weight(vu) - weight(u) * weight(v)):
                        return u, v
    return None


def _equations(scheme: Scheme, h: sympy.Symbol, values: dict) -> list[_Equation]:
    """The step's lines for the series, with the parameters other than ``h`` at ``values``."""
    others = {k: v for k, v in values.items() if k != h}
    return [
        _Equation(
            eq.target,
            sympy.expand(eq.expr.xreplace(others)),
            eq.is_stage,
            eq.state,
            eq.target in scheme.coupled_stages,
        )
        for eq in scheme.steps
    ]


def _exact_numbers(steps: list[_Equation]) -> _Numbers:
    """The exact arithmetic of the lines' numbers (rational or algebraic; numeric otherwise)."""
    constants = {
        a for eq in steps for a in sympy.preorder_traversal(eq.expr) if a.is_number and not a.is_Rational
    }
    return _Numbers({c for c in constants if not c.free_symbols})
