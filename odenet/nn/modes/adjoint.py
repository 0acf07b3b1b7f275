"""``memory="adjoint"``: each input rebuilt approximately by a step with ``-h`` (Sander et al. 2022)."""

from __future__ import annotations

import dataclasses

import torch

from odenet.errors import UnsupportedSchemeError
from odenet.nn.budget import check_budget
from odenet.nn.modes.base import NO_CONTEXT, Context, Layers, MemoryMode, State
from odenet.nn.modes.reversible import run_rebuilding

__all__ = ["Adjoint"]


@dataclasses.dataclass(repr=False)
class Adjoint(MemoryMode):
    """Only the output kept: each layer's input is rebuilt by the forward step with ``-h`` in
    reversed time, exact for time-symmetric schemes such as leapfrog, approximate otherwise (its
    error is measured at the block's input and reported, not bounded). Any explicit scheme with a
    step parameter. ``budget`` as :class:`~odenet.nn.modes.Reversible`'s."""

    budget: float | int | None = None
    name = "adjoint"
    exact_gradients = False
    options = ("budget",)

    def __post_init__(self):
        self.budget = check_budget(self.budget, self.name)

    def setup(self, layers: Layers) -> None:
        super().setup(layers)
        scheme = layers.scheme
        if scheme.step not in [p.name for p in scheme.params]:
            raise UnsupportedSchemeError(
                f"memory='adjoint' rebuilds each layer's input by a step with -{scheme.step}, and scheme "
                f"{scheme.name} has no step parameter {scheme.step}; declare one ('step h = 0.1') or use "
                "memory='checkpoint'"
            )
        from odenet.analysis.inverse import negative_step_problem

        problem = negative_step_problem(scheme)
        if problem is not None:
            raise UnsupportedSchemeError(
                f"memory='adjoint' rebuilds each layer's input by a step with -{scheme.step}, and in "
                f"scheme {scheme.name} {problem}; use memory='checkpoint'"
            )
        self.repairs = 0
        self.probe: tuple | None = None

    def __getstate__(self):
        return {**self.__dict__, "probe": None}

    @torch.compiler.disable
    def run(self, layers: Layers, state: State, context: Context = NO_CONTEXT) -> State:
        layers.last_pass.rebuilds = []
        return run_rebuilding(layers, self, state, exact=False, context=context)

    def extra_repr(self) -> str:
        return "" if self.budget is None else f", memory_budget={self.budget}"
