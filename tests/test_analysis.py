"""Analysis facts against independent references: nodepy's stability polynomials, and values
derived by hand for each library scheme (DESIGN.md §3, issue 3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sympy

import odenet
from odenet.analysis.analyze import analyze
from odenet.analysis.stability import LAMBDA, ZETA
from odenet.report.analysis import verdict

nodepy_rk = pytest.importorskip("nodepy.runge_kutta_method")
nodepy_lm = pytest.importorskip("nodepy.linear_multistep_method")

h = sympy.Symbol("h", real=True)
z = sympy.Symbol("z")


def _in_z(expr):
    """An expression in lambda rewritten in z = h*lambda."""
    return sympy.expand(expr.subs(LAMBDA, z / h))


@pytest.mark.parametrize(("name", "nodepy_name"), [("euler", "FE"), ("heun", "Heun22"), ("rk4", "RK44")])
def test_runge_kutta_stability_function_matches_nodepy(name, nodepy_name):
    (entry,) = analyze(odenet.load(name)).stability.amplification_matrix
    numerator, denominator = nodepy_rk.loadRKM(nodepy_name).stability_function()
    assert list(denominator.coeffs) == [1]
    expected = sum(sympy.Rational(str(c)) * z**k for k, c in enumerate(reversed(numerator.coeffs)))
    assert _in_z(entry) == sympy.expand(expected)


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("ab2", lambda: nodepy_lm.Adams_Bashforth(2)),
        (
            "midpoint",
            lambda: nodepy_lm.LinearMultistepMethod(np.array([-1, 0, 1]), np.array([0, 2, 0])),
        ),  # y[n+1] = y[n-1] + 2h f[n]
    ],
)
def test_multistep_characteristic_polynomial_matches_nodepy(name, method):
    charpoly = analyze(odenet.load(name)).stability.characteristic_polynomial
    rho, sigma = method().characteristic_polynomials()
    as_sympy = lambda p: sum(sympy.Rational(str(c)) * ZETA**k for k, c in enumerate(reversed(p.coeffs)))  # noqa: E731
    expected = as_sympy(rho) - z * as_sympy(sigma)
    assert sympy.expand(_in_z(charpoly) - expected) == 0


HAND = {
    # name: (det M, the variable, real interval in it at the defaults, imaginary interval, the
    #        parameters it depends on, kind, conditions, volume preserving, backward amplification)
    "euler": ("h*lambda + 1", "h*lambda", [-2, 0], [0, 0], {}, "fixed-point", [], False, 1.0),
    "heun": (
        "(h**2*lambda**2 + 2*h*lambda + 2)/2",
        "h*lambda",
        [-2, 0],
        [0, 0],
        {},
        "fixed-point",
        [],
        False,
        1.0,
    ),
    "leapfrog": ("1", "h**2*lambda", [0, 4], [0, 0], {}, "explicit", [], True, 1.0),
    "hamiltonian": ("1", "h*lambda", [-2, 2], [0, 0], {}, "explicit", [], True, 1.0),
    # the eigenvalue -1 at lambda = -2*(1 + gamma)/(1 - gamma) = -38
    "momentum": (
        "gamma",
        "lambda",
        [-38, 0],
        [0, 0],
        {"gamma": 0.9},
        "explicit",
        ["gamma != 0"],
        False,
        1 / 0.9,
    ),
    "lm_resnet": ("-k", "h*lambda", [-1, 0], [0, 0], {"k": 0.5}, "explicit", ["k != 0"], False, 2.0),
    "reversible_heun": ("-1", "h*lambda", [0, 0], [-1, 1], {}, "explicit", [], True, 1.0),
    "backward_euler": (
        "-1/(h*lambda - 1)",
        "h*lambda",
        [None, 0],
        [None, None],
        {},
        "explicit",
        [],
        False,
        1.0,
    ),
    "revnet": ("1", "lambda", [0, 0], [-2, 2], {}, "explicit", [], True, 1.0),
    "midpoint": ("-1", "h*lambda", [0, 0], [-1, 1], {}, "explicit", [], True, 1.0),
    "verlet": ("1", "h**2*lambda", [-4, 0], [0, 0], {}, "explicit", [], True, 1.0),
    "ab2": ("h*lambda/2", "h*lambda", [-1, 0], [0, 0], {}, "none", [], False, None),
    "rk4": (
        "(h**4*lambda**4 + 4*h**3*lambda**3 + 12*h**2*lambda**2 + 24*h*lambda + 24)/24",
        "h*lambda",
        [-2.78529356341, 0],
        [-2 * math.sqrt(2), 2 * math.sqrt(2)],
        {},
        "fixed-point",
        [],
        False,
        1.0,
    ),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_derived_facts(name):
    det, variable, real, imag, at, kind, conditions, volume, amplification = HAND[name]
    analysis = analyze(odenet.load(name))
    facts = analysis.to_json()
    stability, reversibility = facts["stability"], facts["reversibility"]
    assert stability["det"] == det
    assert stability["variable"] == analysis.stability.variable_text == variable
    assert stability["at"] == at
    for got, python, expected in (
        (stability["real_interval"], analysis.stability.real_interval, real),
        (stability["imag_interval"], analysis.stability.imag_interval, imag),
    ):
        assert got == list(python)  # Python and JSON give the same numbers
        assert [end is None for end in got] == [end is None for end in expected]
        assert [e for e in got if e is not None] == pytest.approx(
            [e for e in expected if e is not None], rel=1e-9
        )
    assert stability["zero_stable"] is True
    assert (reversibility["kind"], reversibility["conditions"]) == (kind, conditions)
    assert reversibility["volume_preserving"] is volume
    assert reversibility["backward_amplification"] == pytest.approx(amplification)


def test_every_python_stability_field_has_its_json_name():
    """Python and JSON name the facts alike (real_closed was real_interval_closed in JSON)."""
    a = analyze(odenet.load("leapfrog"))
    for name in a.to_json()["stability"]:
        if name not in ("amplification_matrix", "characteristic_polynomial", "variable"):
            assert hasattr(a.stability, name), name
    assert a.stability.real_interval_closed == (True, False)  # h**2*lambda = 4: a double root at -1
    assert a.to_json()["stability"]["real_interval_closed"] == [True, False]


def test_exact_ends_are_exact():
    """An end that is exactly 0 is 0 in every unit, even for numbers outside any number field
    (exp(-c*h/2), cos(w*h)): the damped kick-drift-kick was 'stable for λ in [-395.1, 5e-31]' and
    'i·[-5e-31, 5e-31]'; a scaled end is exact too (400 times h**2 = 1/100 is 4)."""
    from helpers import USER

    damped = analyze(USER["damped_kdk"])
    assert damped.stability.real_interval[1] == 0 and damped.stability.imag_interval == (0.0, 0.0)
    assert dict(damped.stability.at) == {"h": sympy.Rational(1, 10), "c": sympy.Rational(1, 2)}
    assert verdict(damped)[0].endswith("on the imaginary axis only at λ = 0 (at h = 0.1, c = 0.5)")
    assert damped.order == 2  # exp(-c*h/2) expanded in h, as its Taylor truncation is
    rotation = analyze(USER["rotation"])
    assert rotation.stability.imag_interval == (0.0, 0.0)
    # its inverse divides by sin(h*w)**2 + cos(h*w)**2, which is 1: no condition but w != 0
    assert rotation.to_json()["reversibility"]["conditions"] == ["w != 0"]
    leapfrog = analyze(odenet.load("leapfrog"), params={"h": 0.3}).stability
    assert leapfrog.real_interval == (0.0, 4.0)  # in h**2*lambda, whatever h


def test_stability_interval_endpoints_are_on_the_boundary():
    """Just inside an end the spectral radius is <= 1, just outside it is > 1 (RK4, hamiltonian)."""
    for name in ("rk4", "hamiltonian", "momentum", "leapfrog"):
        stability = analyze(odenet.load(name)).stability
        for end in stability.real_interval:
            if end:
                lam = end / stability.scale  # the interval is in the variable; radius takes lambda
                assert stability.radius([lam * (1 - 1e-6)])[0] <= 1 + 1e-9
                assert stability.radius([lam * (1 + 1e-6)])[0] > 1 + 1e-9


def test_lm_resnet_zero_stable_iff_k_in_minus_one_to_one():
    scheme = odenet.load("lm_resnet")
    # roots of the homogeneous recurrence: 1 and -k
    for k, expected in [(-1.0, False), (-0.999, True), (0.0, True), (0.5, True), (1.0, True), (1.001, False)]:
        assert analyze(scheme, params={"k": k}).stability.zero_stable is expected, k


def test_leapfrog_double_root_is_allowed_but_not_for_first_order_schemes():
    # leapfrog: zeta^2 - 2 zeta + 1 at lambda = 0, a Jordan block at 1, allowed for y'' = F(y)
    assert analyze(odenet.load("leapfrog")).stability.zero_stable
    # the same recurrence in a first-order scheme is not zero-stable: x[n+1] = 2x[n] - x[n-1] + h f(x[n])
    weak = odenet.parse("scheme weak\nstate x\nparam h = 0.1\nx[n+1] = 2*x[n] - x[n-1] + h*f(x[n])")
    assert analyze(weak).stability.zero_stable is False
    assert analyze(weak).stability.real_interval is None


def test_characteristic_polynomial_and_eigenvalues_in_closed_form():
    stability = analyze(odenet.load("leapfrog")).stability
    assert sympy.expand(stability.characteristic_polynomial - (ZETA**2 - (2 - h**2 * LAMBDA) * ZETA + 1)) == 0
    product = sympy.simplify(stability.eigenvalues[0] * stability.eigenvalues[1])
    assert product == 1
    assert analyze(odenet.load("rk4")).stability.eigenvalues is not None


def test_step_scaling_variable():
    assert analyze(odenet.load("leapfrog")).stability.variable == h**2 * LAMBDA
    assert analyze(odenet.load("rk4")).stability.variable == h * LAMBDA
    assert analyze(odenet.load("revnet")).stability.variable == LAMBDA


def test_momentum_backward_amplification_is_one_over_gamma():
    for gamma in (0.5, 0.9):
        facts = analyze(odenet.load("momentum"), params={"gamma": gamma}).to_json()
        assert facts["reversibility"]["backward_amplification"] == pytest.approx(1 / gamma)
        assert facts["stability"]["det"] == "gamma"


def test_unknown_parameter_override_is_refused():
    with pytest.raises(odenet.ConfigError, match="has no parameter 'gamma'"):
        analyze(odenet.load("euler"), params={"gamma": 1})


def test_region_radius_matches_a_direct_eigenvalue_computation():
    stability = analyze(odenet.load("reversible_heun")).stability
    lam = np.array([0.3 + 2j, -1.5, 7j])
    direct = []
    for value in lam:
        matrix = stability.amplification_matrix.subs({LAMBDA: value, h: sympy.Rational(1, 10)})
        direct.append(np.abs(np.linalg.eigvals(np.array(matrix.evalf(), dtype=complex))).max())
    assert stability.radius(lam) == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize(
    ("name", "axis", "end", "closed"),
    [
        ("leapfrog", "real", 1, False),  # h**2*lambda = 4: zeta = -1 twice, one Jordan block
        ("midpoint", "imag", 1, False),  # h*lambda = i: zeta = -i twice, one Jordan block
        ("rk4", "imag", 1, True),  # h*lambda = 2*sqrt(2) i: |R| = 1, a simple root
        ("euler", "real", 0, True),  # h*lambda = -2: R = -1, simple
    ],
)
def test_interval_ends_are_closed_only_where_the_step_is_power_bounded(name, axis, end, closed):
    """The reference: the powers of M at the end itself, computed exactly (a defective eigenvalue on
    the unit circle makes ||M**n|| grow like n)."""
    a = odenet.analyze(odenet.load(name))
    s = a.stability
    interval = s.real_interval if axis == "real" else s.imag_interval
    assert (s.real_interval_closed if axis == "real" else s.imag_interval_closed)[end] is closed
    # the interval is in the variable (h*lambda, h**2*lambda); the matrix takes lambda
    scale = s.variable.subs(sympy.Symbol("lambda"), 1).subs({p.symbol: p.default for p in a.scheme.params})
    lam = sympy.nsimplify(interval[end], [sympy.sqrt(2)]) / scale
    if axis == "imag":
        lam = sympy.I * lam
    values = {sympy.Symbol(p.name, real=True): p.default for p in a.scheme.params}
    m = s.amplification_matrix.subs(values).subs(sympy.Symbol("lambda"), lam)
    norms = [float(max(abs(sympy.N(e)) for e in (m**n))) for n in (64, 128)]
    grows = norms[1] > 1.5 * norms[0]
    assert grows is (not closed), norms


def test_decimal_coefficients_are_read_to_their_precision():
    """Tsitouras' 5(4) pair as published (17-digit decimals): order 5 to their precision, while the
    decimals as written are not even exactly consistent (their weights sum to 1 - 1.7e-16)."""
    import nodepy.runge_kutta_method as rkm

    from odenet.ir.methods import runge_kutta_text

    tsit5 = rkm.loadRKM("Tsit5")
    a = odenet.analyze(odenet.parse(runge_kutta_text("tsit5", tsit5.A, tsit5.b)))
    assert (a.order, a.accuracy.exact_order) == (5, 0)
    assert "satisfy order 0 exactly" in a.accuracy.reason
    assert tsit5.order(tol=1e-12) == 5  # nodepy agrees at a tolerance above the decimals' rounding


@pytest.mark.parametrize(
    "weight",
    ["exp(-1)", "log(2)", "sqrt(2)/2", "sin(1)", "cos(1)", "tanh(1/2)", "sigmoid(1/2)", "cos(pi/7)"],
)
def test_every_scalar_function_works_in_every_analysis(weight):
    """The second-order two-stage family b = (c, 1 - c), a21 = 1/(2(1 - c)) with a weight c written
    with each scalar function (transcendental, algebraic): order 2 for every c != 1 and the
    stability function 1 + z + z**2/2 (hand-derived), so the real interval is [-2, 0] in h*lambda
    and the imaginary one {0}; no sympy error reaches the user, with c in a parameter or inline.
    The fixed-point inverse's Lipschitz limit reads the weight too: Heun's (sqrt(3) - 1)/h at
    c = 1/2."""
    for text in (
        f"scheme w\nstate x\nparam h = 0.1\nparam c = {weight}\n"
        "k1 = f(x[n])\nk2 = f(x[n] + h/(2*(1 - c))*k1)\nx[n+1] = x[n] + h*(c*k1 + (1 - c)*k2)\n",
        f"scheme w\nstate x\nparam h = 0.1\n"
        f"k1 = f(x[n])\nk2 = f(x[n] + h/(2*(1 - {weight}))*k1)\n"
        f"x[n+1] = x[n] + h*({weight}*k1 + (1 - {weight})*k2)\n",
    ):
        a = odenet.analyze(odenet.parse(text))
        assert a.order == 2, a.accuracy.reason
        assert a.stability.real_interval == (-2.0, 0.0)
        assert a.stability.imag_interval == (0.0, 0.0)
        assert a.reversibility.kind == "fixed-point"
        assert a.reversibility.lipschitz_limit is not None and a.reversibility.lipschitz_limit > 0


def test_transcendental_coefficient_in_a_one_step_method():
    """x[n+1] = x[n] + 2h exp(-1) f(x[n]): R = 1 + 2 exp(-1) z, stable for h*lambda in
    [-e, 0] (hand-derived); exp(-1) lies in no number field, so the roots are found numerically."""
    text = "scheme t\nstate x\nparam h = 0.1\nx[n+1] = x[n] + 2*h*exp(-1)*f(x[n])\n"
    a = odenet.analyze(odenet.parse(text))
    assert a.stability.real_interval[0] == pytest.approx(-math.e, rel=1e-9)


# -- a lambda for each function -------------------------------------------------------------------

IMEX_EULER = """scheme imex_euler
state x
param h = 0.1
function f, g
x[n+1] = x[n] + h*f(x[n]) + h*g(x[n+1])
"""


def test_each_function_alone_has_its_own_intervals():
    """IMEX Euler with f(u) = a*u explicit and g(u) = b*u implicit: R = (1 + h*a)/(1 - h*b). f alone
    (b = 0): 1 + z, stable for z in [-2, 0]; g alone (a = 0): 1/(1 - z), stable for z <= 0 (and again
    for z >= 2, beyond the interval through 0) and on the whole imaginary axis."""
    a = odenet.analyze(odenet.parse(IMEX_EULER))
    alone = a.to_json()["per_function"]
    closed = {"real_interval_closed": [True, True], "imag_interval_closed": [True, True]}
    assert alone["f"] == {
        "variable": "h*lambda",
        "real_interval": [-2.0, 0.0],
        "imag_interval": [0.0, 0.0],
        **closed,
    }
    assert alone["g"] == {
        "variable": "h*lambda",
        "real_interval": [None, 0.0],
        "imag_interval": [None, None],
        **closed,
    }
    h = 0.1
    points = {"f": np.array([-1.5 / h, 0.5 / h]), "g": np.array([-1.0 / h, -3.0 / h])}
    radius = a.split.radius(points, a.params)
    np.testing.assert_allclose(radius, [0.5 / 2.0, 1.5 / 4.0], rtol=1e-12)
    assert any(line.startswith("the test equation above gives f and g one λ") for line in verdict(a))
    assert odenet.analyze(odenet.load("euler")).to_json()["per_function"] is None


def test_the_hamiltonian_network_is_stable_where_the_product_is_in_0_4():
    """y' = f(z), z' = -g(y) with f(u) = a*u, g(u) = b*u: M = [[1, h*a], [-h*b, 1 - h**2*a*b]], trace
    2 - p and det 1 with p = h**2*a*b: eigenvalues on the unit circle for 0 <= p <= 4 (a double one,
    defective, at both ends), one outside beyond. Each alone is a Jordan block: stable only at 0."""
    a = odenet.analyze(odenet.load("hamiltonian"))
    h = 0.1
    points = {"f": np.array([1.0, 1.0, -1.0]) / h, "g": np.array([2.0, 5.0, 1.0]) / h}
    radius = a.split.radius(points, a.params)
    assert radius[0] == pytest.approx(1.0, abs=1e-12)
    roots = [np.roots([1.0, p - 2, 1.0]) for p in (5.0, -1.0)]  # zeta**2 - (2 - p)*zeta + 1
    np.testing.assert_allclose(radius[1:], [np.abs(r).max() for r in roots], rtol=1e-12)
    for alone in a.split.alone.values():
        assert alone.real_interval == (0.0, 0.0) and alone.imag_interval == (0.0, 0.0)


def test_a_report_draws_the_plane_of_two_lambdas(tmp_path):
    from odenet.report.analysis import write_report

    write_report(odenet.analyze(odenet.parse(IMEX_EULER)), tmp_path)
    assert (tmp_path / "stability_split.png").read_bytes().startswith(b"\x89PNG")
    assert "## A λ for each function" in (tmp_path / "report.md").read_text()
    write_report(odenet.analyze(odenet.load("euler")), tmp_path / "euler")
    assert not (tmp_path / "euler" / "stability_split.png").exists()
