"""``memory="autograd"``: plain PyTorch, every layer's graph kept."""

from __future__ import annotations

import dataclasses

from odenet.nn.modes.base import NO_CONTEXT, Context, Layers, MemoryMode, State

__all__ = ["Autograd"]


@dataclasses.dataclass(repr=False)
class Autograd(MemoryMode):
    """Every activation kept by autograd; any explicit scheme (an implicit one compiles with
    :class:`~odenet.nn.modes.Implicit`, which ``memory="autograd"`` resolves to)."""

    name = "autograd"
    exact_gradients = True

    def run(self, layers: Layers, state: State, context: Context = NO_CONTEXT) -> State:
        return layers.steps(0, layers.depth, state, context)
