"""The generated code against the IR it was generated from.

One compiled layer (``SchemeBlock.step``, the function sympy's printer wrote) is compared with the
IR's own numeric step (:mod:`odenet.analysis.numeric`, which walks the sympy expressions and executes
nothing), for every compilable library scheme and for random schemes; so are the generated start
(``init``) and, where a scheme has one, the generated inverse against the derived inverse scheme.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import EXPLICIT, LIBRARY, REVERSIBLE
from hypothesis import HealthCheck, given, settings
from strategies import random_scheme
from torch import nn

import odenet
from odenet.analysis.inverse import derive_inverse
from odenet.analysis.numeric import evaluate, next_state, step
from odenet.ir import parse_value, value
from odenet.ir.reversal import from_reversed, to_reversed

WIDTH = 3


class Nonlinear(nn.Module):
    """``tanh(sum_i W_i a_i + b)``: a function of any number of arguments, all of width WIDTH."""

    def __init__(self, arity: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weights = nn.Parameter(
            torch.randn(arity, WIDTH, WIDTH, generator=generator, dtype=torch.float64)
        )
        self.bias = nn.Parameter(torch.randn(WIDTH, generator=generator, dtype=torch.float64))

    def forward(self, *args) -> torch.Tensor:
        # an argument may be a constant (random schemes call f(2) or f(h)): it is broadcast
        args = [torch.as_tensor(a, dtype=torch.float64) for a in args]
        args = [a if a.dim() else a.expand(WIDTH) for a in args]
        return torch.tanh(sum(a @ w.T for a, w in zip(args, self.weights, strict=True)) + self.bias)


def _block(scheme: odenet.Scheme) -> odenet.SchemeBlock:
    functions = {f.name: Nonlinear(f.arity, seed) for seed, f in enumerate(scheme.functions)}
    return odenet.SchemeBlock(scheme, functions, depth=1).double()


def _reference_functions(block: odenet.SchemeBlock) -> dict:
    """The block's own modules, evaluated on numpy arrays: the reference shares the weights, not the code."""

    def numpy_function(module):
        def apply(*args):
            with torch.no_grad():
                return module(*(torch.from_numpy(np.asarray(a, dtype=np.float64)) for a in args)).numpy()

        return apply

    return {name: numpy_function(block.function(name, 0)) for name in block.functions}


def _reference_params(block: odenet.SchemeBlock) -> dict:
    return {name: float(v.detach()) for name, v in block.layer_params(0).items()}


def _check_step(scheme: odenet.Scheme, seed: int = 0) -> None:
    block = _block(scheme)
    rng = np.random.default_rng(seed)
    old = {symbol: rng.standard_normal((2, WIDTH)) for symbol in scheme.state_vector}
    functions, params = _reference_functions(block), _reference_params(block)

    with torch.no_grad():
        generated = block.step(0, tuple(torch.from_numpy(old[s]) for s in scheme.state_vector))
    expected = next_state(scheme, step(scheme, old, functions, params))
    for symbol, got in zip(scheme.state_vector, generated, strict=True):
        _assert_close(got, expected[symbol], symbol)

    inputs = {value(s): old[value(s)] for s in scheme.inputs}
    env = {**{scheme.param(n).symbol: v for n, v in params.items()}, **inputs}
    for eq in scheme.init:  # the IR's start values, evaluated in order
        env[eq.target] = evaluate(eq.expr, env, functions) + np.zeros((2, WIDTH))
    x = torch.from_numpy(np.concatenate([inputs[value(s)] for s in scheme.inputs], axis=1))
    with torch.no_grad():
        started = block.initial_state(x)
    for symbol, got in zip(scheme.state_vector, started, strict=True):
        _assert_close(got, env[symbol], f"init {symbol}")


def _assert_close(got: torch.Tensor, expected: np.ndarray, what) -> None:
    """Equal up to rounding: the printer's cse and the numeric walk order operations differently."""
    scale = 1.0 + float(np.abs(expected).max())
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12 * scale, err_msg=str(what))


@pytest.mark.parametrize("name", EXPLICIT)
def test_generated_step_and_init_equal_the_ir(name):
    _check_step(LIBRARY[name])


@pytest.mark.parametrize("name", REVERSIBLE)
def test_generated_inverse_equals_the_derived_inverse_scheme(name):
    scheme = LIBRARY[name]
    inverse = derive_inverse(scheme)
    block = _block(scheme)
    rng = np.random.default_rng(1)
    new_symbols = [value(s, offset + 1) for s, offset in map(parse_value, scheme.state_vector)]
    new = {symbol: rng.standard_normal((2, WIDTH)) for symbol in new_symbols}
    functions, params = _reference_functions(block), _reference_params(block)
    expected = from_reversed(scheme, step(inverse, to_reversed(scheme, new), functions, params))
    with torch.no_grad():
        generated = block.inverse_step(0, tuple(torch.from_numpy(new[s]) for s in new_symbols))
    for symbol, got in zip(scheme.state_vector, generated, strict=True):
        _assert_close(got, expected[symbol], symbol)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_scheme())
def test_generated_code_of_random_schemes_equals_the_ir(scheme):
    _check_step(scheme)


IRRATIONAL = {
    "sqrt": "scheme s\nstate x\nparam h = 0.1\nk1 = f(x[n])\nk2 = f(x[n] + h*(1/2 + sqrt(3)/6)*k1)\n"
    "x[n+1] = x[n] + h*(k1 + k2)/2\n",
    "pi and functions of parameters": "scheme p\nstate y\nparam h = pi/10\nparam k = 2 learnable in (0, 3)\n"
    "y[n+1] = y[n] + h*sin(pi/5)*exp(k)*f(y[n])\n",
    "exp(1) in an init": "scheme q\nstate y, v\nparam h = 0.1\ninit v = exp(1)*f(y[n])\n"
    "v[n+1] = v[n]/sqrt(2) + h*f(y[n])\ny[n+1] = y[n] + h*v[n+1]\n",
}


@pytest.mark.parametrize("text", list(IRRATIONAL.values()), ids=list(IRRATIONAL))
def test_irrational_constants_are_compiled_as_numbers(text):
    _check_step(odenet.parse(text))


def test_constant_stages_and_new_values_are_compiled():
    """Found by the random schemes: a stage that is a plain number (k0 = 16) raised to a power made
    the generated code call torch.pow on two numbers; a constant new value was a number, not a state."""
    _check_step(
        odenet.parse("scheme c\nstate x, v\nk0 = 16\nx[n+1] = k0**4 + x[n-2] + x[n]**2/2\nv[n+1] = 3\n")
    )


def _check_vjp(scheme: odenet.Scheme, seed: int = 0) -> None:
    """The generated vector-Jacobian product (every parameter learnable, no call cached) against
    autograd through the generated step: gradients of the state vector and of each parameter."""
    block = _block(scheme)
    generator = torch.Generator().manual_seed(seed)
    old = tuple(
        torch.randn(2, WIDTH, generator=generator, dtype=torch.float64, requires_grad=True)
        for _ in scheme.state_vector
    )
    values = {name: v.detach().clone().requires_grad_(True) for name, v in block.layer_params(0).items()}
    names = tuple(values)
    new = block.code.step(old, values, block.caller(0))
    # one gradient per output, shaped like it (x[n+1] = h is a 0-dimensional output)
    grads = tuple(
        torch.randn(torch.as_tensor(t).shape, generator=generator, dtype=torch.float64) for t in new
    )
    pairs = [(t, g) for t, g in zip(new, grads, strict=True) if t.requires_grad]
    expected = torch.autograd.grad(
        [t for t, _ in pairs], [*old, *values.values()], [g for _, g in pairs], allow_unused=True
    )
    evaluations = {}

    def call(key, name, *args):
        leaves = [torch.as_tensor(a, dtype=torch.float64).detach().requires_grad_(True) for a in args]
        out = block.function(name, 0)(*leaves)
        evaluations[key] = (leaves, out)
        return out.detach()

    def pull(key, gradient):
        leaves, out = evaluations[key]
        got = torch.autograd.grad(out, leaves, gradient.sum_to_size(out.shape), allow_unused=True)
        return tuple(torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, got, strict=True))

    state_grads, param_grads = block.vjp(names, cached=False)(
        tuple(t.detach() for t in old), grads, {k: v.detach() for k, v in values.items()}, call, pull
    )
    state_grads = [g.sum_to_size(s.shape) for g, s in zip(state_grads, old, strict=True)]
    for i, (got, want) in enumerate(zip([*state_grads, *param_grads], expected, strict=True)):
        want = torch.zeros(()) if want is None else want
        got = torch.zeros(()) if got is None else got
        scale = 1.0 + float(want.abs().max())
        assert torch.allclose(got.double(), want.double(), rtol=0, atol=1e-12 * scale), (scheme.name, i)


@pytest.mark.parametrize("name", EXPLICIT)
def test_generated_vjp_equals_autograd_through_the_step(name):
    _check_vjp(LIBRARY[name])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_scheme())
def test_generated_vjp_of_random_schemes_equals_autograd(scheme):
    _check_vjp(scheme)


@pytest.mark.parametrize(
    "body",
    [
        "s = 2*x[n]\nx[n+1] = x[n] + h*f(s) + h*f(x[n] + x[n])",  # one point, two spellings
        "k = x[n] + h*f(x[n])\nx[n+1] = x[n] + h*g(k) + h*g(x[n] + h*f(x[n]))",  # a stage spelled out
        "c2 = exp(c*h/2)**2\nx[n+1] = x[n] + h*f(c2*x[n]) + h*f(exp(c*h)*x[n])",  # equal numbers
    ],
)
def test_one_point_spelled_twice_is_evaluated_once_and_computes_the_ir(body):
    """Calls at one point spelled differently share a key and an evaluation (EvaluationPoints), and
    the step still computes what the IR says (numerically, with independent functions)."""
    from odenet.codegen import evaluation_points

    scheme = odenet.parse(f"scheme twice\nstate x\nparam h = 1/4\nparam c = 1/3\n{body}")
    points = evaluation_points(scheme)
    assert points.count == len({c.func for c in points.keys}) == len(_block(scheme).forward_code.calls)
    _check_step(scheme)


def test_the_interleaved_product_pulls_each_call_before_asking_for_the_next():
    """revnet's inverse evaluates g at a[n+1], then f at the rebuilt b[n]. The interleaved product
    asks for g's evaluation, pulls it, and only then asks for f's (so one graph is alive at a time);
    it asks for the layer's input last, where only the shape of b[n] is read."""
    from odenet.codegen import generate_vjp, interleaved_vjp

    source = interleaved_vjp(generate_vjp(LIBRARY["revnet"], cached=True)).source
    order = ["yield (1, 'g')", "pull(1, ", "yield (0, 'f')", "pull(0, ", "= yield None", "return"]
    positions = [source.index(text) for text in order]
    assert positions == sorted(positions), source
    assert "call(" not in source and "state" not in source
