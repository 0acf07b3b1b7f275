"""``memory="checkpoint"``: the inputs of about sqrt(depth) segments kept, the rest recomputed."""

from __future__ import annotations

import dataclasses
import math

import torch
from torch.utils.checkpoint import checkpoint

from odenet.nn.modes.base import NO_CONTEXT, Context, Layers, MemoryMode, State
from odenet.nn.replay import CallRecord

__all__ = ["Checkpoint"]


@dataclasses.dataclass(repr=False)
class Checkpoint(MemoryMode):
    """Segments of about sqrt(depth) layers through ``torch.utils.checkpoint`` (non-reentrant:
    random numbers, autocast and second-order gradients as torch does them); each segment's record
    replays the buffers its calls started from in the recomputation. Exact gradients; any explicit
    scheme."""

    name = "checkpoint"
    exact_gradients = True

    @torch.compiler.disable
    def run(self, layers: Layers, state: State, context: Context = NO_CONTEXT) -> State:
        """Opaque to torch.compile, as every mode that manages its own graphs."""
        layers.last_pass.rebuilds = []
        size = max(1, math.isqrt(layers.depth))
        for start in range(0, layers.depth, size):
            stop = min(start + size, layers.depth)
            if not torch.is_grad_enabled():
                state = layers.steps(start, stop, state, context)
                continue
            # the context's tensors are read where the recomputation runs: their gradients reach
            # them through the closure (non-reentrant checkpoint), as any captured tensor's do
            record = CallRecord(state, rng=False, kwargs=context.kwargs)

            def segment(*s, start=start, stop=stop, record=record):
                for n in range(start, stop):
                    s = layers.step(n, s, record.caller(layers, n))
                return tuple(s)

            state = checkpoint(segment, *state, use_reentrant=False, context_fn=record.contexts)
        return tuple(state)
