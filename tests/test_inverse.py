"""The derived inverse: step then inverse returns the states (property test), the reversed-time
convention, and the error for schemes without an explicit inverse."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy
import torch
from helpers import ALL_SCHEMES, REVERSIBLE, analysis
from hypothesis import given, settings
from hypothesis import strategies as st

import odenet
from odenet.analysis.inverse import invert
from odenet.analysis.numeric import next_state, step
from odenet.ir import value
from odenet.ir.reversal import from_reversed, to_reversed


def test_explicitly_reversible_library_schemes():
    """The analysis against the papers: these steps are known to have explicit inverses (the hand
    list is the reference here; everywhere else the tests enrol schemes from the analysis)."""
    known = ["hamiltonian", "leapfrog", "lm_resnet", "midpoint", "momentum", "reversible_heun", "revnet"]
    known += ["verlet", "backward_euler"]  # backward Euler's inverse is forward Euler's step
    kinds = {name: analysis(name).reversibility.kind for name in ALL_SCHEMES}
    assert sorted(n for n, k in kinds.items() if k == "explicit") == sorted(known)
    assert REVERSIBLE == sorted(n for n in known if n != "backward_euler")


@st.composite
def random_problem(draw):
    name = draw(st.sampled_from(REVERSIBLE))
    scheme = odenet.load(name)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    width = draw(st.integers(1, 5))
    functions = {}
    for f in scheme.functions:
        weight, bias = rng.normal(size=(width, width)), rng.normal(size=width)
        activation = draw(st.sampled_from([np.tanh, np.sin, lambda u: u**3 / (1 + u**2)]))
        functions[f.name] = lambda u, w=weight, b=bias, a=activation: a(w @ u + b)
    old = {symbol: rng.normal(size=width) for symbol in scheme.state_vector}
    params = {}
    for p in scheme.params:
        low, high = (
            (0.2, 0.95)
            if p.interval is None
            else (max(float(p.interval[0]), -0.9), min(float(p.interval[1]), 0.9))
        )
        value_ = draw(st.floats(low, high))
        params[p.name] = value_ if abs(value_) > 0.1 else 0.5  # the inverse needs gamma, k != 0
    return scheme, functions, old, params


@settings(max_examples=100, deadline=None)
@given(random_problem())
def test_step_then_inverse_is_the_identity(problem):
    scheme, functions, old, params = problem
    inverse = invert(scheme).scheme
    forward = step(scheme, old, functions, params)
    back = from_reversed(scheme, step(inverse, to_reversed(scheme, forward), functions, params))
    for symbol, expected in old.items():
        np.testing.assert_allclose(back[symbol], expected, rtol=0, atol=1e-12)


def test_inverse_of_reversible_heun_needs_the_joint_solve():
    derivation = invert(odenet.load("reversible_heun"))
    (first, z_old), (second, y_old) = derivation.solution
    h, f = sympy.Symbol("h", real=True), sympy.Function("f")
    y1, z1 = value("y", 1), value("z", 1)
    assert first == value("z") and sympy.expand(z_old - (2 * y1 - z1 - h * f(z1))) == 0
    assert second == value("y") and sympy.expand(y_old - (y1 - h / 2 * (f(z1) + f(z_old)))) == 0
    # printed in reversed time, the inverse reads its own new z as a later line's input
    assert str(derivation.scheme.updates[1]) == "y[n+1] = -h*f(z[n+1])/2 - h*f(z[n])/2 + y[n]"


def test_leapfrog_is_its_own_inverse():
    leapfrog = odenet.load("leapfrog")
    inverse = odenet.derive_inverse(leapfrog)
    assert inverse.steps == leapfrog.steps
    assert odenet.parse(str(inverse)) == inverse  # the inverse is an ordinary scheme


def test_inverse_conditions():
    assert [str(c) for c in invert(odenet.load("momentum")).conditions] == ["gamma"]
    assert [str(c) for c in invert(odenet.load("lm_resnet")).conditions] == ["k"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "euler",
            "scheme euler has no explicit inverse: the old value x[n] sits inside the call f(x[n]), "
            "and the step equations cannot be combined to remove it",
        ),
        ("rk4", "scheme rk4 has no explicit inverse: the old value x[n] sits inside the call f(x[n])"),
        ("ab2", "scheme ab2 has no explicit inverse: the old value x[n] sits inside the call f(x[n])"),
    ],
)
def test_no_explicit_inverse(name, message):
    with pytest.raises(odenet.NotReversibleError) as info:
        odenet.derive_inverse(odenet.load(name))
    assert str(info.value).startswith(message)


def test_lost_information_is_reported():
    scheme = odenet.parse("scheme drop\nstate x\nx[n+1] = f(x[n])")
    assert odenet.analyze(scheme).reversibility.kind == "none"
    dropped = odenet.parse("scheme dropped\nstate x, v\nv[n+1] = f(x[n])\nx[n+1] = x[n] + v[n+1]")
    with pytest.raises(odenet.NotReversibleError) as info:
        odenet.derive_inverse(dropped)
    assert str(info.value) == (
        "scheme dropped has no explicit inverse: the step equations do not determine v[n] "
        "(information is lost in the step)"
    )


def test_implicit_scheme_has_an_explicit_inverse():
    derivation = invert(odenet.load("backward_euler"))
    ((old, expr),) = derivation.solution
    h, f, x1 = sympy.Symbol("h", real=True), sympy.Function("f"), value("x", 1)
    assert old == value("x") and sympy.expand(expr - (x1 - h * f(x1))) == 0


def test_next_state_shifts_history():
    scheme = odenet.load("leapfrog")
    env = step(scheme, {value("y"): 2.0, value("y", -1): 1.0}, {"f": lambda u: 0 * u})
    assert next_state(scheme, env) == {value("y"): 3.0, value("y", -1): 2.0}


KDK = """scheme kdk
state x, v
param h = 0.1
function f, g
vh = v[n] + h/2*f(x[n])
x[n+1] = x[n] + h*g(vh)
v[n+1] = vh + h/2*f(x[n+1])
"""


def test_kick_drift_kick_with_a_nonlinear_drift_has_an_explicit_inverse():
    """Velocity Verlet with x' = g(v) nonlinear: substituted, g(v[n] + h/2 f(x[n])) hides both old
    values, but solving the stage as an unknown of its own frees it from the last line, then x[n],
    then v[n]. Checked by running the step and the derived inverse on random nonlinear f and g."""
    scheme = odenet.parse(KDK)
    derivation = invert(scheme)
    assert [str(u) for u, _ in derivation.solution] == ["vh", "x[n]", "v[n]"]
    assert odenet.analyze(scheme).reversibility.kind == "explicit"
    rng = np.random.default_rng(3)
    for _ in range(20):
        w1, w2 = rng.normal(size=(2, 3, 3))
        functions = {"f": lambda u, w=w1: np.sin(w @ u), "g": lambda u, w=w2: np.tanh(w @ u) + u**3}
        _assert_undone(scheme, derivation, functions, rng, atol=1e-12)


def _assert_undone(scheme, derivation, functions, rng, atol: float) -> None:
    """A step from random old values (h in [0.05, 0.5]), then the derived inverse: the old values."""
    old = {symbol: rng.normal(size=3) for symbol in scheme.state_vector}
    params = {"h": float(rng.uniform(0.05, 0.5))}
    forward = step(scheme, old, functions, params)
    back = from_reversed(scheme, step(derivation.scheme, to_reversed(scheme, forward), functions, params))
    for symbol, expected in old.items():
        np.testing.assert_allclose(back[symbol], expected, rtol=0, atol=atol)


def test_a_cancellation_inside_a_call_argument_frees_the_old_value():
    """g(h*(x[n+1] + y[n]) - h*y[n]) is g(h*x[n+1]) once expanded: y[n] = y[n+1] - g(h*x[n+1])."""
    text = (
        "scheme cancel\nstate x, y\nparam h = 0.1\nfunction f, g\nx[n+1] = x[n] + h*f(y[n])\n"
        "s = h*(x[n+1] + y[n])\ny[n+1] = y[n] + g(s - h*y[n])\n"
    )
    scheme = odenet.parse(text)
    solution = dict(invert(scheme).solution)
    h, g = sympy.Symbol("h", real=True), sympy.Function("g")
    assert sympy.expand(solution[value("y")] - (value("y", 1) - g(h * value("x", 1)))) == 0


# -- when a fixed-point inverse converges ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("x[n+1] = x[n] + h*f(x[n])", 10),  # Euler, h = 1/10: h*Lip(f) < 1
        ("x[n+1] = 1/2*x[n] + h*f(x[n])", 5),  # the inverse divides by 1/2: Lip(f) < c/h
        # Heun: the map moves by h*L + (h*L)**2/2, below 1 for h*L < sqrt(3) - 1
        ("k = f(x[n])\nx[n+1] = x[n] + h/2*(k + f(x[n] + h*k))", 10 * (3**0.5 - 1)),
        # Nesterov's velocity form, two states: A^-1 b = (0, h/gamma), the argument's gradient
        # (1, gamma): L < gamma/(h*sqrt(1 + gamma**2)), with gamma = 9/10
        (
            "param gamma = 9/10\nv[n+1] = gamma*v[n] + h*f(x[n] + gamma*v[n])\nx[n+1] = x[n] + v[n+1]",
            0.9 / (0.1 * (1 + 0.81) ** 0.5),
        ),
    ],
)
def test_lipschitz_limit_by_hand(text, limit):
    from odenet.analysis.inverse import lipschitz_limit

    states = "x, v" if "v[n+1]" in text else "x"
    scheme = odenet.parse(f"scheme s\nstate {states}\nparam h = 1/10\n{text}")
    got = lipschitz_limit(scheme, {p.symbol: p.default for p in scheme.params})
    assert got == pytest.approx(limit, rel=1e-9) and got <= limit * (1 + 1e-12)  # never rounded up
    assert odenet.analyze(scheme).reversibility.lipschitz_limit == pytest.approx(limit, rel=1e-5)


class _Linear(torch.nn.Module):
    """f(u) = lam*u: Lipschitz constant |lam|, and the bound is exact for it."""

    def __init__(self, lam: float):
        super().__init__()
        self.lam = lam

    def forward(self, u):
        return self.lam * u


@pytest.mark.usefixtures("float64_by_default")  # h = 1/10 held in float64, so the limit is 5
@pytest.mark.parametrize(("scale", "converges"), [(0.9, True), (1.1, False)])
def test_the_lipschitz_limit_is_where_the_rebuild_stops_converging(scale, converges):
    """x[n+1] = x[n]/2 + h*f(x[n]) with h = 1/10: the analysis says Lip(f) < 5. With f = lam*u
    and plain iteration, reversible mode rebuilds its inputs below the limit (gradients equal to
    autograd's) and refuses above it, naming the limit."""
    from odenet.errors import ConvergenceError

    scheme = odenet.parse("scheme c\nstate x\nparam h = 1/10\nx[n+1] = 1/2*x[n] + h*f(x[n])")
    assert odenet.analyze(scheme).reversibility.lipschitz_limit == 5
    torch.manual_seed(0)
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    f = _Linear(-5 * scale)  # negative: the iteration oscillates instead of creeping
    solver = odenet.Solver("fixed_point", max_iter=400)
    block = odenet.compile(scheme, {"f": f}, 3, "reversible", solver=solver)
    reference = odenet.compile(scheme, {"f": f}, 3)
    if not converges:
        with pytest.raises(ConvergenceError, match="Lipschitz constant is below 5 "):
            block(x).sum().backward()
        return
    (grad,) = torch.autograd.grad(block(x).square().sum(), x)
    (expected,) = torch.autograd.grad(reference(x).square().sum(), x)
    assert torch.allclose(grad, expected, rtol=1e-10, atol=1e-12)


def test_a_stage_that_cancels_leaves_the_inverse_no_function_to_call():
    """``k0 = f(x[n-1])`` and ``-h*f(x[n-1]) + h*k0`` cancel: the step is x[n+1] = x[n-1] (a drawn
    scheme of the sweep; compile raised 'function f is never called' from the derived inverse)."""
    import torch
    from torch import nn

    text = "scheme cancel\nstate x\nparam h = 1/4\nk0 = f(x[n-1])\nx[n+1] = x[n-1] - h*f(x[n-1]) + h*k0"
    scheme = odenet.parse(text)
    assert odenet.derive_inverse(scheme).functions == ()
    torch.manual_seed(0)
    blocks = [
        odenet.compile(scheme, {"f": lambda i: nn.Linear(3, 3)}, 4, memory)
        for memory in ("autograd", "reversible")
    ]
    blocks[1].load_state_dict(blocks[0].state_dict())
    x = torch.randn(2, 3, requires_grad=True)
    grads = [torch.autograd.grad(b(x).square().sum(), x)[0] for b in blocks]
    assert torch.allclose(grads[0], 2 * x.detach(), atol=1e-6) and torch.allclose(
        grads[1], grads[0], atol=1e-6
    )


STAGED = """scheme staged
state x, v
param h = 1/10
k1 = v[n] - h/4*f(x[n])
y1 = x[n] + h/2*k1
k2 = k1 - h/2*f(y1)
x[n+1] = y1 + h/2*k2
v[n+1] = k2 - h/4*f(x[n+1])
"""


def _numbers(expr: sympy.Expr, values: dict) -> sympy.Expr:
    """``expr`` with f(u) = sin(3u) + 1/3 and g(u) = cos(2u) (independent of odenet) and ``values``."""
    u = sympy.Symbol("u")
    functions = {
        "f": sympy.Lambda(u, sympy.sin(3 * u) + sympy.Rational(1, 3)),
        "g": sympy.Lambda(u, sympy.cos(2 * u)),
    }
    called = expr.replace(
        lambda e: isinstance(e, sympy.Function) and e.func.__name__ in functions,
        lambda e: functions[e.func.__name__](*e.args),
    )
    return called.xreplace(values).evalf()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("revnet", {"b[n]": "b[n+1] - g(a[n+1])", "a[n]": "a[n+1] - f(b[n])"}),
        ("momentum", {"x[n]": "-v[n+1] + x[n+1]", "v[n]": "(gamma*f(x[n]) + v[n+1] - f(x[n]))/gamma"}),
        (
            STAGED,
            {"x[n]": "-h**2*f(x[n+1])/4 - h**2*f(y1)/4 - h*v[n+1] + x[n+1]", "v[n]": "h*f(x[n])/4 + k1"},
        ),
    ],
)
def test_the_inverse_is_written_in_steps_and_computes_the_same(text, expected):
    """Each step reads the values above it instead of nesting their whole expressions (the staged
    composition's v[n] nested x[n]'s update, itself nesting y1's, inside f: 170 characters); run in
    order with random numbers for the new values, the steps give what the explicit solution gives."""
    scheme = odenet.load(text) if "\n" not in text else odenet.parse(text)
    reversibility = odenet.analyze(scheme).reversibility
    written = {str(old): odenet.ir.format_expr(expr) for old, expr in reversibility.steps}
    assert {k: written[k] for k in expected} == expected
    rng = np.random.default_rng(0)
    symbols = set().union(*(expr.free_symbols for _, expr in reversibility.solution))
    news = {s: sympy.Float(rng.uniform(-1, 1)) for s in symbols}
    known = dict(news)
    for old, expr in reversibility.steps:
        known[old] = _numbers(expr, known)
    for old, expr in reversibility.solution:
        assert abs(complex(known[old] - _numbers(expr, news))) < 1e-12, old


# -- compositions with irrational weights --------------------------------------------------------

COMPOSITIONS = [Path(__file__).parent / "data" / "user" / "yoshida.scheme"]
COMPOSITIONS += [Path(__file__).parent / "data" / "user" / "forest_ruth.scheme"]
COMPOSITIONS += [Path(__file__).parent / "data" / "compositions" / "suzuki.scheme"]


@pytest.mark.parametrize("path", COMPOSITIONS, ids=lambda p: p.stem)
def test_compositions_with_irrational_weights_invert_explicitly(path):
    """Yoshida, Forest-Ruth and Suzuki compose kicks and drifts with weights in QQ(2**(1/3)) or
    QQ(4**(1/3)): every kick and drift undoes explicitly, so the whole step does. The weights named
    as stages (w1 = 1/(2 - 2**(1/3))) are coefficients, not unknowns, and the weights' sums vanish
    exactly where the solve needs them to. Checked by stepping and undoing on random nonlinear
    functions in float64."""
    scheme = odenet.load(path)
    derivation = invert(scheme)
    assert {"x[n]", "v[n]"} <= {str(u) for u, _ in derivation.solution}
    rng = np.random.default_rng(5)
    for _ in range(5):
        weights = rng.normal(size=(2, 3, 3))
        functions = {
            "f": lambda u, w=weights[0]: np.sin(w @ u),
            "g": lambda u, w=weights[1]: u + np.tanh(w @ u),
        }
        _assert_undone(scheme, derivation, functions, rng, atol=1e-11)
