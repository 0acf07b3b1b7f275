"""Implicit layers: a solve per layer, the gradient by the implicit function theorem (``implicit.py``)."""

from __future__ import annotations

import dataclasses

import torch

from odenet.errors import UnsupportedSchemeError
from odenet.nn.implicit import implicit_layer
from odenet.nn.modes.base import NO_CONTEXT, Context, Layers, MemoryMode, State
from odenet.nn.solvers import Solver, check_solver

__all__ = ["Implicit"]


@dataclasses.dataclass(repr=False)
class Implicit(MemoryMode):
    """Each layer of an implicit scheme (its step reads values it computes: backward Euler, coupled
    stages) solves its step with ``solver`` (a :class:`~odenet.nn.solvers.Solver` or a method's
    name) and keeps one evaluation; its backward pass solves the adjoint system. What
    ``memory="autograd"`` means for an implicit scheme."""

    solver: Solver = dataclasses.field(default_factory=Solver)
    name = "implicit"
    exact_gradients = True
    options = ("solver",)

    def __post_init__(self):
        self.solver = check_solver(self.solver)

    def setup(self, layers: Layers) -> None:
        if layers.scheme.is_explicit:
            raise UnsupportedSchemeError(
                f"scheme {layers.scheme.name} is explicit: its layers have no equations to solve; "
                "use memory='autograd'"
            )

    @torch.compiler.disable
    def run(self, layers: Layers, state: State, context: Context = NO_CONTEXT) -> State:
        """A solve per layer, with data-dependent iteration counts (opaque to torch.compile)."""
        report = layers.last_pass
        report.solves = []
        if torch.is_grad_enabled():  # a backward pass may follow: its solves replace the last one's
            report.backward_solves = []
        for n in range(layers.depth):
            state = implicit_layer(layers, n, state, self.solver, context=context)
        return state

    def extra_repr(self) -> str:
        return f", solver={self.solver.method}, tol={self.solver.tol:g}"
