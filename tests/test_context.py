"""Keyword context: ``block(x, **context)`` gives every function call of every layer the same keyword
arguments, in every memory mode, and every context tensor that requires grad gets its gradient.

The gradient-equivalence matrix crosses every scheme and mode with a context condition
(``test_gradient_matrix.py``), implicit layers are checked against the unrolled iteration
(``test_implicit.py``); here: what is passed, what is kept, and what is refused.
"""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
from torch import nn

import odenet
from odenet.nn import compile
from odenet.nn.memory import saved_tensor_bytes

WIDTH = 6


class Pair(NamedTuple):
    cos: torch.Tensor
    sin: torch.Tensor


class Recording(nn.Module):
    """Records the keyword arguments of each call; its value reads the tensors among them."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(WIDTH, WIDTH)
        self.seen: list[dict] = []

    def forward(self, x, *, mask, pair, table, steps, label):
        self.seen.append({"mask": mask, "pair": pair, "table": table, "steps": steps, "label": label})
        return torch.tanh(self.linear(x) * pair.cos + table["bias"][0]) * steps


def _context():
    return {
        "mask": None,
        "pair": Pair(torch.full((WIDTH,), 0.5, requires_grad=True), torch.ones(WIDTH)),
        "table": {"bias": [torch.linspace(-1, 1, WIDTH, requires_grad=True)]},
        "steps": 2,
        "label": "decoder",
    }


@pytest.mark.parametrize("memory", ["autograd", "checkpoint", "reversible", "adjoint", "fixed_point"])
def test_every_call_receives_the_context_unchanged(memory, float64_by_default):
    """None, plain numbers, strings and the containers' types arrive as given, and the tensors hold
    the given values, at every call, forward and backward (the modes that rebuild call the
    functions with leaves on the same storage)."""
    torch.manual_seed(0)
    block = compile("leapfrog", {"f": lambda i: Recording()}, depth=3, memory=memory)
    context = _context()
    x = torch.randn(4, WIDTH, requires_grad=True)
    block(x, **context).square().sum().backward()
    seen = [call for module in block.functions["f"] for call in module.seen]
    assert len(seen) >= 3 * (2 if memory != "autograd" else 1)
    for call in seen:
        assert call["mask"] is None and call["steps"] == 2 and call["label"] == "decoder"
        assert type(call["pair"]) is Pair and type(call["table"]["bias"]) is list
        assert torch.equal(call["pair"].cos, context["pair"].cos)
        assert call["pair"].sin is context["pair"].sin  # a tensor without grad is passed as it is
        storage = call["pair"].cos.untyped_storage().data_ptr()
        assert storage == context["pair"].cos.untyped_storage().data_ptr()
    assert context["pair"].cos.grad.abs().sum() > 0 and context["table"]["bias"][0].grad.abs().sum() > 0


def test_the_context_is_not_copied_per_layer():
    """Reversible mode keeps nothing of the context: what the forward saves for backward and the
    copies it keeps are the same with a large context tensor as without, and the saved bytes do not
    grow with depth."""
    torch.manual_seed(0)

    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(64, 64)

        def forward(self, x, scale=None):
            out = torch.tanh(self.linear(x))
            return out if scale is None else out * scale

    kept = {}
    for depth in (4, 32):
        for with_context in (False, True):
            torch.manual_seed(0)
            block = compile("leapfrog", {"f": lambda i: Scaled()}, depth=depth, memory="reversible")
            x = torch.randn(256, 64, requires_grad=True)
            context = {"scale": torch.rand(256, 64, requires_grad=True)} if with_context else {}
            with saved_tensor_bytes(exclude=[x, *block.parameters(), *context.values()]) as counter:
                y = block(x, **context)
            y.sum().backward()
            kept[depth, with_context] = (counter.bytes, block.last_pass.kept_bytes)
    assert kept[4, True] == kept[4, False] and kept[32, True] == kept[32, False]
    assert kept[4, True][0] == kept[32, True][0] > 0


def test_a_context_tensor_changed_in_place_after_the_forward_is_refused():
    torch.manual_seed(0)
    block = compile("leapfrog", {"f": lambda i: Recording()}, depth=3, memory="reversible")
    context = _context()
    y = block(torch.randn(4, WIDTH), **context)
    with torch.no_grad():
        context["pair"].cos.mul_(2)
    with pytest.raises(RuntimeError, match="context tensor"):
        y.sum().backward()


def test_a_tensor_reached_otherwise_is_refused_with_the_keyword_as_the_way_out():
    """A tensor that requires grad and that a function reads from outside (a closure) gets no
    gradient from a rebuilding mode: refused, and the message says to pass it as a keyword."""
    outside = torch.ones(WIDTH, requires_grad=True)

    class Closure(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(WIDTH, WIDTH)

        def forward(self, x):
            return torch.tanh(self.linear(x)) * outside

    block = compile("leapfrog", {"f": lambda i: Closure()}, depth=2, memory="reversible")
    y = block(torch.randn(3, WIDTH, requires_grad=True))
    with pytest.raises(odenet.UnsupportedSchemeError, match=r"block\(x, name=tensor\)"):
        y.sum().backward()


def test_torch_compile_passes_the_context(float64_by_default):
    """Under torch.compile the context reaches the functions as in eager mode (autograd mode)."""
    torch.manual_seed(0)
    block = compile("rk4", {"f": lambda i: Recording()}, depth=2)
    x = torch.randn(4, WIDTH)
    eager = block(x, **_context())
    compiled = torch.compile(block, backend="aot_eager", fullgraph=False)(x, **_context())
    assert torch.allclose(compiled, eager, rtol=1e-12, atol=1e-12)


class Shifted(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x, *, shift):
        return torch.tanh(self.linear(x) + shift)


def test_inverse_takes_the_context_and_builds_a_graph_only_when_asked(float64_by_default):
    """revnet's inverse with the forward's context gives back the input; by default without a
    graph, with ``graph=True`` differentiable: x -> inverse(block(x)) is the identity, so the
    gradient of <w, inverse(block(x))> with respect to x is w."""
    torch.manual_seed(0)
    block = compile("revnet", {"f": lambda i: Shifted(3), "g": lambda i: Shifted(3)}, depth=4)
    x = torch.randn(5, WIDTH, requires_grad=True)
    shift = torch.randn(3)
    y = block(x, shift=shift)
    cheap = block.inverse(y, shift=shift)
    assert not cheap.requires_grad
    assert torch.allclose(cheap, x, rtol=0, atol=1e-12)
    assert not torch.allclose(block.inverse(y, shift=0 * shift), x, atol=1e-3)  # the context matters
    rebuilt = block.inverse(y, graph=True, shift=shift)
    w = torch.randn_like(x)
    (gradient,) = torch.autograd.grad((rebuilt * w).sum(), x)
    assert torch.allclose(gradient, w, rtol=0, atol=1e-10)


def test_inverse_with_a_graph_needs_an_explicit_inverse():
    block = compile("euler", {"f": lambda i: Shifted(WIDTH)}, depth=2)
    y = block(torch.randn(2, WIDTH), shift=torch.zeros(WIDTH))
    with pytest.raises(odenet.UnsupportedSchemeError, match="fixed point found by iteration"):
        block.inverse(y, graph=True, shift=torch.zeros(WIDTH))
    assert block.inverse(y, shift=torch.zeros(WIDTH)).shape == y.shape


# -- containers ---------------------------------------------------------------------------------------

from collections import OrderedDict, UserDict  # noqa: E402
from dataclasses import dataclass  # noqa: E402


class Output(OrderedDict):
    """A dict subclass read by attribute, as transformers' ModelOutput is."""

    def __getattr__(self, name):
        return self[name]


@dataclass
class Conditioning:
    bias: torch.Tensor
    label: str = "c"


class Reading(nn.Module):
    def __init__(self, width: int = WIDTH):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x, *, extra, sink=None):
        if sink is not None:
            sink.append(1)
        bias = extra.bias if not isinstance(extra, UserDict) else extra["bias"]
        return torch.tanh(self.linear(x) + bias)


CONTAINERS = {
    "dict subclass": lambda bias: Output(bias=bias),
    "dataclass": lambda bias: Conditioning(bias),
    "UserDict": lambda bias: UserDict(bias=bias),
}


@pytest.mark.parametrize("container", sorted(CONTAINERS))
@pytest.mark.parametrize("memory", ["checkpoint", "reversible", "adjoint"])
def test_a_tensor_in_a_dict_subclass_or_dataclass_gets_its_gradient(container, memory, float64_by_default):
    """The rebuilding modes rebuild containers of the user's own type around their leaves: a dict
    subclass stays one (attribute access works), a dataclass is replaced field by field."""
    grads = {}
    for mode in ("autograd", memory):
        torch.manual_seed(0)
        block = compile("leapfrog", {"f": lambda i: Reading()}, depth=3, memory=mode)
        bias = torch.linspace(-1, 1, WIDTH, requires_grad=True)
        block(torch.ones(2, WIDTH), extra=CONTAINERS[container](bias)).square().sum().backward()
        grads[mode] = bias.grad
    tolerance = 1e-2 if memory == "adjoint" else 1e-12  # the adjoint is approximate (h = 0.1 here)
    assert torch.allclose(grads[memory], grads["autograd"], rtol=tolerance, atol=tolerance)
    assert grads[memory].abs().sum() > 0


@pytest.mark.parametrize("memory", ["autograd", "checkpoint", "reversible", "fixed_point"])
def test_a_container_without_grad_tensors_arrives_as_the_same_object(memory):
    """A list the functions append to is the caller's list in every mode (a copy would swallow the
    appends)."""
    torch.manual_seed(0)
    functions = {"f": lambda i: Reading(WIDTH // 2), "g": lambda i: Reading(WIDTH // 2)}
    block = compile("revnet", functions, depth=2, memory=memory)
    sink: list = []
    extra = Conditioning(torch.zeros(WIDTH // 2))
    block(torch.randn(2, WIDTH, requires_grad=True), extra=extra, sink=sink).sum().backward()
    assert len(sink) >= 4  # 2 layers x 2 functions in the forward, more where backward re-runs them


def test_an_object_hiding_a_tensor_that_requires_grad_is_refused_by_the_rebuilding_modes():
    """An object the modes cannot rebuild around a leaf (a plain class holding the tensor) would
    get no gradient: refused at the forward, naming the keyword."""

    class Holder:
        def __init__(self, bias):
            self.bias = bias

    block = compile("leapfrog", {"f": lambda i: Reading()}, depth=2, memory="reversible")
    holder = Holder(torch.zeros(WIDTH, requires_grad=True))
    with pytest.raises(odenet.UnsupportedSchemeError, match="keyword argument 'extra' is a Holder holding"):
        block(torch.randn(2, WIDTH), extra=holder)
    autograd = compile("leapfrog", {"f": lambda i: Reading()}, depth=2)
    autograd(torch.randn(2, WIDTH), extra=holder).sum().backward()  # plain autograd reaches it
    assert holder.bias.grad is not None
