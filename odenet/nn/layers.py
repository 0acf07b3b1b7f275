"""The block as the memory modes and their machinery see it: the :class:`Layers` protocol (a
``SchemeBlock`` is one), and the :class:`PassReport` a pass fills in. At the bottom of ``nn/`` so
that every room can name the types it works on."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from odenet.ir import Scheme
    from odenet.nn.code import SchemeCode
    from odenet.nn.solvers import SolveInfo

__all__ = ["Layers", "PassReport", "State"]

State = tuple[torch.Tensor, ...]


@dataclasses.dataclass(repr=False)
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

    def __repr__(self) -> str:  # the summary, not every layer's record (a notebook shows this)
        return f"PassReport({self})"


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
