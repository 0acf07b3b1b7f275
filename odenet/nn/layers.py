"""The block as the memory modes and their machinery see it: the :class:`Layers` protocol (a
``SchemeBlock`` is one), and the :class:`PassReport` a pass fills in. At the bottom of ``nn/`` so
that every room can name the types it works on."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Protocol

import torch
from torch import nn

if TYPE_CHECKING:
    from odenet.ir import Scheme
    from odenet.nn.code import SchemeCode
    from odenet.nn.solvers import SolveInfo

__all__ = ["NO_CONTEXT", "Context", "Layers", "PassReport", "State", "map_tensors"]

State = tuple[torch.Tensor, ...]


class Context:
    """The keyword arguments of one forward pass (``block(x, **context)``), given to every call of
    every layer: ``f(value, **context)``. Values may be tensors, tuples (named ones too), lists,
    mappings and dataclass instances holding them, ``None``, numbers, or any other object.

    The modes that evaluate functions again in the backward pass (reversible, adjoint, fixed point)
    call them with :meth:`detached`'s copy, whose tensors that require grad are leaves sharing the
    originals' storage (no tensor is copied): the gradients found for those leaves are the
    gradients of the originals, which the pass hands to autograd once for the whole stack. A
    container holding such a tensor is passed as a new container of its own type; every other
    value, containers included, is passed as the same object."""

    def __init__(self, kwargs: dict | None = None, leaves: list | None = None):
        self.kwargs: dict = dict(kwargs or {})
        self.leaves: list[tuple[torch.Tensor, torch.Tensor]] = leaves or []  # (original, leaf)

    def __bool__(self) -> bool:
        return bool(self.kwargs)

    def __repr__(self) -> str:
        return f"Context({', '.join(sorted(self.kwargs))})"

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor in the context that :func:`map_tensors` reaches, in order."""
        found: list[torch.Tensor] = []
        map_tensors(self.kwargs, lambda t: found.append(t) or t)
        return found

    def requiring_grad(self) -> list[torch.Tensor]:
        """The context's tensors that require grad (the originals, each once)."""
        return list({id(t): t for t in self.tensors() if t.requires_grad}.values())

    def detached(self) -> Context:
        """The same context with each tensor that requires grad replaced by a leaf on its storage.
        An object :func:`map_tensors` cannot rebuild that holds such a tensor is refused: the
        rebuilding modes could not give it its gradient."""
        pairs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def leaf(t: torch.Tensor) -> torch.Tensor:
            if id(t) not in pairs:
                pairs[id(t)] = (t, t.detach().requires_grad_(True))
            return pairs[id(t)][1]

        for name, value in self.kwargs.items():
            hidden = _hidden_tensor(value)
            if hidden is not None:
                from odenet.errors import UnsupportedSchemeError

                raise UnsupportedSchemeError(
                    f"the block's keyword argument {name!r} is a {type(value).__name__} holding a tensor "
                    f"that requires grad (shape {tuple(hidden.shape)}) where the modes that rebuild "
                    "activations cannot reach it: pass tensors in tuples, lists, dicts or dataclasses "
                    "(or as keywords of their own), or use memory='checkpoint' or 'autograd'"
                )
        return Context(map_tensors(self.kwargs, leaf, lambda t: t.requires_grad), list(pairs.values()))


NO_CONTEXT = Context()


def map_tensors(value, fn, where=None):
    """``value`` with ``fn`` applied to every tensor in it (those ``where(t)`` accepts, by default
    all), through tuples (named ones too), lists, mappings and dataclass instances. A container in
    which nothing changed is returned as the same object; one that changed is a new container of
    its type (a mapping is copied and its items set, so that dict subclasses keep their class);
    any other object is returned as it is."""
    if isinstance(value, torch.Tensor):
        return fn(value) if where is None or where(value) else value
    if isinstance(value, (tuple, list)):
        items = [map_tensors(x, fn, where) for x in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
            return type(value)(*items)
        return type(value)(items)
    if isinstance(value, Mapping):
        mapped = {k: map_tensors(x, fn, where) for k, x in value.items()}
        if all(mapped[k] is x for k, x in value.items()):
            return value
        if not isinstance(value, MutableMapping):  # a read-only mapping: a plain dict
            return mapped
        new = copy.copy(value)
        for k, x in mapped.items():
            new[k] = x
        return new
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value) if f.init]
        fields = {name: map_tensors(getattr(value, name), fn, where) for name in names}
        if all(fields[name] is getattr(value, name) for name in names):
            return value
        return dataclasses.replace(value, **fields)
    return value


def _hidden_tensor(value, seen: set | None = None) -> torch.Tensor | None:
    """A tensor that requires grad inside an object :func:`map_tensors` does not rebuild (found
    among its attributes), or None."""
    seen = set() if seen is None else seen
    if isinstance(value, torch.Tensor) or id(value) in seen:
        return None
    seen.add(id(value))
    if isinstance(value, (tuple, list, Mapping)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    ):
        for child in _children(value):
            found = _hidden_tensor(child, seen)
            if found is not None:
                return found
        return None
    return _grad_tensor_in(getattr(value, "__dict__", {}), set())  # opaque: out of reach


def _grad_tensor_in(value, seen: set) -> torch.Tensor | None:
    """Any tensor that requires grad in ``value``, through containers and attributes."""
    if isinstance(value, torch.Tensor):
        return value if value.requires_grad else None
    if id(value) in seen:
        return None
    seen.add(id(value))
    for child in _children(value):
        found = _grad_tensor_in(child, seen)
        if found is not None:
            return found
    return None


def _children(value) -> list:
    if isinstance(value, (tuple, list)):
        return list(value)
    if isinstance(value, Mapping):
        return list(value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    return list(getattr(value, "__dict__", {}).values())


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
