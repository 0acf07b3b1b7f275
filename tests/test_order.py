"""Order of accuracy: nodepy's orders, hand-derived values, the modified equation of Lu et al., and
empirical convergence slopes on a nonlinear problem against a reference solution of the ODE written
here by hand (not taken from the analysis)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy

import odenet
from odenet.analysis.numeric import evaluate, next_state, step
from odenet.ir import parse_value, value
from odenet.ir.methods import multistep_text, runge_kutta_text

nodepy_rk = pytest.importorskip("nodepy.runge_kutta_method")
nodepy_lm = pytest.importorskip("nodepy.linear_multistep_method")


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("euler", lambda: nodepy_rk.loadRKM("FE")),
        ("heun", lambda: nodepy_rk.loadRKM("Heun22")),
        ("rk4", lambda: nodepy_rk.loadRKM("RK44")),
        ("ab2", lambda: nodepy_lm.Adams_Bashforth(2)),
        ("midpoint", lambda: nodepy_lm.LinearMultistepMethod(np.array([-1, 0, 1]), np.array([0, 2, 0]))),
    ],
)
def test_order_matches_nodepy(name, method):
    assert odenet.analyze(odenet.load(name)).order == method().order()


HAND = {
    # name: (order, the ODE it is consistent with)
    "backward_euler": (1, ("x' = f(x)",)),
    "leapfrog": (2, ("y'' = -f(y)",)),
    "verlet": (2, ("x' = v", "v' = f(x)")),
    "reversible_heun": (2, ("y' = f(y)", "z is an auxiliary (parasitic) state")),
    "lm_resnet": (1, ("u' = f(u)/(k + 1)",)),
    "ab2": (2, ("x' = f(x)", "F is an auxiliary (parasitic) state")),
    # symplectic Euler: y and z on the same grid (second order only if z is read at half steps)
    "hamiltonian": (1, ("y' = f(z)", "z' = -g(y)")),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_derived_orders_and_odes(name):
    accuracy = odenet.analyze(odenet.load(name)).accuracy
    assert (accuracy.order, accuracy.ode) == HAND[name]


def test_schemes_without_h_have_no_order():
    for name in ("momentum", "revnet"):
        accuracy = odenet.analyze(odenet.load(name)).accuracy
        assert accuracy.order is None
        assert accuracy.reason.startswith("the scheme has no step parameter h (nor one declared")


def test_inconsistent_scheme_has_no_order():
    scheme = odenet.parse("scheme bad\nstate x\nparam h = 0.1\nx[n+1] = 2*x[n] + h*f(x[n])")
    accuracy = odenet.analyze(scheme).accuracy
    assert accuracy.order is None and accuracy.reason.startswith("inconsistent")


def test_lm_resnet_modified_equation_is_lu_et_al():
    # (1 + k) u' + (1 - k) h/2 u'' = f(u)
    accuracy = odenet.analyze(odenet.load("lm_resnet")).accuracy
    assert accuracy.modified_equation == "-h*k*u''/2 + h*u''/2 + k*u' + u' - f(u) = 0"


def test_lm_resnet_with_k_one_is_second_order():
    # k = 1: u[n+1] = u[n-1] + h f(u[n]), the midpoint rule for 2u' = f(u)
    accuracy = odenet.analyze(odenet.load("lm_resnet"), params={"k": 1}).accuracy
    assert accuracy.order == 2
    assert accuracy.ode == ("u' = f(u)/(k + 1)",)  # the ODE is kept symbolic in the parameters


def test_leading_error_of_euler():
    t = sympy.Symbol("t")
    x, f, h = sympy.Function("x")(t), sympy.Function("f"), sympy.Symbol("h", real=True)
    leading = odenet.analyze(odenet.load("euler")).accuracy.leading_error
    # x(t+h) - x - h f(x) = h^2/2 x'' = h^2/2 f'(x) f(x)
    assert sympy.simplify(leading - h**2 / 2 * f(x) * sympy.diff(f(x), x)) == 0


# -- empirical convergence ---------------------------------------------------------------------


def _f(u):
    return np.sin(u) - 0.5 * u


def _rk4(rhs, y0, t_end, n=20_000):
    y, dt = np.array(y0, dtype=float), t_end / n
    for _ in range(n):
        k1 = rhs(y)
        k2 = rhs(y + dt / 2 * k1)
        k3 = rhs(y + dt / 2 * k2)
        k4 = rhs(y + dt * k3)
        y = y + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


# Each case: the ODE in first-order form (written here, not derived by odenet), its initial value,
# which component is the output, and how to build the scheme's starting vector from exact values.
K = 0.5
CASES = {
    "euler": (lambda y: _f(y), [1.0], 0),
    "heun": (lambda y: _f(y), [1.0], 0),
    "rk4": (lambda y: _f(y), [1.0], 0),
    "ab2": (lambda y: _f(y), [1.0], 0),
    "midpoint": (lambda y: _f(y), [1.0], 0),
    "reversible_heun": (lambda y: _f(y), [1.0], 0),
    "lm_resnet": (lambda y: _f(y) / (1 + K), [1.0], 0),
    "leapfrog": (lambda s: np.array([s[1], -_f(s[0])]), [1.0, 0.0], 0),  # y'' = -f(y), y'(0) = 0
    "verlet": (lambda s: np.array([s[1], _f(s[0])]), [1.0, 0.0], 0),  # x'' = f(x), v(0) = 0
    "hamiltonian": (lambda s: np.array([_f(s[1]), -np.tanh(s[0])]), [1.0, 0.5], 0),
}


def _run(name, h, t_end=1.0):
    scheme = odenet.load(name)
    rhs, y0, output = CASES[name]
    functions = {"f": _f, "g": np.tanh}
    exact_past = {lag: _rk4(rhs, y0, -lag * h, 2000) for lag in range(1, 3)}
    old = {}
    for symbol in scheme.state_vector:
        state, lag = parse_value(symbol)
        offset = -lag
        position = scheme.inputs.index(state) if state in scheme.inputs else None
        if name == "verlet" and state == "v":
            old[symbol] = 0.0
        elif position is not None:
            old[symbol] = y0[position] if offset == 0 else exact_past[offset][position]
    for eq in scheme.init:  # auxiliary states start from the scheme's own init
        if eq.target not in old:
            old[eq.target] = float(evaluate(eq.expr, old, functions))
    params = {"h": h} | ({"k": K} if name == "lm_resnet" else {})
    for _ in range(round(t_end / h)):
        old = next_state(scheme, step(scheme, old, functions, params))
    exact = _rk4(rhs, y0, t_end)
    return abs(old[value(scheme.outputs[0])] - exact[output])


# the fast set measures one of each order (1, 2 with history, 4); every case runs in the slow set
FAST = {"euler", "leapfrog", "rk4"}


@pytest.mark.parametrize(
    "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(CASES)]
)
def test_empirical_convergence_slope_matches_the_order(name):
    steps = [0.1, 0.05, 0.025, 0.0125]
    errors = [_run(name, h) for h in steps]
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert slope == pytest.approx(odenet.analyze(odenet.load(name)).order, abs=0.3), errors


# -- the modified equation ------------------------------------------------------------------------


def _modified_rhs(name):
    """``x' = f(x) - leading/h`` at f = _f, as a numpy function (the leading error in derivative form
    with x(t) and f's derivatives, from the analysis)."""
    t, u = sympy.Symbol("t"), sympy.Symbol("u")
    h = sympy.Symbol("h", real=True)
    accuracy = odenet.analyze(odenet.load(name)).accuracy
    leading = accuracy.leading_error.subs(sympy.Function("x")(t), u)
    concrete = leading.subs(sympy.Function("f"), sympy.Lambda(u, sympy.sin(u) - u / 2)).doit()
    correction = sympy.lambdify((u, h), sympy.simplify(concrete / h), "numpy")
    return accuracy.order, lambda step: lambda y: _f(y) - correction(y, step)


@pytest.mark.parametrize("name", ["euler", "heun", "rk4", "backward_euler"])
def test_modified_equation_is_followed_one_order_closer(name):
    """One step of the method from x0 against the flows of x' = f(x) and of the modified equation
    (integrated here by a fine RK4): the first differ by O(h**(p+1)), the second by O(h**(p+2))."""
    order, modified = _modified_rhs(name)
    scheme = odenet.load(name)
    x0 = 0.5  # where f'(x0) f(x0) is not small
    steps = [0.1, 0.05, 0.025]
    to_exact, to_modified = [], []
    for h in steps:
        if scheme.is_explicit:
            one = step(scheme, {value("x", 0): x0}, {"f": _f}, {"h": h})[value("x", 1)]
        else:  # backward Euler: x1 = x0 + h f(x1), solved by Newton's method here
            one = x0
            for _ in range(50):
                one -= (one - x0 - h * _f(one)) / (1 - h * (np.cos(one) - 0.5))
        to_exact.append(abs(one - _rk4(_f, [x0], h, 400)[0]))
        to_modified.append(abs(one - _rk4(modified(h), [x0], h, 400)[0]))
    slope_exact = np.polyfit(np.log(steps), np.log(to_exact), 1)[0]
    slope_modified = np.polyfit(np.log(steps), np.log(to_modified), 1)[0]
    assert slope_exact == pytest.approx(order + 1, abs=0.3), to_exact
    assert slope_modified > order + 1.7, to_modified
    assert all(m < e / 5 for m, e in zip(to_modified, to_exact, strict=True))


def test_multistep_leading_error_is_normalised_by_rho_prime_one():
    """The two-step midpoint rule y[n+1] = y[n-1] + 2h f(y[n]): residual h**3 y'''/3, rho'(1) = 2,
    so the error constant is 1/6 (C_3 / sigma(1), hand-derived) and y' = f - h**2 y'''/6."""
    t, y = sympy.Symbol("t"), sympy.Function("y")
    h, f = sympy.Symbol("h", real=True), sympy.Function("f")
    accuracy = odenet.analyze(odenet.load("midpoint")).accuracy
    third = f(y(t)) ** 2 * sympy.diff(f(y(t)), y(t), 2) + f(y(t)) * sympy.diff(f(y(t)), y(t)) ** 2
    assert sympy.expand(accuracy.leading_error - h**3 * third / 6) == 0
    assert accuracy.modified_equation.startswith("y' = ")


# -- momentum-type schemes: consistent with a rescaled ODE ------------------------------------------

MOMENTUM = {
    # name: (text, the limit ODE's factor c in x' = c*f(x), written here)
    "heavy_ball": (
        "scheme heavy_ball\nstate x, v\nparam h = 0.1\nparam gamma = 0.6\n"
        "v[n+1] = gamma*v[n] + h*f(x[n])\nx[n+1] = x[n] + v[n+1]\n",
        1 / (1 - 0.6),
    ),
    "nesterov": (
        "scheme nesterov\nstate x\nparam h = 0.1\nparam gamma = 0.5\ninit x[n-1] = x[n]\n"
        "y = x[n] + gamma*(x[n] - x[n-1])\nx[n+1] = y + h*f(y)\n",
        1 / (1 - 0.5),
    ),
    "robert_asselin": (
        "scheme robert_asselin\nstate x, xf\nparam h = 0.1\nparam nu = 0.1\ninit xf = x[n]\n"
        "x[n+1] = xf[n] + 2*h*f(x[n])\nxf[n+1] = x[n] + nu*(x[n+1] - 2*x[n] + xf[n])\n",
        1.0,
    ),
}


def _momentum_error(name: str, h: float) -> float:
    text, c = MOMENTUM[name]
    scheme = odenet.parse(text)
    x0 = 0.5
    old = {symbol: 0.0 for symbol in scheme.state_vector}
    old[value("x")] = x0
    for symbol in scheme.state_vector:
        if parse_value(symbol)[0] in ("x", "xf"):
            old[symbol] = x0
    for _ in range(round(1.0 / h)):
        old = next_state(scheme, step(scheme, old, {"f": _f}, {"h": h}))
    return abs(old[value("x")] - _rk4(lambda y: c * _f(y), [x0], 1.0)[0])


@pytest.mark.parametrize(
    "name", [n if n == "heavy_ball" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(MOMENTUM)]
)
def test_momentum_schemes_converge_to_their_rescaled_ode(name):
    """Heavy ball, Nesterov and the Robert-Asselin filter are consistent, at order 1, with
    x' = c f(x) (c written above, from the h -> 0 limit worked by hand); a numerical run converges
    to that ODE's solution at slope 1."""
    text, c = MOMENTUM[name]
    scheme = odenet.parse(text)
    analysis = odenet.analyze(scheme)
    assert analysis.order == 1
    scale = analysis.accuracy.time_scale
    assert (1.0 if scale is None else float(scale.subs({p.symbol: p.default for p in scheme.params}))) == (
        pytest.approx(c)
    )
    if scale is not None:
        assert analysis.accuracy.unscaled_ode == "x' = f(x)"
    steps = [0.02, 0.01, 0.005]
    slope = np.polyfit(np.log(steps), np.log([_momentum_error(name, h) for h in steps]), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.25)


@pytest.mark.slow
def test_order_ten_is_found_exactly():
    """Adams-Bashforth with 10 steps has order 10 and Adams-Moulton with 9 steps order 10 (k and
    k + 1 for k steps: the classical result). nodepy agrees on AB10; on AM9 its default tolerance
    (1e-10) gives 6 in floating point, 10 from 1e-8 on: the exact tree conditions settle it."""
    for name, method in (("AB10", nodepy_lm.Adams_Bashforth(10)), ("AM9", nodepy_lm.Adams_Moulton(9))):
        analysis = odenet.analyze(odenet.parse(multistep_text(name, method.alpha, method.beta)))
        assert analysis.order == 10 and not analysis.accuracy.lower_bound
        assert method.order(tol=1e-8) == 10
    assert nodepy_lm.Adams_Bashforth(10).order() == 10
    assert nodepy_lm.Adams_Moulton(9).order() == 6  # nodepy's floating-point answer, see above


def test_coupled_stages_reading_only_each_other_are_solved_together():
    """k1 = f(x + h/2 k2), k2 = f(x + h/2 k1), b = (1/2, 1/2): order 2 by hand (sum b = 1,
    sum b c = 1/2, sum b c**2 = 1/8 != 1/3), as nodepy says and as the stages-as-states form gives;
    k1's line reads only k2, which must not leave k1 at its first guess."""
    r = sympy.Rational
    a, b = [[0, r(1, 2)], [r(1, 2), 0]], [r(1, 2), r(1, 2)]
    for as_states in (False, True):
        text = runge_kutta_text("swap", a, b, stages_as_states=as_states)
        assert odenet.analyze(odenet.parse(text)).order == 2
    three = [[0, 0, r(1, 2)], [r(1, 2), 0, 0], [0, r(1, 2), 0]]
    assert odenet.analyze(odenet.parse(runge_kutta_text("cycle", three, [r(1, 3)] * 3))).order == 2
    assert nodepy_rk.RungeKuttaMethod(np.array(a, dtype=float), np.array(b, dtype=float)).order() == 2


def test_a_tiny_exact_residual_still_fails_its_condition():
    """The order-2 residual is sqrt(2) - 131836323/93222358, about -4e-17 but not 0: order 1."""
    text = (
        "scheme tiny\nstate x\nparam h = 0.1\nk1 = f(x[n])\n"
        "k2 = f(x[n] + h*(1/2 + sqrt(2) - 131836323/93222358)*k1)\nx[n+1] = x[n] + h*k2\n"
    )
    assert odenet.analyze(odenet.parse(text)).order == 1


def test_rho_prime_zero_is_not_judged_on_the_trees():
    """x[n+1] = 2x[n] - x[n-1] + h(f(x[n]) - f(x[n-1])): rho = (zeta - 1)**2, rho'(1) = 0, so it is
    no method for x' = f(x); the scalar expansion finds the second-order ODE it discretizes."""
    text = (
        "scheme flat\nstate x\nparam h = 0.1\ninit x[n-1] = x[n]\n"
        "x[n+1] = 2*x[n] - x[n-1] + h*(f(x[n]) - f(x[n-1]))\n"
    )
    accuracy = odenet.analyze(odenet.parse(text)).accuracy
    assert accuracy.ode == ("x'' = f'(x)*x'",)
    assert accuracy.leading_error is None or not accuracy.leading_error.has(sympy.zoo)
