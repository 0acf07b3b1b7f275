"""odenet.analysis.fields: exact arithmetic on a scheme's numbers, against sympy's own (slow)
constructions and 50-digit evaluation."""

from __future__ import annotations

import random

import pytest
import sympy

from odenet.analysis.fields import FieldElement, domain_matrix, fast_field, number_field, poly

SQ2, SQ3, C = sympy.sqrt(2), sympy.sqrt(3), sympy.cos(sympy.pi / 18)
GENERATORS = [[SQ3], [SQ2, SQ3], [sympy.I, SQ3], [C], [SQ3, C]]


def _random_number(rng: random.Random, generators) -> sympy.Expr:
    """A random polynomial expression in the generators with small rational coefficients."""
    terms = [sympy.Rational(rng.randint(-9, 9), rng.randint(1, 9))]
    for _ in range(3):
        term = sympy.Rational(rng.randint(-9, 9), rng.randint(1, 9))
        for g in generators:
            term *= g ** rng.randint(0, 2)
        terms.append(term)
    return sympy.Add(*terms)


@pytest.mark.parametrize("generators", GENERATORS, ids=str)
def test_conversion_keeps_the_value(generators):
    rng = random.Random(0)
    numbers = [_random_number(rng, generators) for _ in range(6)]
    field, convert = number_field(numbers)
    for x in numbers:
        back = field.to_sympy(convert(x))
        assert abs(sympy.N(back - x, 50)) < sympy.Float(10) ** -45


@pytest.mark.parametrize("generators", GENERATORS, ids=str)
def test_field_element_arithmetic_equals_sympys(generators):
    """FieldElement's products and sums against sympy's algebraic-field elements (ANP)."""
    rng = random.Random(1)
    numbers = [_random_number(rng, generators) for _ in range(6)]
    field, convert = number_field(numbers)
    basis, fast = fast_field(numbers)
    for x, y in zip(numbers, reversed(numbers), strict=True):
        slow = field.to_sympy(convert(x) * convert(y) + convert(x) - convert(y))
        quick = (fast(x) * fast(y) + fast(x) - fast(y)).to_sympy()
        assert sympy.expand(slow - quick) == 0
        assert abs(complex(fast(x) ** 3) - complex(sympy.N(x**3, 30))) < 1e-9 * (
            1 + abs(complex(sympy.N(x**3)))
        )
    assert not FieldElement.rational(basis, 0) and FieldElement.rational(basis, 2) == 2


def test_domain_matrix_determinant_and_solve_against_sympy():
    h, lam = sympy.symbols("h lambda")
    r = SQ3 / 6
    a = sympy.Matrix(
        [
            [1 - h * lam / 4, -h * lam * (sympy.Rational(1, 4) - r)],
            [-h * lam * (sympy.Rational(1, 4) + r), 1 - h * lam / 4],
        ]
    )
    dm = domain_matrix(a)
    det = dm.domain.to_sympy(dm.det())
    assert sympy.simplify(det - a.det()) == 0
    assert (
        sympy.simplify(det - (1 - h * lam / 2 + h**2 * lam**2 / 12)) == 0
    )  # hand-derived (Gauss-Legendre 2)


def test_poly_equals_sympys_extension_poly():
    t, z = sympy.symbols("t zeta")
    expr = sympy.expand((SQ3 * t + C) * (z**2 - SQ3 * t * z + 1) * (t - C))
    ours = poly(expr, z, t)
    reference = sympy.Poly(expr, z, t, extension=True)
    # the fields may differ in their primitive element (cos(pi/18) alone generates sqrt(3) too):
    # the same polynomial, compared at points in 50 digits
    for point in [(sympy.Rational(1, 3), sympy.Rational(-2, 7)), (sympy.Integer(2), sympy.Rational(5, 4))]:
        at = {z: point[0], t: point[1]}
        difference = ours.as_expr().xreplace(at) - reference.as_expr().xreplace(at)
        assert abs(sympy.N(difference, 50)) < sympy.Float(10) ** -40
    assert ours.degree(z) == 2 and ours.degree(t) == 3
