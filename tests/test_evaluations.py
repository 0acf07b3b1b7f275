"""Each function is evaluated where the step needs it, and once there: the calls of every layer are
counted in the forward and the backward pass of every enrolled scheme (the library and the shapes
users write) in every mode compile accepts, against the number of distinct points the evaluations
need, found numerically (calls at equal arguments are one point):

- forward, every mode: the step's points (the same as ``evaluation_points(scheme).count``, the
  IR's), plus the ``init`` calls on layer 0;
- backward: none in autograd; the step's points once more where a mode recomputes (checkpoint,
  fixed point) or rebuilds with an explicit inverse (the inverse's points together with the
  step's at the rebuilt input: the same points); the adjoint's step with -h and the step at the
  rebuilt input, together (leapfrog's and Verlet's share theirs), except at layer 0, whose input
  the adjoint holds exactly and whose product it takes there; a fixed-point inverse evaluates
  its map once per iteration (the calls that read no unknown once), then the step's points.

A regression in the sharing (an inverse call keyed apart from the forward's, as kdk's were: 5
evaluations per layer where 3 points exist) fails here.
"""

from __future__ import annotations

import pytest
import torch
from helpers import LIBRARY, USER, accepted_modes
from hypothesis import HealthCheck, given, settings
from strategies import user_scheme_text
from torch import nn

import odenet
from odenet.analysis.inverse import fixed_point_inverse
from odenet.codegen import evaluation_points, generate_implicit
from odenet.errors import ConvergenceError
from odenet.ir import function_calls, value
from odenet.ir.reversal import reversed_to_forward

SCHEMES = {**LIBRARY, **USER}
EXPLICIT = [name for name, scheme in SCHEMES.items() if scheme.is_explicit]
DEPTH, WIDTH = 3, 4

pytestmark = pytest.mark.usefixtures("float64_by_default")


class Counted(nn.Module):
    """A small contractive function that counts its evaluations in ``log[phase]``."""

    def __init__(self, log: dict, layer: int):
        super().__init__()
        self.linear, self.log, self.layer = nn.Linear(WIDTH, WIDTH), log, layer
        with torch.no_grad():
            self.linear.weight.mul_(0.5)

    def forward(self, u):
        counts = self.log.setdefault(self.log["phase"], {})
        counts[self.layer] = counts.get(self.layer, 0) + 1
        return torch.tanh(self.linear(u))


CASES = [(name, memory) for name in EXPLICIT for memory in accepted_modes(SCHEMES[name])]


def _fixed_point_inverse_calls(scheme: odenet.Scheme) -> tuple[int, int]:
    """(calls of the fixed-point inverse's map that read an unknown, calls that do not)."""
    inverse = fixed_point_inverse(scheme)
    translate = reversed_to_forward(scheme)
    calls = generate_implicit(inverse, call_keys={}, translate=translate).calls
    unknowns = {value(s, -scheme.history[s]) for s in scheme.states}  # the old values solved for
    varying = sum(1 for c in calls if c.free_symbols & unknowns)
    return varying, len(calls) - varying


def test_points_are_values_not_spellings():
    """Two spellings of one point are one evaluation; the kick-drift-kick's inverse evaluates the
    forward's three points (it evaluated five, two of them twice)."""
    twice = odenet.parse(
        "scheme twice\nstate x\nparam h = 1/2\ns = 2*x[n]\nx[n+1] = x[n] + h*f(s) + h*f(x[n] + x[n])"
    )
    assert evaluation_points(twice).count == 1
    kdk = USER["kdk"]
    block = odenet.compile(kdk, {"f": nn.Identity(), "g": nn.Identity()}, 1, "reversible")
    assert evaluation_points(kdk).count == 3
    assert sorted(block.inverse_code.source.count(f"call({k}, ") for k in range(3)) == [1, 1, 1]
    assert "call(3" not in block.inverse_code.source


def _distinct(evaluations: list[tuple[str, tuple]]) -> int:
    """How many distinct points ``(function, arguments)`` a list of evaluations visits."""
    points: list[tuple[str, tuple]] = []
    for name, args in evaluations:
        same = any(
            other == name
            and len(args) == len(known)
            and all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(args, known, strict=True))
            for other, known in points
        )
        if not same:
            points.append((name, args))
    return len(points)


def _recording(block, n: int, evaluations: list):
    def call(key, name, *args):
        evaluations.append((name, tuple(a.detach().clone() for a in args)))
        return block.function(name, n)(*args)

    return call


def _needed(block, memory: str) -> tuple[int, int]:
    """(points of one forward step, points of one layer's backward) at a random state, by probing
    the step, the inverse and the step with -h on layer 1's functions."""
    scheme = block.scheme
    torch.manual_seed(5)
    state = tuple(torch.randn(5, WIDTH) for _ in scheme.state_vector)
    with torch.no_grad():
        forward: list = []
        new = block.step(1, state, _recording(block, 1, forward))
        if memory in ("autograd", "checkpoint", "fixed_point"):
            return _distinct(forward), _distinct(forward)
        rebuilt: list = []
        if memory == "adjoint":
            old = block.approximate_inverse_step(1, new, _recording(block, 1, rebuilt))
        else:
            old = block.inverse_step(1, new, _recording(block, 1, rebuilt))
        block.step(1, old, _recording(block, 1, rebuilt))
    return _distinct(forward), _distinct(rebuilt)


@pytest.mark.parametrize(("name", "memory"), CASES)
def test_each_point_is_evaluated_once_per_pass(name, memory):
    _check_counts(SCHEMES[name], memory)


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(user_scheme_text())
def test_drawn_schemes_evaluate_each_point_once(text):
    """Stages, look-ahead calls, two functions, transcendental coefficients: a fixed-point inverse
    that is no contraction for these functions is refused (ConvergenceError), not counted."""
    scheme = odenet.parse(text)
    for memory in accepted_modes(scheme):
        try:
            _check_counts(scheme, memory)
        except ConvergenceError:
            assert memory == "reversible"


def _trained(block, n: int):
    """Whether each parameter of layer ``n``'s functions received a gradient."""
    for module in block.layer_modules(n):
        for p in module.parameters():
            yield p.grad is not None and bool(p.grad.abs().max() > 0)


def _check_counts(scheme: odenet.Scheme, memory: str) -> None:
    log: dict = {"phase": "forward"}
    torch.manual_seed(0)
    functions = {f.name: (lambda i, f=f: Counted(log, i)) for f in scheme.functions}
    block = odenet.compile(scheme, functions, DEPTH, memory)
    x = torch.randn(5, WIDTH * len(scheme.inputs), requires_grad=True)
    y = block(x)
    log["phase"] = "backward"
    y.square().sum().backward()
    solves = {info.layer: info.evaluations for info in block.rebuilds}  # fixed-point inverses

    block.eval()  # the probes below read the functions as they are (Counted keeps no state)
    log["phase"] = "probe"
    points, needed = _needed(block, memory)
    assert points == evaluation_points(scheme).count  # the IR's points are the numbers' points
    init = len({call for eq in scheme.init for call in function_calls(eq.expr)})
    forward = {n: points + (init if n == 0 else 0) for n in range(DEPTH)}
    if memory == "checkpoint":
        # a segment whose layers the output does not depend on need not be recomputed (torch's
        # checkpoint skips it); a layer whose functions receive a gradient is, once
        counts = log.get("backward", {})
        for n in range(DEPTH):
            assert counts.get(n, 0) == needed or (counts.get(n, 0) == 0 and not any(_trained(block, n)))
        backward = counts
    elif memory == "autograd":
        backward = {}
    elif memory == "reversible" and block.inverse_code is None:
        varying, constant = _fixed_point_inverse_calls(scheme)
        # the map at the first guess, then once per counted evaluation; the points at the solution
        backward = {n: (solves[n] + 1) * varying + constant + points for n in solves}
    else:
        backward = {n: needed for n in range(DEPTH)}
    if memory == "adjoint":  # layer 0's input is held exactly: its product is taken there, and
        backward[0] = 2 * points  # the step with -h's evaluations, at its rebuilt input, are not
    assert log["forward"] == forward
    assert log.get("backward", {}) == backward
