"""``memory_budget``: the reversible and adjoint modes keep the graphs of the top layers that fit.

References: plain autograd's gradients and saved bytes on the same weights (float64), the bytes
each layer's graph saves measured by our counter of autograd's saved tensors, and the random
stream and buffers of an autograd run. Gradient equality under the conditions PyTorch users bring
is in the gradient matrix (tests/test_gradient_matrix.py, modes ``budget`` and ``budget_bytes``).
"""

from __future__ import annotations

import contextlib
import pickle

import pytest
import torch
from helpers import LIBRARY
from torch import nn

from odenet.errors import ConfigError
from odenet.nn import compile
from odenet.nn.memory import saved_tensor_bytes

pytestmark = pytest.mark.usefixtures("float64_by_default")

WIDTH, DEPTH, BATCH = 8, 12, 5


def _functions(scheme, seed=0, dropout=False, batchnorm=False):
    torch.manual_seed(seed)

    def make(i):
        layers = [nn.Linear(WIDTH, WIDTH)]
        layers += [nn.BatchNorm1d(WIDTH)] if batchnorm else []
        layers += [nn.Dropout(0.2)] if dropout else []
        return nn.Sequential(*layers, nn.Tanh(), nn.Linear(WIDTH, WIDTH))

    return {f.name: make for f in scheme.functions}


def _pair(name, memory="reversible", **kwargs):
    scheme = LIBRARY[name]
    reference = compile(scheme, _functions(scheme, **kwargs), DEPTH, "autograd")
    budgets = {}

    def block(budget):
        if budget not in budgets:
            b = compile(scheme, _functions(scheme, **kwargs), DEPTH, memory, memory_budget=budget)
            b.load_state_dict(reference.state_dict())
            budgets[budget] = b
        return budgets[budget]

    return reference, block


def _run(block, x, seed=7, count=True):
    """Output, gradients (input and parameters), bytes autograd saved (parameters left out)."""
    torch.manual_seed(seed)
    x = x.clone().requires_grad_(True)
    counter = saved_tensor_bytes(exclude=list(block.parameters()))
    with counter if count else contextlib.nullcontext():
        y = block(x)
    loss = (y * torch.linspace(-1, 1, y.numel()).reshape(y.shape)).sum() + y.square().sum()
    grads = torch.autograd.grad(loss, [x, *block.parameters()])
    return y.detach(), grads, counter.bytes


def _error(got, expected) -> float:
    scale = torch.cat([g.reshape(-1) for g in expected]).norm()
    return max(((a - b).norm() / scale).item() for a, b in zip(got, expected, strict=True))


def _layer_bytes(reference, x) -> int:
    """Bytes one layer's graph saves: autograd's whole-block count over two depths' difference."""
    state = reference.initial_state(x.clone().requires_grad_(True))
    counts = []
    for layers in (1, 2):
        with saved_tensor_bytes(exclude=[*reference.parameters(), *state]) as counter:
            reference.steps(0, layers, state)
        counts.append(counter.bytes)
    return counts[1] - counts[0]


@pytest.mark.parametrize(
    "name",
    [
        "leapfrog",
        "momentum",
        pytest.param("revnet", marks=pytest.mark.slow),
        pytest.param("hamiltonian", marks=pytest.mark.slow),
    ],
)
def test_fraction_keeps_that_share_of_the_layers(name):
    """A fraction f keeps floor(f * depth) graphs: at f = 1 the block saves exactly what autograd
    saves, and the saved bytes grow by one layer's graph per layer kept; gradients equal autograd's
    at every f."""
    reference, block = _pair(name)
    x = torch.randn(BATCH, WIDTH * len(LIBRARY[name].inputs))
    _, g_ref, autograd_bytes = _run(reference, x)
    per_layer = _layer_bytes(reference, x)
    assert per_layer > 0
    saved = {}
    for budget in (0.0, 0.25, 0.5, 1.0):
        b = block(budget)
        _, g, saved[budget] = _run(b, x)
        assert b.graph_layers == int(budget * DEPTH)
        assert _error(g, g_ref) <= 1e-12
    assert saved[1.0] == autograd_bytes
    assert saved[0.5] - saved[0.25] == 3 * per_layer  # layers 3, 4, 5 kept in addition
    assert saved[0.25] < saved[0.5] < autograd_bytes


@pytest.mark.parametrize("name", ["leapfrog", "momentum"])
def test_bytes_are_spent_as_measured(name):
    """A budget in bytes keeps as many graphs as fit and no more: what they saved stays within the
    budget, and one more layer's graph would not have fitted."""
    reference, block = _pair(name)
    x = torch.randn(BATCH, WIDTH * len(LIBRARY[name].inputs))
    _, g_ref, _ = _run(reference, x)
    per_layer = _layer_bytes(reference, x)
    for budget in (0, per_layer - 1, per_layer, int(4.5 * per_layer), 100 * per_layer):
        b = block(budget)
        _, g, _ = _run(b, x)
        assert b.graph_bytes <= budget
        assert b.graph_layers >= min(DEPTH, budget // per_layer)  # layer 0 saves less: the input exists
        assert b.graph_layers == DEPTH or b.graph_bytes + per_layer > budget
        assert _error(g, g_ref) <= 1e-12


def test_the_probe_leaves_buffers_and_random_numbers_alone():
    """Sizing layer 0's graph runs it on copies with the random stream forked: with dropout and
    batch normalisation, outputs, running statistics and the generator's state after the step
    match autograd's."""
    reference, block = _pair("leapfrog", dropout=True, batchnorm=True)
    x = torch.randn(BATCH, WIDTH)
    b = block(3 * _layer_bytes(reference, x) + 1)
    y_ref, g_ref, _ = _run(reference, x)
    rng_ref = torch.get_rng_state()
    y, g, _ = _run(b, x)
    assert b.graph_layers == 3
    assert torch.equal(torch.get_rng_state(), rng_ref)
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-13)
    assert _error(g, g_ref) <= 1e-12
    for a, c in zip(b.buffers(), reference.buffers(), strict=True):
        assert torch.allclose(a, c, rtol=1e-13, atol=1e-13)


def test_the_users_saved_tensor_hooks_still_apply():
    """A user's saved-tensor hooks (here: packing into a box, as an offload would) see every tensor
    the kept graphs save, and gradients stay autograd's."""
    reference, block = _pair("leapfrog")
    x = torch.randn(BATCH, WIDTH)
    _, g_ref, _ = _run(reference, x)
    b = block(10 * _layer_bytes(reference, x))
    packed = []

    def pack(t):
        packed.append(t.shape)
        return [t]

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box[0]):
        _, g, _ = _run(b, x, count=False)
    assert b.graph_layers == 10
    assert len(packed) >= 10 * 3  # each layer saves at least its two linear inputs and tanh's output
    assert _error(g, g_ref) <= 1e-12


def test_adjoint_with_a_budget_is_exact_on_the_kept_layers():
    """The adjoint's gradient error falls as layers are kept, and vanishes when all are."""
    reference, block = _pair("heun", memory="adjoint")
    x = torch.randn(BATCH, WIDTH)
    _, g_ref, _ = _run(reference, x)
    errors = [_error(_run(block(f), x)[1], g_ref) for f in (0.0, 0.5, 1.0)]
    assert errors[0] > errors[1] > 0
    assert errors[2] <= 1e-12


def test_a_block_with_a_budget_pickles():
    _, block = _pair("leapfrog")
    x = torch.randn(BATCH, WIDTH)
    b = block(0.5)
    loaded = pickle.loads(pickle.dumps(b))
    assert loaded.memory_budget == 0.5
    assert "memory_budget=0.5" in repr(loaded)
    assert torch.equal(_run(loaded, x)[0], _run(b, x)[0])


@pytest.mark.parametrize(
    ("memory", "budget", "message"),
    [
        ("autograd", 0.5, "memory_budget applies to memory='reversible'"),
        ("checkpoint", 0.5, "memory_budget applies to memory='reversible'"),
        ("reversible", 1.5, "between 0 and 1"),
        ("reversible", -0.1, "between 0 and 1"),
        ("reversible", float("nan"), "between 0 and 1"),
        ("reversible", -1, "whole number of bytes"),
        ("reversible", 1, "give a fraction as a float"),
        ("reversible", True, "not True"),
        ("reversible", "1GB", "not '1GB'"),
    ],
)
def test_a_bad_budget_is_refused(memory, budget, message):
    scheme = LIBRARY["leapfrog"]
    with pytest.raises(ConfigError, match=message):
        compile(scheme, _functions(scheme), DEPTH, memory, memory_budget=budget)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's old weight_norm, still in use
def test_what_a_budget_in_bytes_cannot_measure_is_refused():
    """Hooks disabled by the user, or modules that cannot be copied for the probe: a clear error
    that names the fraction instead, not a crash inside torch."""
    _, block = _pair("leapfrog")
    x = torch.randn(BATCH, WIDTH, requires_grad=True)
    message = "disable_saved_tensors_hooks"
    with (
        torch.autograd.graph.disable_saved_tensors_hooks(message),
        pytest.raises(ConfigError, match="fraction"),
    ):
        block(10_000)(x)
    scheme = LIBRARY["leapfrog"]
    weight_normed = compile(
        scheme,
        {"f": lambda i: nn.utils.weight_norm(nn.Linear(WIDTH, WIDTH))},
        4,
        "reversible",
        memory_budget=4096,
    )
    with pytest.raises(ConfigError, match="cannot be copied"):
        weight_normed(x)
