"""``memory_budget`` of the reversible and adjoint modes: the top layers keep their graphs, as many
as the budget allows, and the others are rebuilt. Kept on top, their graphs are freed first in the
backward pass, before the rebuilding needs memory: the peak is the larger of the two, not their sum.
A fraction keeps that share of the layers (of autograd's activation memory); bytes keep as many as
fit at the size of layer 0's graph, measured once per input shape on copies of its modules.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import TYPE_CHECKING

import torch

from odenet.errors import ConfigError
from odenet.nn.layers import NO_CONTEXT, Context, Layers
from odenet.nn.memory import saved_tensor_bytes

if TYPE_CHECKING:
    from odenet.nn.modes.base import MemoryMode

__all__ = ["check_budget", "graph_layers", "keep_graphs"]


def check_budget(budget, memory: str) -> float | int | None:
    """``memory_budget`` as given, checked: None, a fraction in [0, 1] (float) or bytes (int >= 0)."""
    if budget is None:
        return None
    if memory not in ("reversible", "adjoint"):
        raise ConfigError(
            "memory_budget applies to memory='reversible' and memory='adjoint' (the layers whose graphs "
            f"do not fit are rebuilt), not to memory={memory!r}"
        )
    if isinstance(budget, numbers.Integral) and not isinstance(budget, bool) and budget >= 0:
        if budget == 1:  # far more likely meant as "everything" than as one byte
            raise ConfigError(
                "memory_budget=1 is one byte, less than any layer's graph: give a fraction as a float "
                "(1.0 keeps every graph) or a number of bytes"
            )
        return int(budget)
    if (
        isinstance(budget, numbers.Real)
        and not isinstance(budget, (bool, numbers.Integral))
        and 0 <= budget <= 1
    ):
        return float(budget)
    raise ConfigError(
        "memory_budget must be a fraction of autograd's activation memory between 0 and 1 (a float, "
        f"such as 0.25) or a whole number of bytes >= 0 (an int, such as 2**30), not {budget!r}"
    )


def _probe_layer_bytes(layers: Layers, mode: MemoryMode, state, context: Context) -> int:
    """What layer 0's graph saves for this input, measured on copies of its modules with the random
    stream forked: the block's buffers and the user's random numbers are left as they were."""
    key = (
        tuple((tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in state),
        layers.training,
        torch.is_autocast_enabled(state[0].device.type),
        tuple(p.requires_grad for m in layers.layer_modules(0) for p in m.parameters()),
        tuple((tuple(t.shape), t.requires_grad) for t in context.tensors()),
    )
    if mode.probe is not None and mode.probe[0] == key:
        return mode.probe[1]
    if not torch._C._autograd._saved_tensors_hooks_is_enabled():
        raise ConfigError(
            "memory_budget in bytes measures saved tensors with saved-tensor hooks, which are disabled "
            "here (torch.autograd.graph.disable_saved_tensors_hooks); give memory_budget as a fraction"
        )
    try:
        modules = {name: copy.deepcopy(layers.function(name, 0)) for name in layers.functions}
    except RuntimeError as error:  # a module that cannot be copied (weight_norm's computed weight)
        raise ConfigError(
            f"memory_budget in bytes sizes layer 0's graph on a copy of its modules, and they cannot be "
            f"copied ({error}); give memory_budget as a fraction"
        ) from error
    # the input counts: layer 0 saves the block's input, which exists anyway, but the layers above
    # save new tensors in its place
    exclude = [*(p for m in modules.values() for p in m.parameters()), *layers.parameters()]
    devices = [state[0].device] if state[0].device.type == "cuda" else []
    # the probe's graph is dropped at once: the user's hooks (an offload, a counter) do not see it
    with torch.random.fork_rng(devices=devices), saved_tensor_bytes(exclude) as counter:
        layers.step(0, state, lambda key, name, *args: modules[name](*args, **context.kwargs))
    mode.probe = (key, counter.bytes)
    return counter.bytes


def graph_layers(layers: Layers, mode: MemoryMode, state, context: Context = NO_CONTEXT) -> int:
    """How many of the top layers keep their graphs under ``mode.budget``: a fraction keeps that
    share of the layers; bytes keep as many as fit at the size of layer 0's graph (probed)."""
    budget, depth = mode.budget, layers.depth
    if budget is None or budget == 0:
        return 0
    if isinstance(budget, float):
        return min(depth, math.floor(budget * depth + 1e-9))
    size = _probe_layer_bytes(layers, mode, state, context)
    return depth if size == 0 else min(depth, budget // size)


def keep_graphs(layers: Layers, mode: MemoryMode, start: int, state, context: Context = NO_CONTEXT):
    """Layers ``[start, depth)`` with their graphs (plain autograd); a budget in bytes counts what
    they save (``graph_bytes`` of the pass report)."""
    layers.last_pass.graph_layers = layers.depth - start
    if isinstance(mode.budget, float):
        return layers.steps(start, layers.depth, state, context)
    with saved_tensor_bytes([*state, *layers.parameters()], compose=True) as counter:
        state = layers.steps(start, layers.depth, state, context)
    layers.last_pass.graph_bytes = counter.bytes
    return state
