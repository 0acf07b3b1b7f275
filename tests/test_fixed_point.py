"""``memory="fixed_point"``: states held as integers, every input rebuilt bit for bit.

References: the forward pass's own integer states (the rebuild must equal them exactly, at every
layer, at depth 4096), float64 autograd on the same rounded parameters, float32 autograd's own error
against it, and the information a contraction destroys (log2(1/gamma) bits per element and layer),
which bounds what any exact inverse must keep. Gradient equality under dropout, batch normalisation,
spectral normalisation, frozen and tied weights, convolutions, autocast and drawn schemes is in the
gradient matrix (tests/test_gradient_matrix.py, mode ``fixed_point``).
"""

from __future__ import annotations

import math
import pickle
from fractions import Fraction

import pytest
import torch
from helpers import EXPLICIT, LIBRARY
from torch import nn

from odenet.analysis.exact import exact_parts
from odenet.errors import DoubleBackwardError, ReconstructionError, UnsupportedSchemeError
from odenet.nn import compile
from odenet.nn.modes.fixed_point import COEFFICIENT_BITS, RADIX, _Pass, to_fixed

SCALE = 2**COEFFICIENT_BITS


def _rounded(scheme, **given) -> dict[str, float]:
    values = {p.name: float(p.default) for p in scheme.params} | given
    return {name: round(v * SCALE) / SCALE for name, v in values.items()}


def _make(width):
    return lambda i: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))


def test_accepted_schemes_are_those_of_the_form():
    """The library schemes fixed point accepts, and why it refuses the others (hand-checked)."""
    accepted, refused = [], {}
    for name in EXPLICIT:
        try:
            exact_parts(LIBRARY[name])
            accepted.append(name)
        except UnsupportedSchemeError as error:
            refused[name] = str(error)
    assert accepted == sorted(["hamiltonian", "leapfrog", "lm_resnet", "midpoint", "momentum", "revnet"])
    assert "x[n] enters x[n+1] other than through a constant factor" in refused["euler"]
    assert "z[n] enters z[n+1] other than through a constant factor" in refused["reversible_heun"]
    momentum = exact_parts(LIBRARY["momentum"])
    assert [(str(new), str(old), str(c)) for new, old, c, _ in momentum] == [
        ("v[n+1]", "v[n]", "gamma"),
        ("x[n+1]", "x[n]", "1"),
    ]


@pytest.mark.parametrize(("gamma", "depth"), [pytest.param(0.9, 4096, marks=pytest.mark.slow), (0.5, 600)])
def test_rebuild_is_bit_exact_at_depth(gamma, depth):
    """Every layer's integer state, rebuilt from the top, equals the forward's, bit for bit; the
    buffers are set aside and restored on the way (gamma = 0.5: one bit per layer, a spill every
    61 layers)."""
    torch.manual_seed(0)
    scheme = LIBRARY["momentum"]
    block = compile(scheme, {"f": _make(4)}, depth, "fixed_point", params={"gamma": gamma})
    x = torch.randn(3, 4)
    with torch.no_grad():
        run = _Pass(block, block.mode, (x, torch.zeros_like(x)))
        run.hold([to_fixed(x), to_fixed(torch.zeros_like(x))])
        seen = [list(run.registers)]
        for n in range(depth):
            run.forward_layer(n, block.caller(n))
            seen.append(list(run.registers))
        spills = len(run.set_aside)
        c = Fraction(round(gamma * SCALE), SCALE)  # in lowest terms: 1/2, or 29491/32768
        capacity = 62 - math.log2(c.denominator)  # bits a buffer holds before it is set aside
        assert abs(spills - depth * math.log2(1 / c) / capacity) <= 1  # as the information requires
        for n in reversed(range(depth)):
            run.inverse_layer(n, block.caller(n))
            for a, b in zip(run.registers, seen[n], strict=True):
                assert torch.equal(a, b), f"layer {n}"
        assert not run.bad and run.set_aside == [] and run.buffers == [None, None]


@pytest.mark.slow
def test_deep_float32_gradients_beat_float32_autograd():
    """Momentum at depth 512, float32: fixed point's gradients are within float32 autograd's own
    error of float64 autograd (on the same rounded gamma), where float32 rebuilds by division
    lose everything (measured for momentumnet: 79x relative error)."""
    torch.manual_seed(0)
    scheme, depth = LIBRARY["momentum"], 512
    exact = compile(scheme, {"f": _make(8)}, depth, "autograd", params=_rounded(scheme)).double()
    x = torch.randn(16, 8, dtype=torch.float64)

    def gradients(block, x):
        x = x.clone().requires_grad_(True)
        y = block(x)
        loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum()
        return torch.autograd.grad(loss, [x, *block.parameters()])

    reference = gradients(exact, x)
    scale = torch.cat([g.reshape(-1) for g in reference]).norm()
    errors = {}
    for memory in ("autograd", "fixed_point"):
        block = compile(scheme, {"f": _make(8)}, depth, memory).float()
        block.load_state_dict(exact.state_dict())
        got = gradients(block, x.float())
        errors[memory] = (
            max((a.double() - b).norm().item() for a, b in zip(got, reference, strict=True)) / scale
        )
    assert errors["fixed_point"] <= errors["autograd"], errors


@pytest.mark.slow
def test_memory_is_the_information_the_contraction_destroys():
    """What the block keeps grows with depth at the rate of the bits gamma discards, log2(1/gamma)
    per element and layer, within a factor 1.5 (buffers are set aside whole), and no copies: at
    depth 2048 it is a few states, where autograd keeps thousands."""
    torch.manual_seed(0)
    scheme = LIBRARY["momentum"]
    x = torch.randn(32, 16)
    kept = {}
    for depth in (256, 2048):
        block = compile(scheme, {"f": _make(16)}, depth, "fixed_point", params={"gamma": 0.9})
        block(x.clone().requires_grad_(True))
        registers = 2 * x.numel() * 8
        kept[depth] = block.kept_bytes - registers
    bits = math.log2(SCALE / round(0.9 * SCALE))
    for depth, used in kept.items():
        least = depth * bits * x.numel() / 8
        assert least <= used <= 1.5 * least + x.numel() * 8, (depth, used, least)


class Drifting(nn.Module):
    """Gives different numbers at every call: state kept outside registered buffers."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)
        self.calls = 0

    def forward(self, u):
        self.calls += 1
        return torch.tanh(self.linear(u)) * (1 + 1e-3 * self.calls)


def test_a_function_that_changes_between_evaluations_is_refused():
    """A module whose output depends on state it keeps outside registered buffers gives different
    numbers in the backward pass; the rebuilt input then differs from the input and the block
    raises instead of returning gradients."""

    block = compile(LIBRARY["momentum"], {"f": lambda i: Drifting()}, 6, "fixed_point")
    y = block(torch.randn(3, 4, requires_grad=True))
    with pytest.raises(ReconstructionError, match="different bits"):
        y.sum().backward()


def test_the_rebuild_is_checked_when_the_lowest_layers_take_no_part():
    """Frozen lower layers and gamma, an input without grad: the lowest segments never run their
    backward, and the check still happens, at the end of the backward pass (it once did not)."""

    block = compile(LIBRARY["momentum"], {"f": lambda i: Drifting()}, 32, "fixed_point")
    for n in range(24):
        block.functions["f"][n].requires_grad_(False)
    block.raw_params.requires_grad_(False)
    y = block(torch.randn(3, 4))
    with pytest.raises(ReconstructionError, match="different bits"):
        y.sum().backward()


def test_autocast_runs_the_update_in_the_states_precision():
    """Under bfloat16 autocast the functions return bfloat16; the update still runs in the state's
    float32, as in every other mode: the output is autograd's, not rounded to bfloat16."""
    torch.manual_seed(0)
    scheme = LIBRARY["momentum"]
    gamma = {"gamma": 0.8125}  # 13/16: held exactly, and 1 - gamma is no power of two
    reference = compile(scheme, {"f": _make(8)}, 16, "autograd", gamma)
    block = compile(scheme, {"f": _make(8)}, 16, "fixed_point", gamma)
    block.load_state_dict(reference.state_dict())
    x = torch.randn(4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected, got = reference(x), block(x)
    assert got.dtype == expected.dtype == torch.float32
    assert (got - expected).abs().max() < 1e-5


def test_values_outside_the_range_are_refused():
    block = compile(LIBRARY["leapfrog"], {"f": _make(4)}, 3, "fixed_point")
    limit = 2.0 ** (62 - RADIX)
    block(torch.full((2, 4), limit / 8))  # the remainder 2*y[n] stays inside
    with pytest.raises(ReconstructionError, match="left the range"):
        block(torch.full((2, 4), limit * 2))
    with pytest.raises(ReconstructionError, match="left the range"):
        block(torch.full((2, 4), float("nan")))


def test_forward_without_gradients_computes_the_same_numbers():
    torch.manual_seed(0)
    block = compile(LIBRARY["momentum"], {"f": _make(4)}, 20, "fixed_point")
    x = torch.randn(3, 4)
    with torch.no_grad():
        plain = block(x)
    assert torch.equal(block(x.requires_grad_(True)).detach(), plain)


def test_second_order_gradients_are_refused():
    block = compile(LIBRARY["momentum"], {"f": _make(4)}, 4, "fixed_point")
    x = torch.randn(3, 4, requires_grad=True)
    with pytest.raises(DoubleBackwardError, match="memory='fixed_point'"):
        torch.autograd.grad(block(x).square().sum(), x, create_graph=True)


def test_a_fixed_point_block_pickles():
    torch.manual_seed(0)
    block = compile(LIBRARY["momentum"], {"f": _make(4)}, 8, "fixed_point")
    x = torch.randn(3, 4)
    loaded = pickle.loads(pickle.dumps(block))
    assert torch.equal(loaded(x), block(x))


def test_a_coefficient_with_too_many_digits_is_refused():
    """c = gamma**2 needs 32 binary digits once gamma has 16: refused with the value, not rounded,
    when the block is built (it was at the first forward); a learnable gamma whose square leaves
    the grid later in training is refused at that forward, with the layer."""
    import odenet

    lines = ["scheme squared", "state x, v", "param gamma = 0.9", "v[n+1] = gamma**2*v[n] + f(x[n])"]
    scheme = odenet.parse("\n".join([*lines, "x[n+1] = x[n] + v[n+1]"]))
    with pytest.raises(
        UnsupportedSchemeError, match=r"is 869719081/1073741824 at layer 0 .* multiple of 2\*\*-16"
    ):
        compile(scheme, {"f": _make(4)}, 2, "fixed_point")
    learnable = odenet.parse(
        "\n".join([*lines, "x[n+1] = x[n] + v[n+1]"]).replace("0.9", "0.5 learnable in (0, 1)")
    )
    block = compile(learnable, {"f": _make(4)}, 2, "fixed_point")  # 1/4 at the start: on the grid
    with torch.no_grad():
        block.raw_params["gamma"][1] += 0.1
    with pytest.raises(UnsupportedSchemeError, match="at layer 1 with the parameters rounded"):
        block(torch.randn(3, 8))
