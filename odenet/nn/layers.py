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

__all__ = ["NO_CONTEXT", "Context", "Layers", "PassReport", "State"]

State = tuple[torch.Tensor, ...]


class Context:
    """The keyword arguments of one forward pass (``block(x, **context)``), given unchanged to every
    call of every layer: ``f(value, **context)``. Values may be tensors, tuples, lists or dicts of
    them, ``None`` or plain numbers.

    The modes that evaluate functions again in the backward pass (reversible, adjoint, fixed point)
    call them with :meth:`detached`'s copy, whose tensors that require grad are leaves sharing the
    originals' storage (nothing is copied): the gradients found for those leaves are the
    gradients of the originals, which the pass hands to autograd once for the whole stack."""

    def __init__(self, kwargs: dict | None = None, leaves: list | None = None):
        self.kwargs: dict = dict(kwargs or {})
        self.leaves: list[tuple[torch.Tensor, torch.Tensor]] = leaves or []  # (original, leaf)

    def __bool__(self) -> bool:
        return bool(self.kwargs)

    def __repr__(self) -> str:
        return f"Context({', '.join(sorted(self.kwargs))})"

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor in the context, in order."""
        found: list[torch.Tensor] = []
        _map(self.kwargs, lambda t: found.append(t) or t)
        return found

    def requiring_grad(self) -> list[torch.Tensor]:
        """The context's tensors that require grad (the originals, each once)."""
        return list({id(t): t for t in self.tensors() if t.requires_grad}.values())

    def detached(self) -> Context:
        """The same context with each tensor that requires grad replaced by a leaf on its storage."""
        pairs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def leaf(t: torch.Tensor) -> torch.Tensor:
            if not t.requires_grad:
                return t
            if id(t) not in pairs:
                pairs[id(t)] = (t, t.detach().requires_grad_(True))
            return pairs[id(t)][1]

        return Context(_map(self.kwargs, leaf), list(pairs.values()))


NO_CONTEXT = Context()


def _map(value, fn):
    """``value`` with ``fn`` applied to every tensor in it (through tuples, lists and dicts)."""
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, dict):
        return {k: _map(v, fn) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        return type(value)(*(_map(v, fn) for v in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_map(v, fn) for v in value)
    return value


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

    def caller(self, n: int, context: Context = NO_CONTEXT) -> Callable: ...

    def checked(self, call: Callable, state, n: int) -> Callable: ...

    def step(
        self, n: int, state: State, call: Callable | None = None, context: Context = NO_CONTEXT
    ) -> State: ...

    def steps(self, start: int, stop: int, state: State, context: Context = NO_CONTEXT) -> State: ...

    def inverse_step(
        self, n: int, new_state: State, call=None, tol: float | None = None, context: Context = NO_CONTEXT
    ) -> State: ...

    def approximate_inverse_step(
        self, n: int, new_state: State, call=None, context: Context = NO_CONTEXT
    ) -> State: ...
