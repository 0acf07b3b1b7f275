"""The Scheme object itself: invariants, derived facts, the dependency graph, LaTeX."""

from __future__ import annotations

import dataclasses

import networkx as nx
import pytest
import sympy

import odenet
from odenet.errors import SchemeValueError
from odenet.ir import Equation, FunctionSymbol, Param, Scheme, parse_value, value


def test_value_symbols_round_trip():
    assert value("y", -1).name == "y[n-1]"
    assert value("y").name == "y[n]"
    assert value("y", 1).name == "y[n+1]"
    assert parse_value(value("F", -3)) == ("F", -3)
    assert parse_value(sympy.Symbol("k1")) is None


def test_scheme_is_immutable_and_hashable():
    scheme = odenet.load("euler")
    with pytest.raises(dataclasses.FrozenInstanceError):
        scheme.name = "other"
    assert {scheme: 1}[odenet.load("euler")] == 1


def _euler(**changes):
    x0, x1 = value("x"), value("x", 1)
    h = sympy.Symbol("h", real=True)
    fields = dict(
        name="euler",
        states=("x",),
        params=(Param("h", sympy.Rational(1, 10)),),
        functions=(FunctionSymbol("f"),),
        steps=(Equation(x1, x0 + h * sympy.Function("f")(x0)),),
    )
    fields.update(changes)
    return Scheme(**fields)


def test_built_in_python_equals_parsed():
    parsed = odenet.parse("scheme euler\nstate x\nparam h = 0.1\nx[n+1] = x[n] + h*f(x[n])")
    assert _euler() == parsed


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"states": ()}, "scheme euler: no state"),
        ({"states": ("x", "v")}, "scheme euler: state v is never updated"),
        ({"functions": ()}, "scheme euler: undeclared function f in x[n+1] = ..."),
        ({"functions": (FunctionSymbol("f", 2),)}, "scheme euler: f takes 2 argument(s) in x[n+1] = ..."),
        ({"params": ()}, "scheme euler: unknown symbol h in x[n+1] = ..."),
        ({"inputs": ("q",)}, "scheme euler: input 'q' is not a state"),
        ({"name": "lambda"}, "scheme name 'lambda' is reserved"),
        (
            {"init": (Equation(value("x"), sympy.Integer(1)),)},
            "scheme euler: x[n] is an input; it has no init",
        ),
        (
            {"steps": (Equation(value("x", 1), value("x", 2)),), "functions": ()},
            "scheme euler: x[n+2] is out of range in x[n+1] = ...",
        ),
    ],
)
def test_invariants_are_checked_when_built(changes, message):
    with pytest.raises(SchemeValueError) as info:
        _euler(**changes)
    assert str(info.value) == message


def test_param_checks_its_interval():
    with pytest.raises(SchemeValueError, match=r"default 2 outside \(0, 1\)"):
        Param("k", 2, learnable=True, interval=(0, 1))
    with pytest.raises(SchemeValueError, match="an interval needs 'learnable'"):
        Param("k", sympy.Rational(1, 2), interval=(0, 1))
    assert Param("h", sympy.Rational(1, 2), True, (0, sympy.oo)).interval == (0, sympy.oo)


def test_dependency_graph_of_heun():
    graph = odenet.load("heun").dependency_graph()
    assert dict(graph.nodes(data="kind")) == {
        "x[n]": "old",
        "f(x[n])": "call",
        "k1": "stage",
        "f(h*k1 + x[n])": "call",
        "k2": "stage",
        "x[n+1]": "new",
    }
    assert set(graph.edges) == {
        ("x[n]", "f(x[n])"),
        ("f(x[n])", "k1"),
        ("k1", "f(h*k1 + x[n])"),
        ("x[n]", "f(h*k1 + x[n])"),
        ("f(h*k1 + x[n])", "k2"),
        ("k1", "x[n+1]"),
        ("k2", "x[n+1]"),
        ("x[n]", "x[n+1]"),
    }
    assert nx.is_directed_acyclic_graph(graph)


def test_dependency_graph_of_an_implicit_scheme_has_a_cycle():
    graph = odenet.load("backward_euler").dependency_graph()
    assert nx.find_cycle(graph) == [("x[n+1]", "f(x[n+1])"), ("f(x[n+1])", "x[n+1]")]


def test_hamiltonian_reads_the_new_y():
    scheme = odenet.load("hamiltonian")
    graph = scheme.dependency_graph()
    assert ("y[n+1]", "g(y[n+1])") in graph.edges
    assert scheme.is_explicit and scheme.implicit_references == ()


def test_implicit_references():
    scheme = odenet.parse("scheme s\nstate x, v\nx[n+1] = x[n] + f(v[n+1])\nv[n+1] = v[n]")
    assert not scheme.is_explicit
    ((eq, symbol),) = scheme.implicit_references
    assert (str(eq.target), str(symbol)) == ("x[n+1]", "v[n+1]")


def test_state_vector_orders_states_then_history():
    assert odenet.load("leapfrog").state_vector == (value("y"), value("y", -1))
    assert odenet.load("momentum").state_vector == (value("x"), value("v"))


def test_latex_of_every_equation():
    leapfrog = odenet.load("leapfrog")
    assert leapfrog.latex_equations() == [r"y_{n+1} = - h^{2} f{\left(y_{n} \right)} - y_{n-1} + 2 y_{n}"]
    momentum = odenet.load("momentum")
    assert (
        momentum.latex_equations()[0]
        == r"v_{n+1} = \gamma v_{n} + \left(1 - \gamma\right) f{\left(x_{n} \right)}"
    )
    # a state whose name already has a subscript keeps a valid double index
    s = odenet.parse("scheme s\nstate x1\nx1[n+1] = x1[n-1] + f(x1[n])")
    assert s.latex_equations() == [r"{x_{1}}_{n+1} = {x_{1}}_{n-1} + f{\left({x_{1}}_{n} \right)}"]


def test_scalar_functions_of_parameters():
    s = odenet.parse("scheme s\nstate y\nparam a = 0 learnable\ny[n+1] = sigmoid(a)*y[n] + sqrt(2)*f(y[n])")
    a = sympy.Symbol("a", real=True)
    expr = s.updates[0].expr
    assert expr.coeff(value("y")) == 1 / (1 + sympy.exp(-a))
    assert expr.subs(a, 0).coeff(value("y")) == sympy.Rational(1, 2)
    assert odenet.parse(str(s)) == s


def test_param_defaults_print_as_decimals_when_exact():
    s = odenet.parse(
        "scheme s\nstate y\nparam a = 0.125\nparam b = 1/3\nparam c = -2.5e-3\n"
        "param d = 1 learnable in (0, inf)\ny[n+1] = a*b*c*d*y[n]"
    )
    text = str(s)
    assert "param a = 0.125\nparam b = 1/3\nparam c = -0.0025\nparam d = 1 learnable in (0, inf)\n" in text
    assert odenet.parse(text) == s


def test_continuation_lines_and_comments():
    s = odenet.parse(
        "scheme s  # name\nstate y\n# a whole-line comment\n\ny[n+1] = y[n] + \\\n   f(y[n])  # tail\n"
    )
    assert str(s.updates[0]) == "y[n+1] = y[n] + f(y[n])"


def test_multi_argument_functions():
    s = odenet.parse("scheme s\nstate y, z\ny[n+1] = y[n] + f(y[n], z[n])\nz[n+1] = z[n] - f(z[n], y[n+1])")
    assert s.functions == (FunctionSymbol("f", 2),)
    assert odenet.parse(str(s)) == s


GL2_COUPLED = """scheme gl2
state x
param h = 0.1
k1 = f(x[n] + h*(1/4*k1 + (1/4 - sqrt(3)/6)*k2))
k2 = f(x[n] + h*((1/4 + sqrt(3)/6)*k1 + 1/4*k2))
x[n+1] = x[n] + h/2*(k1 + k2)
"""


def test_stages_in_any_order_are_a_coupled_implicit_system():
    """Gauss-Legendre as published: k1 reads k2, defined on the next line, and itself."""
    scheme = odenet.parse(GL2_COUPLED)
    assert not scheme.is_explicit
    assert scheme.coupled_stages == {sympy.Symbol("k1"), sympy.Symbol("k2")}
    references = {(eq.target.name, s.name) for eq, s in scheme.implicit_references}
    assert references == {("k1", "k1"), ("k1", "k2"), ("k2", "k2")}
    assert odenet.parse(str(scheme)) == scheme  # printed and read back


def test_coupled_gauss_legendre_analysis_against_hand_values():
    """Order 4 (nodepy's GL2 and Butcher's theory), the (2,2) Pade approximant of exp as the
    stability function (hand-derived from the tableau), A-stable, the same facts as the method
    written with its stages as states; its inverse is implicit too (fixed-point)."""
    from odenet.ir.methods import runge_kutta_text

    coupled = odenet.analyze(odenet.parse(GL2_COUPLED))
    z, h, lam = sympy.symbols("z"), sympy.Symbol("h", real=True), sympy.Symbol("lambda")
    pade = (12 + 6 * z + z**2) / (12 - 6 * z + z**2)
    (entry,) = coupled.stability.amplification_matrix
    assert sympy.simplify(entry - pade.subs(z, h * lam)) == 0
    assert coupled.order == 4
    assert coupled.stability.real_interval == (None, 0.0)
    assert coupled.stability.imag_interval == (None, None)
    assert coupled.reversibility.kind == "fixed-point"
    r = sympy.sqrt(3) / 6
    a = [[sympy.Rational(1, 4), sympy.Rational(1, 4) - r], [sympy.Rational(1, 4) + r, sympy.Rational(1, 4)]]
    states = odenet.analyze(
        odenet.parse(runge_kutta_text("gl2s", a, [sympy.Rational(1, 2)] * 2, stages_as_states=True))
    )
    assert states.order == 4
    assert (states.stability.real_interval, states.stability.imag_interval) == (
        coupled.stability.real_interval,
        coupled.stability.imag_interval,
    )
