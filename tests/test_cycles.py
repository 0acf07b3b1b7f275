"""A forward or backward pass leaves no tensor, and no object of ours, in a reference cycle: what a
layer held is freed when the layer is done, not when Python's cycle collector next runs. (The
implicit layers' solves kept each layer's input alive this way: under no_grad, at batch 1000, one
state per layer piled up, +470 MB of resident memory on a 32-layer MNIST-1D network against +26 MB
for its Euler twin.) torch's own small cycles without tensors (``tree_flatten``'s recursive helper,
under checkpointing) are not ours to break."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import odenet
from odenet.errors import OdenetError
from odenet.models.classifier import build_model
from odenet.models.config import ModelConfig
from odenet.nn import MEMORY_MODES


def _model(scheme: str, memory: str):
    text = odenet.format_scheme(odenet.load(scheme))
    config = ModelConfig(
        text, (1, 6, 6), 3, layout="conv", family="bn", width=4, depth=3, stages=1, memory=memory
    )
    try:
        return build_model(config)
    except OdenetError as exc:  # a mode the scheme does not support is refused when built
        pytest.skip(f"{scheme} in {memory}: {exc}")


def _cyclic_garbage() -> list[str]:
    """What the cycle collector frees now that is a tensor or defined by odenet (by type)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = [
            type(o).__module__ + "." + type(o).__qualname__
            for o in gc.garbage
            if isinstance(o, torch.Tensor)
            or type(o).__module__.startswith("odenet")
            or str(getattr(o, "__module__", "")).startswith("odenet")
        ]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return found


# in the fast set an explicit inverse with history, a fixed-point inverse and an implicit step;
# every library scheme in the slow set
FAST = {"leapfrog", "euler", "gauss_legendre2"}


@pytest.mark.parametrize("memory", MEMORY_MODES)
@pytest.mark.parametrize(
    "scheme", [s if s in FAST else pytest.param(s, marks=pytest.mark.slow) for s in odenet.library_names()]
)
def test_a_pass_leaves_no_reference_cycles(scheme, memory):
    torch.manual_seed(0)
    model = _model(scheme, memory)
    x = torch.randn(4, 1, 6, 6)
    with torch.no_grad():
        model(x)  # first calls build caches (generated code, regions) that live on
    model.train()
    model(x).sum().backward()
    gc.collect()
    gc.disable()
    try:
        model.eval()
        with torch.no_grad():
            model(x)
        assert _cyclic_garbage() == [], "evaluation under no_grad"
        model.train()
        out = model(x)
        freed = weakref.ref(out)  # a cycle through torch's C++ graph (a ctx holding its own output)
        out.sum().backward()  # would keep the output alive, out of the cycle collector's sight
        del out
        assert freed() is None, "the output outlived its last reference"
        assert _cyclic_garbage() == [], "training forward and backward"
    finally:
        gc.enable()
