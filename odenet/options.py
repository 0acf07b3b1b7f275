"""The choices odenet offers, each named once, as ``Literal`` types (no torch here).

The compiled blocks, the model and training configurations and the command line all read their
allowed values from these types (``choices(Memory)`` is ``("autograd", ...)``), so a choice is added
in one place and a type checker sees the same set as the validation.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

__all__ = [
    "Activation",
    "DataName",
    "Family",
    "Guard",
    "Layout",
    "Memory",
    "Optimizer",
    "Schedule",
    "SolverMethod",
    "StabilityTarget",
    "Task",
    "choices",
    "spatial_dims",
]

Memory = Literal["autograd", "checkpoint", "reversible", "adjoint", "fixed_point"]
"""What a compiled block keeps for the backward pass (docs/compile.md)."""

SolverMethod = Literal["anderson", "newton", "fixed_point"]
"""How an implicit layer solves its step (and its adjoint): docs/compile.md, implicit layers."""

Guard = Literal["adaptive", "raise"]
"""What a memory-saving block does when a rebuilt input drifts past its tolerance."""

Family = Literal["mlp", "bn", "chang", "antisymmetric"]
"""The residual-function families of :mod:`odenet.models.families`."""

Activation = Literal["tanh", "relu"]

Layout = Literal["mlp", "conv", "conv1d"]
"""Feature vectors (``mlp``), images (``conv``: channels x height x width) or signals (``conv1d``:
channels x length)."""

Optimizer = Literal["adam", "sgd"]

Schedule = Literal["cosine", "constant"]

DataName = Literal["digits", "mnist1d", "rings", "cross1d"]
"""The bundled data sets (nothing is downloaded)."""

Task = Literal["classification", "regression"]

StabilityTarget = Literal["interval", "growth"]
"""What --stability-penalty bounds (odenet.models.penalty): each function's Jacobian against the real
stability interval, or the growth per step of each layer's joint linearization."""


def choices(option: Any) -> tuple[str, ...]:
    """The allowed values of one of the ``Literal`` types above, in their order."""
    return tuple(get_args(option))


def spatial_dims(layout: str) -> int:
    """How many spatial dimensions one example of ``layout`` has after its channels (0 for vectors)."""
    return {"mlp": 0, "conv": 2, "conv1d": 1}[layout]
