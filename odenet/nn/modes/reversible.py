"""``memory="reversible"``: training without storing activations, with a guard on every rebuilt input.

Forward runs every layer under ``no_grad`` and keeps only the last output, plus exact copies of the
state at a few layer boundaries (the block's input is always one). Backward walks the layers from
last to first:

1. rebuild layer ``n``'s input from its output by the derived inverse (or, where the inverse is a
   fixed point, by solving it with ``solver``);
2. take layer ``n``'s vector-Jacobian product at the rebuilt input, for the input and the layer's
   parameters: the step's own arithmetic by generated code (``codegen.generate_vjp``: sympy's
   derivatives of the elementwise expressions), the functions by autograd, each call through the
   graph of its evaluation. No graph of the step's adds and multiplies is built.

The inverse and the product need the functions at the same points (leapfrog: ``f(y[n])``;
reversible Heun: ``f(z[n])`` and ``f(z[n+1])``), so each call is evaluated once: the inverse keeps
the evaluation with its small graph, and the product pulls the call's gradient through it (at an
exact copy too, where the evaluation point differs from the copy by no more than the tolerance
checked there). Each position of the state vector has its own gradient symbol, so a value held at
two positions (multistep history ``u[n-1]``) has its gradient counted once. The vector-Jacobian
products are taken with respect to the block's state and its registered parameters only: a tensor
that requires grad and that a function reaches otherwise (a closure, an attribute set from
outside) would silently get no gradient, so the first backward pass of a block walks the
evaluations' graphs and refuses one.

Every evaluation in backward runs under what the forward's evaluation saw (``replay.py``): its
random-number state, its autocast settings and its buffers. Parameters, fixed scheme parameters
and the input changed in place between forward and backward are refused, as autograd refuses them.

**Drift and the guard.** Rounding error grows through the inverse (``drift.py`` plans exact copies
against it). At every copy the rebuilt input is compared with the copy: there the error is
measured, not predicted (``reconstruction_errors`` of the pass report); between two copies it is
taken to grow with the distance from the copy above. The errors, non-finite ones included, stay on
the device until they are read. The tolerance is ``tolerance``, by default 100 eps of the state's
dtype, and under autocast to a lower precision at least eps / 10 of that precision. When an error
passes it:

- ``guard="adaptive"`` (default): the stack runs as release groups, each one ``autograd.Function``
  whose input is kept as an exact copy (as well as the copies the plan places inside it). A
  group reads its errors when its layers are done, before it returns any gradient; if one fails,
  the group's inputs are recomputed exactly by the forward from its input, in chunks of about
  sqrt(length) layers, and its gradients taken from those. The growth measured is remembered, so
  later passes keep copies closer together. Groups are ``sqrt(depth * S / P)`` layers long (S:
  bytes of the state, P: parameter bytes per layer; at least ``shortest_group``), which balances
  the copies they add against the gradients they hold;
- ``guard="raise"``: the stack runs as segments of ``shortest_group`` layers that release their
  parameters' gradients as they finish, with no copies beyond the plan and the input of the lowest
  segment that takes part (memory flat in depth); the errors are read once, when the lowest segment
  is done or, if it does not run (a gradient asked only of upper layers), at the end of the
  backward pass, after an exact recomputation of the last rebuilt input; a failure raises
  :class:`~odenet.errors.ReconstructionError` naming the layer from which the error, estimated from
  the measured growth, passes the tolerance.

``budget`` keeps the graphs of the top layers that fit (``budget.py``). A second-order gradient
(``create_graph=True``) raises :class:`~odenet.errors.DoubleBackwardError`.
"""

from __future__ import annotations

import dataclasses

import torch

from odenet.errors import UnsupportedSchemeError
from odenet.nn.budget import check_budget, graph_layers, keep_graphs
from odenet.nn.copies import CopiesPass
from odenet.nn.drift import DriftControl, check_guard, check_tolerance
from odenet.nn.modes.base import NO_CONTEXT, Context, Layers, MemoryMode, State
from odenet.nn.rebuild import run_groups
from odenet.nn.replay import AutocastState
from odenet.nn.solvers import Solver, check_solver
from odenet.options import Guard

__all__ = ["Reversible", "run_rebuilding"]


@dataclasses.dataclass(repr=False)
class Reversible(MemoryMode):
    """Each layer's input rebuilt by the derived inverse in the backward pass: memory flat in depth,
    gradients equal to autograd's (see the module doc). ``tolerance``: the accepted relative error
    of a rebuilt input (default 100 eps of the dtype); ``guard``: ``"adaptive"`` repairs a group
    that passes it, ``"raise"`` raises; ``budget``: keep the graphs of the top layers (a fraction
    in [0, 1] or bytes); ``solver``: how a fixed-point inverse is solved (Euler, Heun)."""

    tolerance: float | None = None
    guard: Guard = "adaptive"
    budget: float | int | None = None
    solver: Solver = dataclasses.field(default_factory=Solver)
    name = "reversible"
    exact_gradients = True
    options = ("tolerance", "guard", "budget", "solver")

    def __post_init__(self):
        self.tolerance = check_tolerance(self.tolerance)
        self.guard = check_guard(self.guard)
        self.budget = check_budget(self.budget, self.name)
        self.solver = check_solver(self.solver)

    def setup(self, layers: Layers) -> None:
        super().setup(layers)
        code = layers.code
        if code.inverse.code is None and code.fixed_point_inverse[1] is not None:
            raise UnsupportedSchemeError(
                f"memory='reversible' needs an inverse, and {code.inverse.error} "
                f"Nor is it a fixed point: {code.fixed_point_inverse[1]} "
                "Use memory='checkpoint' (exact gradients, memory O(sqrt(depth))) or memory='adjoint' "
                "(approximate gradients, memory O(1))."
            )
        self.drift = DriftControl(layers, self.tolerance, self.guard)
        self.repairs = 0  # release groups the adaptive guard recomputed exactly, over the block's life
        self.probe: tuple | None = None  # (input's description, bytes layer 0's graph saves)

    def __getstate__(self):
        return {**self.__dict__, "probe": None}

    @torch.compiler.disable
    def run(self, layers: Layers, state: State, context: Context = NO_CONTEXT) -> State:
        if layers.code.inverse.code is None:
            _refuse_lower_precision(layers.scheme.name, state)
        layers.last_pass.rebuilds = []
        return run_rebuilding(layers, self, state, exact=True, context=context)

    def rebuild_tolerance(self, dtype: torch.dtype) -> float:
        return self.drift.tolerance_for(dtype)

    def extra_repr(self) -> str:
        return "" if self.budget is None else f", memory_budget={self.budget}"


def run_rebuilding(layers: Layers, mode, state: State, exact: bool, context: Context = NO_CONTEXT) -> State:
    """All layers, keeping no activations beyond the graphs ``mode.budget`` allows: one
    ``autograd.Function`` per release group (``copies.py``), then the top layers that keep their
    graphs."""
    report = layers.last_pass
    report.graph_layers = 0
    report.graph_bytes = 0 if isinstance(mode.budget, int) else None  # measured for bytes only
    if not mode.tracked(layers, state, context):
        return layers.steps(0, layers.depth, state, context)  # nothing to differentiate: a plain loop
    stop = layers.depth - graph_layers(layers, mode, state, context)
    if stop == 0:
        report.kept_bytes = 0
        return keep_graphs(layers, mode, 0, state, context)
    run = CopiesPass(layers, mode, exact, state, stop, context)
    state = run_groups(run, state)
    report.kept_bytes = run.kept_bytes()
    return keep_graphs(layers, mode, stop, state, context) if stop < layers.depth else state


def _refuse_lower_precision(name: str, state: State) -> None:
    """A fixed-point inverse cannot rebuild inputs under autocast to a lower precision: the
    functions' rounding makes the map jump by an eps of that precision near the input, so the
    iteration stalls about ten times above the tolerance the guard needs (measured: bfloat16,
    residual 1.3e-3 against 7.8e-4), and every rebuild would be repaired or refused."""
    dtype = state[0].dtype
    compute = AutocastState(state[0].device.type).compute_dtype(dtype)
    if compute != dtype:
        raise UnsupportedSchemeError(
            f"scheme {name} rebuilds its inputs by fixed-point iteration, which cannot reach "
            f"the reconstruction tolerance with {str(compute).removeprefix('torch.')} functions under "
            "autocast (their rounding moves the map by more); use memory='checkpoint' under autocast, or "
            "train without it"
        )
