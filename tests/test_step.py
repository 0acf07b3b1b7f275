"""The step declaration, ``step dt = 0.1``: every library scheme with its step renamed has the same
analysis, the adjoint mode and the command line follow the declared name, and mistakes are refused."""

from __future__ import annotations

import dataclasses
import json

import pytest
import sympy
import torch
from conftest import cli
from torch import nn

import odenet
from odenet.errors import SchemeValueError
from odenet.ir import Equation, Param
from odenet.library import library_dir
from odenet.nn import compile

WITH_H = sorted(p.stem for p in library_dir().glob("*.scheme") if odenet.load(p.stem).step_param is not None)


def _renamed(scheme: odenet.Scheme, name: str = "dt") -> odenet.Scheme:
    """``scheme`` with its step ``h`` called ``name``, printed and parsed back (so through the
    language's ``step`` line)."""
    old, new = sympy.Symbol("h", real=True), sympy.Symbol(name, real=True)
    rename = {old: new}
    params = tuple(
        Param(name, p.default, p.learnable, p.interval) if p.name == "h" else p for p in scheme.params
    )
    renamed = dataclasses.replace(
        scheme,
        params=params,
        steps=tuple(Equation(eq.target, eq.expr.xreplace(rename)) for eq in scheme.steps),
        init=tuple(Equation(eq.target, eq.expr.xreplace(rename)) for eq in scheme.init),
        step=name,
    )
    text = str(renamed)
    assert f"step {name} = " in text
    return odenet.parse(text)


def test_every_library_scheme_with_a_step_is_enrolled():
    assert len(WITH_H) >= 10 and "leapfrog" in WITH_H and "momentum" not in WITH_H


@pytest.mark.parametrize("name", WITH_H)
def test_renamed_step_gives_the_same_analysis(name):
    original = odenet.analyze(odenet.load(name))
    renamed = odenet.analyze(_renamed(odenet.load(name)))
    for a in (original, renamed):
        assert a.order is not None
    assert renamed.order == original.order
    assert renamed.accuracy.ode == original.accuracy.ode
    s, r = original.stability, renamed.stability
    assert (r.real_interval, r.imag_interval, r.zero_stable) == (
        s.real_interval,
        s.imag_interval,
        s.zero_stable,
    )
    assert str(r.variable) == str(s.variable).replace("h", "dt")
    assert renamed.reversibility.kind == original.reversibility.kind
    if original.accuracy.leading_error is not None:
        back = {sympy.Symbol("dt", real=True): sympy.Symbol("h", real=True)}
        assert (
            sympy.expand(renamed.accuracy.leading_error.xreplace(back) - original.accuracy.leading_error) == 0
        )


def _mlp():
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4))


@pytest.mark.parametrize("name", ["euler", "heun", "leapfrog"])
def test_adjoint_mode_uses_the_declared_step(name):
    """Same weights, same step value: the adjoint gradients with ``dt`` equal those with ``h``."""
    grads = []
    for scheme in (odenet.load(name), _renamed(odenet.load(name))):
        torch.manual_seed(0)
        step = {scheme.step: 0.125}
        block = compile(scheme, {"f": lambda i: _mlp()}, 8, "adjoint", params=step).double()
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        block(x).square().sum().backward()
        grads.append(torch.cat([x.grad.flatten(), *(p.grad.flatten() for p in block.parameters())]))
    assert torch.equal(grads[0], grads[1])


def test_adjoint_mode_without_a_step_is_refused_with_the_way_out():
    with pytest.raises(odenet.UnsupportedSchemeError, match="declare one"):
        compile(odenet.load("revnet"), {"f": lambda i: _mlp(), "g": lambda i: _mlp()}, 2, "adjoint")


def test_a_second_step_line_is_an_error_at_its_place():
    text = "scheme e\nstate x\nstep dt = 0.1\nstep h = 0.2\nx[n+1] = x[n] + dt*f(x[n])\n"
    with pytest.raises(SchemeValueError, match="a second step declaration") as info:
        odenet.parse(text)
    assert (info.value.location.line, info.value.location.column) == (4, 6)


def test_step_must_name_a_parameter():
    scheme = odenet.load("euler")
    with pytest.raises(SchemeValueError, match="the step dt is not a parameter"):
        dataclasses.replace(scheme, step="dt")


def test_cli_step_sets_the_declared_parameter(tmp_path):
    path = tmp_path / "heun_dt.scheme"
    path.write_text(str(_renamed(odenet.load("heun"))))
    facts = json.loads(cli("analyze", str(path), "--json", "--step", "0.05").stdout)
    reference = json.loads(cli("analyze", "heun", "--json", "--param", "h=0.05").stdout)
    assert facts["params"] == {"dt": 0.05}
    assert facts["stability"]["real_interval"] == reference["stability"]["real_interval"]
    assert facts["stability"]["real_interval"][0] == pytest.approx(-2.0)  # in dt*lambda
    assert facts["stability"]["variable"] == "dt*lambda"


def test_cli_step_on_a_scheme_without_one_says_so():
    result = cli("analyze", "momentum", "--step", "0.1")
    assert result.returncode == 1
    assert "has no step parameter" in result.stderr
