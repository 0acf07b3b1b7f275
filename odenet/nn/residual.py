"""The layers of an existing residual network as the functions of a scheme.

A residual layer computes ``x + r(x)``: a transformer decoder layer (GPT-2, Llama: attention and MLP
branches, each added to its input), a ResNet basic block before its final activation. Its residual
function ``r`` is what a scheme calls ``f``: Euler with ``h = 1`` over ``r`` is the original stack,
and any other scheme over the same ``r`` (leapfrog, momentum, a revnet coupling) is the network the
papers study, with the same weights.

:func:`residual_functions` turns a stack of such layers into a factory for :func:`odenet.compile`::

    f = odenet.residual_functions(model.h)  # GPT-2: r(x) = layer(x) - x
    block = odenet.compile("momentum", {"f": f}, depth=len(model.h), memory="reversible")

    stage = resnet.encoder.stages[1].layers[1:]  # a ResNet stage's width-keeping layers:
    f = odenet.residual_functions(stage, branch=lambda layer: layer.layer)  # r: conv-BN-ReLU-conv-BN

Keyword arguments of the block's call reach every layer (``block(x, attention_mask=m,
position_embeddings=(cos, sin))``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from odenet.errors import ConfigError

__all__ = ["ResidualFunction", "residual_functions"]


class ResidualFunction(nn.Module):
    """The residual function of one layer: ``layer(x, **context) - x`` (the layer's first output,
    when it returns a tuple, as older transformer layers do), or, with ``branch``, the residual
    branch module ``branch(layer)`` applied to ``x`` (for a layer whose activation follows the sum,
    as a ResNet block's does, the subtraction would not give its branch).

    Only the module whose parameters the function uses is registered: the layer itself, or the
    branch (whose submodules are the layer's), so a state dict names each weight once."""

    def __init__(self, layer: nn.Module, branch: Callable[[nn.Module], nn.Module] | None = None):
        super().__init__()
        if branch is None:
            self.layer: nn.Module | None = layer
            self.branch: nn.Module | None = None
        else:
            module = branch(layer)
            if not isinstance(module, nn.Module):
                raise ConfigError(
                    "branch(layer) must return the residual branch as an nn.Module, not "
                    f"{type(module).__name__}"
                )
            self.layer, self.branch = None, module

    def forward(self, x: torch.Tensor, **context) -> torch.Tensor:
        if self.branch is not None:
            return self.branch(x, **context)
        assert self.layer is not None
        out = self.layer(x, **context)
        if isinstance(out, (tuple, list)):  # (hidden states, attention weights, ...)
            out = out[0]
        return out - x

    def extra_repr(self) -> str:
        return "branch" if self.branch is not None else "layer(x) - x"


def residual_functions(
    layers: Sequence[nn.Module], branch: Callable[[nn.Module], nn.Module] | None = None
) -> Callable[[int], ResidualFunction]:
    """A factory (layer index -> module) for :func:`odenet.compile`: layer ``i`` of the block calls
    the residual function of ``layers[i]`` (see :class:`ResidualFunction`), with its weights, not a
    copy. ``branch``: the residual branch of a layer, where ``layer(x) - x`` is not it."""
    stack = list(layers)
    if not stack or not all(isinstance(layer, nn.Module) for layer in stack):
        raise ConfigError("residual_functions needs a non-empty sequence of nn.Module layers")

    def factory(i: int) -> ResidualFunction:
        if i >= len(stack):
            raise ConfigError(
                f"residual_functions was given {len(stack)} layers, and the block asks for layer {i}: "
                f"compile it with depth={len(stack)} (or give each function its own share of the layers)"
            )
        return ResidualFunction(stack[i], branch)

    return factory
