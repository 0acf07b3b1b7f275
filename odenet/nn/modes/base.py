"""What every memory mode is, and the narrow view of a block it works through.

A mode is an object that owns its options (``Reversible(guard="raise")``), says whether it can run
a scheme (:meth:`MemoryMode.setup` raises the error with advice), and runs a block's layers
(:meth:`MemoryMode.run`). It sees the block only through :class:`Layers`: the layer step, its
inverses, the layers' parameters and functions, and the scheme's generated code. What a pass did
(solves, rebuilds, errors measured, memory kept) goes into the block's :class:`PassReport`.

A block holds its own copy of the mode object: what a mode learns across passes (the drift plan's
measured growth, the probe of a memory budget) belongs to one block.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
from typing import ClassVar

import torch

from odenet.errors import UnsupportedSchemeError
from odenet.nn.layers import NO_CONTEXT, Context, Layers, PassReport, State

__all__ = ["NO_CONTEXT", "Context", "Layers", "MemoryMode", "PassReport", "State"]


class MemoryMode(abc.ABC):
    """A memory mode (see the module doc). Subclasses are dataclasses of their options, set
    ``name`` (the string ``compile(memory=...)`` accepts) and implement :meth:`run`; a new mode is
    one file and one line in ``modes/__init__.py``'s registry."""

    name: ClassVar[str]
    exact_gradients: ClassVar[bool]  # autograd's gradients of the network it computes (adjoint: no)
    options: ClassVar[tuple[str, ...]] = ()  # the legacy compile() keywords it takes (resolve())
    foreign_checked: bool = False  # a backward pass has walked the functions' graphs (vjp.py)

    def bind(self, layers: Layers) -> MemoryMode:
        """A copy of this mode for one block, checked against it (:meth:`setup`)."""
        bound = copy.copy(self)
        bound.setup(layers)
        return bound

    def setup(self, layers: Layers) -> None:
        """Refuse a scheme this mode cannot run (with advice), and set up what the mode keeps
        across passes. By default: an explicit scheme."""
        scheme = layers.scheme
        if not scheme.is_explicit:
            eq, symbol = scheme.implicit_references[0]
            raise UnsupportedSchemeError(
                f"scheme {scheme.name} is implicit ({eq.target} depends on {symbol}, which it computes): "
                f"each layer solves its step and differentiates the solution implicitly, which "
                f"memory='autograd' does (it keeps one evaluation per layer, not the solver's "
                f"iterations); memory={self.name!r} is not offered for implicit schemes"
            )

    @abc.abstractmethod
    def run(self, layers: Layers, state: State, context: Context = NO_CONTEXT) -> State:
        """All layers on a full state vector; ``context``: the functions' keyword arguments."""

    def rebuild_tolerance(self, dtype: torch.dtype) -> float:
        """The relative residual a fixed-point inverse is solved to (``SchemeBlock.inverse``)."""
        from odenet.nn.drift import DEFAULT_GROWTH

        return DEFAULT_GROWTH * torch.finfo(dtype).eps

    def __repr__(self) -> str:
        """The class and the options that differ from their defaults: ``Reversible(guard='raise')``."""
        shown = []
        for f in dataclasses.fields(self) if dataclasses.is_dataclass(self) else ():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            value = getattr(self, f.name)
            if value != default:
                shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def extra_repr(self) -> str:
        """What the block's repr adds after ``memory=<name>`` (options that change the run)."""
        return ""

    @staticmethod
    def tracked(layers: Layers, state: State, context: Context = NO_CONTEXT) -> bool:
        """Whether a gradient may flow: grad mode on, and a parameter, the input or a context tensor
        requires one."""
        return torch.is_grad_enabled() and (
            any(p.requires_grad for p in layers.parameters())
            or any(t.requires_grad for t in state)
            or bool(context.requiring_grad())
        )
