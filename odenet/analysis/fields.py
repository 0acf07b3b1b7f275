"""Exact arithmetic on a scheme's numbers: the field they live in, and a fast way into it.

A scheme's coefficients are rationals, or algebraic numbers such as ``sqrt(15)`` or ``i``. Facts
are decided over the field the coefficients generate (``QQ``, or ``QQ`` with the algebraic numbers
adjoined), with rational functions of the symbols (``lambda``, ``h``, ...) on top where there are
symbols. sympy's own conversion into an algebraic field computes a minimal polynomial for every
number it meets, which dominated the analysis of implicit Runge-Kutta methods (seconds per
scheme); here each generator is converted once per field and every other number is rebuilt from
the generators by the field's arithmetic.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from fractions import Fraction

import sympy
from sympy.polys.domains import Domain

__all__ = [
    "ALGEBRAIC_FAILURES",
    "FieldElement",
    "algebraic_field",
    "domain_matrix",
    "fast_field",
    "field_of",
    "generators_of",
    "is_zero",
    "number_field",
    "poly",
    "to_domain",
    "vanishes",
]

ALGEBRAIC_FAILURES = (
    sympy.polys.polyerrors.CoercionFailed,
    sympy.polys.polyerrors.NotAlgebraic,
    sympy.polys.polyerrors.GeneratorsError,
    NotImplementedError,
    ValueError,
    TypeError,
)


def generators_of(numbers: Sequence[sympy.Expr]) -> frozenset:
    """The irrational atoms of ``numbers``: ``i``, powers with a fractional exponent, ``CRootOf``,
    and any other number that is not rational (``cos(pi/18)``, ``exp(1)``)."""
    found = set()
    for x in numbers:
        stack = [x]
        while stack:
            a = stack.pop()
            if a.is_Rational or a.is_Symbol:
                continue
            if a.is_Add or a.is_Mul or (a.is_Pow and a.exp.is_Integer):
                stack.extend(a.args)
            elif a.is_number:
                found.add(a)
            else:
                stack.extend(a.args)
    return frozenset(found)


@functools.lru_cache(maxsize=64)
def _number_field(generators: frozenset) -> tuple[Domain, dict]:
    """The rationals with ``generators`` adjoined and each generator in it. The primitive element
    and every generator's expression in it come from one call (sympy's own ``algebraic_field``
    discards the expressions, and recovering each by a field isomorphism took seconds)."""
    from sympy.polys.numberfields.subfield import primitive_element

    ordered = sorted(generators, key=sympy.default_sort_key)
    if len(ordered) == 1:
        field = sympy.QQ.algebraic_field(ordered[0])
        return field, {ordered[0]: field.from_sympy(ordered[0])}
    x = sympy.Dummy("x")
    minimal, coefficients, representations = primitive_element(ordered, x, ex=True, polys=True)
    representations = [sympy.Poly(list(r), x, domain=sympy.QQ) for r in representations]
    simpler = _generator_as_primitive(ordered, minimal, representations, x)
    if simpler is not None:
        return simpler
    root = sympy.Add(*(c * g for c, g in zip(coefficients, ordered, strict=True)))
    field = sympy.QQ.algebraic_field((minimal, root))
    images = {g: field(r.rep.to_list()) for g, r in zip(ordered, representations, strict=True)}
    return field, images


def _generator_as_primitive(ordered, minimal: sympy.Poly, representations, x) -> tuple[Domain, dict] | None:
    """The field with one of the generators as its primitive element, when one generates all of it
    (``cos(pi/18)`` does, ``sqrt(3) = 8*cos(pi/18)**3 - 6*cos(pi/18)`` being in it): numbers are then
    polynomials in that generator, far shorter than in sympy's ``cos(pi/18) + sqrt(3)``, and every
    later conversion and expansion is faster. Rational linear algebra on the basis of powers."""
    d = minimal.degree()
    for g, r in zip(ordered, representations, strict=True):
        powers = [sympy.Poly(1, x, domain=sympy.QQ)]
        for _ in range(d):
            powers.append((powers[-1] * r).rem(minimal))

        def column(p: sympy.Poly) -> list:
            coefficients = list(reversed(p.rep.to_list()))
            return coefficients + [sympy.QQ(0)] * (d - len(coefficients))

        basis = sympy.Matrix([column(p) for p in powers[:d]]).T  # columns: g**k in alpha's basis
        if basis.rank() < d:
            continue
        # g's minimal polynomial, g**d = sum c_k g**k, and alpha = S(g)
        c = basis.LUsolve(sympy.Matrix(column(powers[d])))
        g_minimal = sympy.Poly([1, *(-c[k] for k in reversed(range(d)))], x, domain=sympy.QQ)
        s = basis.LUsolve(sympy.Matrix(column(sympy.Poly(x, x, domain=sympy.QQ))))
        alpha = sympy.Poly(list(reversed(list(s))), x, domain=sympy.QQ)
        field = sympy.QQ.algebraic_field((g_minimal, g))
        images = {}
        for other, rep in zip(ordered, representations, strict=True):
            value = sympy.Poly(0, x, domain=sympy.QQ)
            for coefficient in rep.rep.to_list():  # Horner: rep(alpha) with alpha = S(g)
                value = (value * alpha + coefficient).rem(g_minimal)
            images[other] = field(value.rep.to_list())
        return field, images
    return None


def algebraic_field(generators: frozenset) -> Domain:
    """The rationals with ``generators`` adjoined, made once per set. Raises ``NotAlgebraic`` or
    ``CoercionFailed`` for numbers sympy cannot place in a number field."""
    return _number_field(generators)[0]


def _images(generators: frozenset) -> dict:
    return _number_field(generators)[1]


def to_domain(expr: sympy.Expr, domain: Domain, atom: Callable[[sympy.Expr], object]):
    """``expr`` as an element of ``domain``: sums, products and integer powers rebuilt with the
    domain's arithmetic, every other subexpression (a symbol, a number) by ``atom``."""
    if expr.is_Add or expr.is_Mul:
        parts = [to_domain(a, domain, atom) for a in expr.args]
        out = parts[0]
        for part in parts[1:]:
            out = out + part if expr.is_Add else out * part
        return out
    if expr.is_Pow and expr.exp.is_Integer:
        base = to_domain(expr.base, domain, atom)
        exponent = int(expr.exp)
        if exponent >= 0:
            return domain.pow(base, exponent)
        return domain.quo(domain.one, domain.pow(base, -exponent))
    return atom(expr)


def number_field(numbers: Sequence[sympy.Expr]) -> tuple[Domain, Callable[[sympy.Expr], object]]:
    """The number field of ``numbers`` (``QQ`` when they are rational) and a conversion of any
    number built from their generators into it. Raises ``NotAlgebraic`` (or another of sympy's
    errors, see ``ALGEBRAIC_FAILURES``) for numbers outside any number field sympy knows."""
    generators = generators_of(numbers)
    if not generators:
        return sympy.QQ, lambda x: sympy.QQ.from_sympy(x)
    field = algebraic_field(generators)
    images = _images(generators)

    def atom(a):
        return images[a] if a in images else field.from_sympy(a)

    return field, lambda x: to_domain(x, field, atom)


def field_of(numbers: Sequence[sympy.Expr]) -> tuple[Domain, list]:
    """The field of the exact numbers ``numbers`` (rationals, or the rationals with their algebraic
    generators adjoined) and the numbers in it. Falls back to sympy's own construction (which may
    choose its expression domain) for numbers outside any number field it knows."""
    try:
        field, convert = number_field(numbers)
        return field, [convert(x) for x in numbers]
    except ALGEBRAIC_FAILURES:
        from sympy.polys.constructor import construct_domain

        return construct_domain(list(numbers), extension=True)


def _rational_functions(entries: Sequence[sympy.Expr]) -> tuple[Domain, list]:
    """The entries in ``K(symbols)``: rational functions of their symbols over the field ``K`` of
    their numbers."""
    symbols = sorted(set().union(*(e.free_symbols for e in entries)), key=sympy.default_sort_key)
    if not symbols:
        return field_of(entries)
    try:
        base, convert = number_field(entries)
    except ALGEBRAIC_FAILURES:
        from sympy.polys.constructor import construct_domain

        return construct_domain(list(entries), field=True, extension=True)
    domain = base.frac_field(*symbols)
    gens = dict(zip(symbols, domain.gens, strict=True))

    def atom(a):
        return gens[a] if a in gens else domain.convert_from(convert(a), base)

    try:
        return domain, [to_domain(e, domain, atom) for e in entries]
    except ALGEBRAIC_FAILURES:  # a symbol under a root, say: sympy's own construction decides
        from sympy.polys.constructor import construct_domain

        return construct_domain(list(entries), field=True, extension=True)


def poly(expr: sympy.Expr, *gens: sympy.Symbol, numbers: Sequence[sympy.Expr] = ()) -> sympy.Poly:
    """``expr`` as a polynomial in ``gens`` over the field of its numbers (and of ``numbers``, to
    put several polynomials in one field): the field is made once per set of generators, and the
    coefficients converted without a minimal polynomial each (``Poly(expr, extension=True)``
    looks for a primitive element on every call: a minute for a scheme with ``cos(pi/18)``)."""
    expr = sympy.expand(expr)
    try:
        field, convert = number_field([expr, *numbers])
    except ALGEBRAIC_FAILURES:
        return sympy.Poly(expr, *gens, extension=True)
    if field is sympy.QQ:
        return sympy.Poly(expr, *gens, domain=sympy.QQ)
    ring = field.poly_ring(*gens)
    images = dict(zip(gens, ring.gens, strict=True))

    def atom(a):
        if a in images:
            return images[a]
        return ring.convert_from(convert(a), field)

    element = to_domain(expr, ring, atom) if expr != 0 else ring.zero
    return sympy.Poly.from_dict(dict(element), *gens, domain=field)


def vanishes(expr: sympy.Expr) -> bool | None:
    """Whether ``expr``, numbers and symbols without function calls, is identically zero: decided
    exactly in ``K(symbols)`` over the field ``K`` of its numbers, where ``cancel`` can leave a zero
    standing (``1/(2 - 2**(1/3)) - 2**(1/3)/(2 - 2**(1/3)) - (1 - 2**(1/3))/(2 - 2**(1/3))``).
    None where the expression is not in such a field (``exp(h)``, a root of a symbol)."""
    if expr == 0:
        return True
    symbols = sorted(expr.free_symbols, key=sympy.default_sort_key)
    try:
        base, convert = number_field([expr])
        domain = base.frac_field(*symbols) if symbols else base
        gens = dict(zip(symbols, domain.gens, strict=True)) if symbols else {}

        def atom(a):
            if a in gens:
                return gens[a]
            if a.free_symbols:
                raise sympy.polys.polyerrors.CoercionFailed(f"{a} is not a rational function")
            return domain.convert_from(convert(a), base) if symbols else convert(a)

        return not to_domain(expr, domain, atom)
    except ALGEBRAIC_FAILURES:
        return None


def is_zero(expr: sympy.Expr) -> bool | None:
    """Whether ``expr`` (numbers and symbols) is identically zero: not, at once, where its value at
    one of two exact points is not 0 to 50 digits (most differences of two spellings are not);
    then exactly by :func:`vanishes`; outside a number field, zero where ``cancel`` or ``simplify``
    finds it (``cos(h)**2 + sin(h)**2 - 1``). None where none of them tells."""
    if expr == 0:
        return True
    symbols = sorted(expr.free_symbols, key=str)
    for seed in (3141, 2718):  # exact points: 15-digit floats leave 1e-16 where the value is 0
        point = {x: sympy.Rational(seed + 1000 * i + 500 * (i % 3), 10000) for i, x in enumerate(symbols)}
        try:
            number = complex(sympy.N(expr.xreplace(point), 50))
        except (TypeError, ValueError):
            break
        if abs(number) > 1e-30:
            return False
    exact = vanishes(expr)
    if exact is not None:
        return exact
    if sympy.cancel(expr) == 0 or sympy.simplify(expr) == 0:
        return True
    return None


def domain_matrix(matrix: sympy.Matrix):
    """``matrix`` as a ``DomainMatrix`` over the field of its entries (numbers, or rational functions
    of its symbols over the field of its numbers)."""
    from sympy.polys.matrices import DomainMatrix

    rows, cols = matrix.shape
    domain, entries = _rational_functions(list(matrix))
    return DomainMatrix([entries[i * cols : (i + 1) * cols] for i in range(rows)], (rows, cols), domain)


class _Basis:
    """A number field ``QQ(alpha)`` for :class:`FieldElement`: its degree, ``alpha**k`` for
    ``k = d, ..., 2d - 2`` in the basis ``1, alpha, ..., alpha**(d-1)``, and alpha's value."""

    def __init__(self, field: Domain):
        modulus = [Fraction(int(c.numerator), int(c.denominator)) for c in field.mod.to_list()]
        lead = modulus[0]
        tail = [c / lead for c in reversed(modulus[1:])]  # alpha**d = -sum tail[i] alpha**i
        self.degree = d = len(tail)
        self.field = field
        power = [-c for c in tail]
        self.powers = [tuple(power)]
        for _ in range(d - 2):  # alpha**(k+1) = alpha * alpha**k, reduced
            top = power[-1]
            power = [-top * tail[0]] + [power[i - 1] - top * tail[i] for i in range(1, d)]
            self.powers.append(tuple(power))
        self.alpha = complex(sympy.N(field.ext.as_expr(), 30))


class FieldElement:
    """An element of a number field ``QQ(alpha)`` as Fractions on the basis ``1, alpha, ...``: the
    same numbers as sympy's algebraic-field elements, about ten times faster to multiply (a
    B-series of an implicit method with ``sqrt(6)`` in its coefficients takes tens of thousands)."""

    __slots__ = ("basis", "c")

    def __init__(self, basis: _Basis, c: tuple[Fraction, ...]):
        self.basis, self.c = basis, c

    @classmethod
    def convert(cls, basis: _Basis, element) -> FieldElement:
        """From an element of sympy's algebraic field (coefficients, highest power first)."""
        coefficients = [Fraction(int(q.numerator), int(q.denominator)) for q in reversed(element.to_list())]
        return cls(basis, tuple(coefficients + [Fraction(0)] * (basis.degree - len(coefficients))))

    @classmethod
    def rational(cls, basis: _Basis, q: Fraction) -> FieldElement:
        return cls(basis, (Fraction(q),) + (Fraction(0),) * (basis.degree - 1))

    def __add__(self, other: FieldElement) -> FieldElement:
        return FieldElement(self.basis, tuple(a + b for a, b in zip(self.c, other.c, strict=True)))

    def __sub__(self, other: FieldElement) -> FieldElement:
        return FieldElement(self.basis, tuple(a - b for a, b in zip(self.c, other.c, strict=True)))

    def __neg__(self) -> FieldElement:
        return FieldElement(self.basis, tuple(-a for a in self.c))

    def __mul__(self, other: FieldElement | int | Fraction) -> FieldElement:
        if not isinstance(other, FieldElement):
            return FieldElement(self.basis, tuple(a * other for a in self.c))
        d = self.basis.degree
        product = [Fraction(0)] * (2 * d - 1)
        for i, a in enumerate(self.c):
            if a:
                for j, b in enumerate(other.c):
                    if b:
                        product[i + j] += a * b
        out = product[:d]
        for k, high in enumerate(product[d:]):
            if high:
                for i, p in enumerate(self.basis.powers[k]):
                    out[i] += high * p
        return FieldElement(self.basis, tuple(out))

    __rmul__ = __mul__

    def __truediv__(self, other: int | Fraction) -> FieldElement:
        return FieldElement(self.basis, tuple(a / other for a in self.c))

    def __pow__(self, k: int) -> FieldElement:
        if k < 0:
            raise ValueError("FieldElement has no inverse here: only powers k >= 0")
        out = FieldElement.rational(self.basis, Fraction(1))
        for _ in range(k):
            out = out * self
        return out

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FieldElement):
            return self.c == other.c
        if isinstance(other, int | Fraction):
            return self.c[0] == other and not any(self.c[1:])
        return NotImplemented

    def __hash__(self) -> int:  # a rational element hashes as its Fraction, as it compares equal to it
        return hash(self.c[0]) if not any(self.c[1:]) else hash(self.c)

    def __bool__(self) -> bool:
        return any(self.c)

    def to_sympy(self) -> sympy.Expr:
        field = self.basis.field
        return field.to_sympy(field([sympy.QQ(a.numerator, a.denominator) for a in reversed(self.c)]))

    def __complex__(self) -> complex:
        return sum(complex(a) * self.basis.alpha**i for i, a in enumerate(self.c))


def fast_field(numbers: Sequence[sympy.Expr]):
    """``(basis, convert)``: the number field of ``numbers`` with its elements as
    :class:`FieldElement`; raises as :func:`number_field` does."""
    field, convert = number_field(numbers)
    basis = _Basis(field)
    return basis, lambda x: FieldElement.convert(basis, convert(x))
