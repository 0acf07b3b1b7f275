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
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from torch import nn

from odenet.errors import UnsupportedSchemeError

if TYPE_CHECKING:
    from odenet.ir import Scheme
    from odenet.nn.code import SchemeCode
    from odenet.nn.solvers import SolveInfo

__all__ = ["Layers", "MemoryMode", "PassReport"]

State = tuple[torch.Tensor, ...]


@dataclasses.dataclass
class PassReport:
    """What the last forward pass, and the backward pass through it, did.

    ``solves``: an implicit block's solve of each layer (:class:`~odenet.nn.solvers.SolveInfo`);
    ``backward_solves``: their adjoint solves in the last backward pass; ``rebuilds``: the solves
    of a fixed-point inverse in the last backward pass; ``reconstruction_errors``: ``(layer,
    relative error)`` of each rebuilt input measured against an exact copy; ``kept_bytes``: memory
    kept for backward beyond the output (copies, replay records, fixed point's buffers);
    ``graph_layers`` and ``graph_bytes``: the top layers that kept their graphs under a memory
    budget, and what they saved (a budget in bytes); ``repairs``: release groups the adaptive guard
    recomputed exactly, counted over the block's life."""

    mode: str
    solves: list[SolveInfo] = dataclasses.field(default_factory=list)
    backward_solves: list[SolveInfo] = dataclasses.field(default_factory=list)
    rebuilds: list[SolveInfo] = dataclasses.field(default_factory=list)
    reconstruction_errors: list[tuple[int, float]] = dataclasses.field(default_factory=list)
    kept_bytes: int = 0
    graph_layers: int = 0
    graph_bytes: int | None = None
    repairs: int = 0

    def __str__(self) -> str:
        parts = [f"kept {self.kept_bytes} bytes beyond the output"]
        if self.solves:
            parts.append(f"{len(self.solves)} solves, {sum(s.iterations for s in self.solves)} iterations")
        if self.backward_solves:
            parts.append(f"{len(self.backward_solves)} adjoint solves")
        if self.rebuilds:
            parts.append(f"{len(self.rebuilds)} inputs rebuilt by iteration")
        if self.reconstruction_errors:
            worst = max(e for _, e in self.reconstruction_errors)
            parts.append(
                f"{len(self.reconstruction_errors)} rebuilt inputs measured (largest error {worst:.2g})"
            )
        if self.graph_layers:
            parts.append(f"{self.graph_layers} top layers kept their graphs")
        if self.repairs:
            parts.append(f"{self.repairs} groups repaired")
        return f"{self.mode}: " + "; ".join(parts)


class Layers(Protocol):
    """The block as a mode sees it (``SchemeBlock`` is one)."""

    scheme: Scheme
    depth: int
    functions: nn.ModuleDict
    shared: dict[str, bool]
    raw_params: nn.ParameterDict
    intervals: dict
    start_values: dict[str, float]
    code: SchemeCode
    last_pass: PassReport
    training: bool

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

    def fixed_params(self) -> list[torch.Tensor]: ...

    def parameter_tensor(self, name: str) -> torch.Tensor: ...

    def parameter_values(self, name: str) -> torch.Tensor: ...

    def layer_params(self, n: int) -> dict[str, torch.Tensor]: ...

    def function(self, name: str, n: int) -> nn.Module: ...

    def layer_modules(self, n: int) -> list[nn.Module]: ...

    def caller(self, n: int) -> Callable: ...

    def checked(self, call: Callable, state, n: int) -> Callable: ...

    def step(self, n: int, state: State, call: Callable | None = None) -> State: ...

    def steps(self, start: int, stop: int, state: State) -> State: ...

    def inverse_step(self, n: int, new_state: State, call=None, tol: float | None = None) -> State: ...

    def approximate_inverse_step(self, n: int, new_state: State, call=None) -> State: ...


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
    def run(self, layers: Layers, state: State) -> State:
        """All layers on a full state vector."""

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
    def tracked(layers: Layers, state: State) -> bool:
        """Whether a gradient may flow: grad mode on, and a parameter or the input requires one."""
        return torch.is_grad_enabled() and (
            any(p.requires_grad for p in layers.parameters()) or any(t.requires_grad for t in state)
        )
