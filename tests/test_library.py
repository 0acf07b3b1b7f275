"""The scheme library: every file parses, prints back to an equal Scheme, and says what it is."""

from __future__ import annotations

import pytest
import sympy

import odenet
from odenet.ir import value
from odenet.library import describe, library_dir

EXPECTED = {
    # name: (states, inputs, outputs, history, functions, explicit, params)
    "euler": (("x",), ("x",), ("x",), {"x": 0}, ("f",), True, {"h": "1/10"}),
    "heun": (("x",), ("x",), ("x",), {"x": 0}, ("f",), True, {"h": "1/10"}),
    "rk4": (("x",), ("x",), ("x",), {"x": 0}, ("f",), True, {"h": "1/10"}),
    "midpoint": (("y",), ("y",), ("y",), {"y": 1}, ("f",), True, {"h": "1/10"}),
    "leapfrog": (("y",), ("y",), ("y",), {"y": 1}, ("f",), True, {"h": "1/10"}),
    "hamiltonian": (("y", "z"), ("y", "z"), ("y", "z"), {"y": 0, "z": 0}, ("f", "g"), True, {"h": "1/10"}),
    "verlet": (("x", "v"), ("x",), ("x",), {"x": 0, "v": 0}, ("f",), True, {"h": "1/10"}),
    "revnet": (("a", "b"), ("a", "b"), ("a", "b"), {"a": 0, "b": 0}, ("f", "g"), True, {}),
    "lm_resnet": (("u",), ("u",), ("u",), {"u": 1}, ("f",), True, {"h": "1/10", "k": "1/2"}),
    "momentum": (("x", "v"), ("x",), ("x",), {"x": 0, "v": 0}, ("f",), True, {"gamma": "9/10"}),
    "reversible_heun": (("y", "z"), ("y",), ("y",), {"y": 0, "z": 0}, ("f",), True, {"h": "1/10"}),
    "ab2": (("x", "F"), ("x",), ("x",), {"x": 0, "F": 0}, ("f",), True, {"h": "1/10"}),
    "backward_euler": (("x",), ("x",), ("x",), {"x": 0}, ("f",), False, {"h": "1/10"}),
    "implicit_midpoint": (("x",), ("x",), ("x",), {"x": 0}, ("f",), False, {"h": "1/10"}),
    "trapezoidal": (("x",), ("x",), ("x",), {"x": 0}, ("f",), False, {"h": "1/10"}),
    "gauss_legendre2": (("x",), ("x",), ("x",), {"x": 0}, ("f",), False, {"h": "1/10"}),
}


def test_the_library_has_the_expected_schemes():
    assert sorted(odenet.library_names()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_print_then_parse_gives_an_equal_scheme(library, name):
    scheme = library[name]
    text = odenet.format_scheme(scheme)
    again = odenet.parse(text)
    assert again == scheme
    assert hash(again) == hash(scheme)
    assert odenet.format_scheme(again) == text  # printing is stable too


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_library_facts(library, name):
    scheme = library[name]
    states, inputs, outputs, history, functions, explicit, params = EXPECTED[name]
    assert scheme.name == name
    assert scheme.states == states
    assert (scheme.inputs, scheme.outputs) == (inputs, outputs)
    assert scheme.history == history
    assert tuple(f.name for f in scheme.functions) == functions
    assert scheme.is_explicit is explicit
    assert {p.name: str(p.default) for p in scheme.params} == params


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_file_has_a_one_line_description_and_a_source(library, name):
    scheme = library[name]
    assert 20 < len(describe(scheme)) < 120
    assert "Source:" in scheme.doc


def test_file_name_matches_scheme_name():
    for path in library_dir().glob("*.scheme"):
        assert odenet.load(path).name == path.stem


def test_leapfrog_equation_is_the_papers():
    scheme = odenet.load("leapfrog")
    (update,) = scheme.updates
    y0, y1, h = value("y"), value("y", -1), sympy.Symbol("h", real=True)
    f = sympy.Function("f")
    assert update.target == value("y", 1)
    assert sympy.expand(update.expr - (2 * y0 - y1 - h**2 * f(y0))) == 0
    assert [(eq.target, eq.expr) for eq in scheme.init] == [(y1, y0)]


def test_exact_rationals():
    scheme = odenet.load("rk4")
    update = scheme.updates[0].expr
    k1 = sympy.Symbol("k1")
    assert update.diff(k1) == sympy.Symbol("h", real=True) / 6  # h/6 exactly, not 0.1666...
    assert scheme.param("h").default == sympy.Rational(1, 10)


def test_learnable_parameters_and_intervals():
    gamma = odenet.load("momentum").param("gamma")
    assert (gamma.learnable, gamma.interval) == (True, (0, 1))
    k = odenet.load("lm_resnet").param("k")
    assert (k.default, k.interval) == (sympy.Rational(1, 2), (-1, 1))
    assert odenet.load("euler").param("h").learnable is False


def test_defaults_are_filled_as_the_language_says():
    # verlet: v is not an input, so it starts at 0; leapfrog: y[n-1] starts as a copy of y[n].
    assert [(str(eq.target), eq.expr) for eq in odenet.load("verlet").init] == [("v[n]", 0)]
    implicit = odenet.parse("scheme s\nstate y\ny[n+1] = y[n-2] + f(y[n])")
    assert [(str(eq.target), str(eq.expr)) for eq in implicit.init] == [
        ("y[n-1]", "y[n]"),
        ("y[n-2]", "y[n]"),
    ]
    # An init reading another init is ordered after it.
    s = odenet.parse(
        "scheme s\nstate y, v, w\ninit v = w[n] + 1\ninit w = 2*y[n]\n"
        "y[n+1] = y[n] + f(v[n])\nv[n+1] = v[n]\nw[n+1] = w[n]"
    )
    assert [str(eq.target) for eq in s.init] == ["w[n]", "v[n]"]


def test_explicit_default_equals_omitted_default():
    with_init = odenet.parse("scheme s\nstate y\ninit y[n-1] = y[n]\ny[n+1] = y[n-1] + f(y[n])")
    without = odenet.parse("scheme s\nstate y\ny[n+1] = y[n-1] + f(y[n])")
    assert with_init == without
