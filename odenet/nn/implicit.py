"""Implicit layers: each layer solves its step's equations for the new values.

An implicit step reads values it computes: backward Euler's ``x[n+1] = x[n] + h*f(x[n+1])``, the
coupled stages of a Gauss-Legendre method. Its unknowns ``u`` (the coupled stages and every new
value, :func:`odenet.codegen.implicit_unknowns`) satisfy ``u = G(u, s, theta)``, where ``G`` is the
step's equations evaluated in order with the guess ``u`` read wherever an unknown is read before
its own line computes it (generated code, :func:`odenet.codegen.generate_implicit`).

**Forward**, per layer: a predictor (``G`` at the old values, coupled stages at zero: for backward
Euler the explicit Euler step), then a :class:`Solver` under ``no_grad``:

- ``"fixed_point"``: ``u <- G(u)``; converges when ``G`` contracts (backward Euler: ``h*Lip(f) < 1``);
- ``"anderson"`` (default): Anderson acceleration of that iteration (type II, the last ``memory``
  iterates, one least-squares problem for the whole batch);
- ``"newton"``: Newton's method on ``u - G(u) = 0``, each correction by restarted GMRES with
  Jacobian-vector products of ``G`` by ``torch.func.jvp`` (no Jacobian is formed), damped by
  backtracking; converges where ``G`` does not contract, from a close enough start.

A solve stops when the largest relative residual of one unknown of one sample,
``|G(u) - u| / |G(u)|`` (each unknown against its own size), is at most ``tol`` (under autocast to
a lower precision: at least that precision's eps, the rounding of the functions' values); one that
does not within ``max_iter`` iterations, stagnates (``PATIENCE`` iterations without a better
residual), or meets a non-finite value, raises :class:`~odenet.errors.ConvergenceError` naming the
layer and the residual. Then ``G`` is evaluated once more at the solution, with autograd: the only
graph a layer keeps, and only where a gradient can flow (frozen layers under an input that needs
none solve no adjoint).

**Backward** by the implicit function theorem: the layer's output is ``G(u*, s, theta)`` with
``u*`` the solution, and for a gradient ``g`` of the output the gradients of ``s`` and ``theta``
are those of ``G`` with ``w`` in place of ``g``, where ``w = g + (dG/du)^T w``: the adjoint linear
system, solved by the same method (iteration, Anderson, or GMRES on ``(I - dG/du)^T w = g``) with
vector-Jacobian products through the kept graph. No iterate of either solve is stored.

Every evaluation of ``G`` in one layer's solve sees the same random numbers and buffers: the
predictor's calls are recorded (``replay.CallRecord``) and the iterations replay them, so that
``G`` is one function (dropout would otherwise draw new masks at every iteration and the iteration
could not converge); the final evaluation starts from the buffers as they were before the layer and
changes them once (BatchNorm's running statistics move once per layer, with the solution's batch).
Calls that read no unknown (the trapezoidal rule's ``f(x[n])``) are evaluated once per solve.

The block's pass report (``block.last_pass``) lists in ``solves`` ``(layer, iterations,
evaluations, residual)`` for the last forward pass, in ``backward_solves`` the adjoint solves of
the last backward pass. The root finders are in ``solvers.py``. A second-order gradient raises
:class:`~odenet.errors.DoubleBackwardError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch

from odenet.errors import ConvergenceError, DoubleBackwardError, Solve, UnsupportedSchemeError
from odenet.nn.generated import in_state_dtype
from odenet.nn.layers import NO_CONTEXT, Context, Layers
from odenet.nn.replay import AutocastState, CallRecord
from odenet.nn.solvers import Flat, Outcome, SolveInfo, Solver, gmres, solve

__all__ = ["Map", "implicit_layer", "recording_caller", "refuse", "solve_map", "tolerance"]

# -- one layer ---------------------------------------------------------------------------------------


class Map:
    """One step's fixed-point map ``G`` on a given state vector: ``step`` (generated, see
    :func:`odenet.codegen.generate_implicit`), evaluated with ``call``; calls that read no unknown
    (``constant`` keys) are evaluated once while gradients are off."""

    def __init__(self, step, constant, start, state, params, call: Callable | None):
        """``call(key, name, *args)`` evaluates the functions; None where a subclass defines the
        method :meth:`call` itself (a bound method kept as an attribute would make the map a
        reference cycle, its state and cache freed only when Python's cycle collector next ran)."""
        self.step, self.constant, self.start, self.state, self.params = step, constant, start, state, params
        self.cache: dict[int, torch.Tensor] = {}
        self._call = call
        self.layer: int | None = None  # named in a refused function output
        self.shaped: frozenset[int] | None = None  # calls whose results must be state-shaped

    def call(self, key, name, *args):
        if self._call is None:
            raise TypeError(f"{type(self).__name__} was given no call and defines none")
        return self._call(key, name, *args)

    def _cached_call(self, key, name, *args):
        if key in self.constant and not torch.is_grad_enabled():
            if key not in self.cache:
                self.cache[key] = self.call(key, name, *args)
            return self.cache[key]
        return self.call(key, name, *args)

    def evaluate(self, guess: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        call = in_state_dtype(self._cached_call, self.state, self.layer, self.shaped)
        return self.step(self.state, guess, self.params, call)

    def predict(self) -> tuple[torch.Tensor, ...]:
        """``G`` at the current values (unknown new values) and zero (coupled stages): the first iterate."""
        guess = [torch.zeros_like(self.state[0]) if i is None else self.state[i] for i in self.start]
        return self.evaluate(tuple(guess))


class _Layer(Map):
    """Layer ``n``'s map: the first evaluation records its calls, the iterations replay them, and
    :meth:`final` evaluates once more as an ordinary forward would."""

    def __init__(self, layers: Layers, n: int, state: tuple[torch.Tensor, ...], context: Context):
        parts = layers.code.implicit
        super().__init__(parts.step, parts.constant, parts.start, state, layers.layer_params(n), None)
        self.layers, self.n, self.layer, self.shaped = layers, n, n, parts.code.shaped
        self.record = CallRecord(state, kwargs=context.kwargs)
        self.recorded = False

    def call(self, key, name, *args):
        module = self.layers.function(name, self.n)
        if not self.recorded:
            return self.record.run(self.n, key, module, args)
        return self.record.call_again(self.n, key, module, args)

    def evaluate(self, guess: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        out = super().evaluate(guess)
        self.recorded = True
        return out

    def final(
        self, guess: tuple[torch.Tensor, ...], observe: Callable | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``G`` at the solution, as one ordinary evaluation: from the buffers as they were before
        the layer (the record's snapshots), with each call's random numbers, changing the buffers.
        ``observe(key, name, *args)``, if given, evaluates the calls instead (``SchemeBlock.step``)."""
        self.record.restore_buffers()

        def call(key, name, *args):
            self.record.restore_rng(self.n, key)
            if observe is not None:
                return observe(key, name, *args)
            return self.layers.function(name, self.n)(*args, **self.record.kwargs)

        checked = in_state_dtype(call, self.state, self.n, self.shaped)
        return self.step(self.state, guess, self.params, checked)


def tolerance(tol: float, state: tuple[torch.Tensor, ...]) -> float:
    """``tol``, or under autocast to a lower precision at least that precision's eps."""
    dtype = state[0].dtype
    compute = AutocastState(state[0].device.type).compute_dtype(dtype)
    return max(tol, torch.finfo(compute).eps) if compute != dtype else tol


#: How each solve that :func:`refuse` reports is named in its message.
SOLVE_NAMES: dict[Solve, str] = {
    "step": "step's solve",
    "adjoint": "adjoint solve (backward pass)",
    "rebuild": "fixed-point rebuild of its input (reversible backward pass)",
}


def refuse(
    layers,
    solver: Solver,
    n: int,
    solve: Solve,
    outcome: Outcome,
    tol: float,
    advice: str | None = None,
    dtype=torch.float32,
) -> None:
    """Raise :class:`~odenet.errors.ConvergenceError` for a solve that did not reach ``tol``: one that
    stagnated below 100 eps is told that rounding is the limit; one that stagnated above it, that
    more iterations will not help (for Newton: a larger GMRES basis may); one that ran out of
    iterations while still improving, to allow more, however small its residual. ``advice``, where
    given, replaces the last two."""
    eps = torch.finfo(dtype).eps
    dtype_name = str(dtype).removeprefix("torch.")
    reached = (
        "a non-finite value" if not math.isfinite(outcome.residual) else f"residual {outcome.residual:.3g}"
    )
    lower = f"lower the step {layers.scheme.step} or the functions' Lipschitz constant"
    if advice is None:
        newton = "" if solver.method == "newton" else ", or try solver='newton'"
        if not outcome.stagnated:
            advice = f"{lower.capitalize()}, raise max_iter{newton}"
        elif newton:
            advice = f"It stopped improving: {lower}{newton}"
        else:
            basis = f"raise krylov ({solver.krylov} now), the GMRES basis per restart"
            advice = f"It stopped improving: {basis}, or {lower}"
    if outcome.stagnated and math.isfinite(outcome.residual) and outcome.residual < 100 * eps:
        advice = (
            f"The tolerance is below what {dtype_name} rounding allows (eps {eps:.2g}; the residual "
            f"reached {outcome.residual:.2g}): raise tol, or compute in a wider dtype"
        )
    # Newton's adjoint is one GMRES solve: its count is of restarts
    counted = "GMRES restarts" if solve == "adjoint" and solver.method == "newton" else "iterations"
    raise ConvergenceError(
        f"scheme {layers.scheme.name}, layer {n}: the {SOLVE_NAMES[solve]} did not converge with "
        f"{solver.method} ({reached} after {outcome.iterations} {counted}; tolerance {tol:.3g}). {advice}",
        layer=n,
        residual=outcome.residual,
        iterations=outcome.iterations,
        solve=solve,
    )


def solve_map(
    layers, solver: Solver, layer: Map, first, tol: float, per_unknown: bool = True
) -> tuple[Flat, Outcome]:
    """Solve ``u = G(u)`` from ``first`` (G's value at the prediction) with ``solver``, to
    ``tol`` relative to each unknown's size (``per_unknown``) or to the whole state's."""
    flat = Flat(first)

    def g(u: torch.Tensor) -> torch.Tensor:
        return flat.flat(layer.evaluate(flat.split(u)))

    def jvp(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        with warnings.catch_warnings():  # torch's forward-mode AD scripts its decompositions on first use
            warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
            try:
                return torch.func.jvp(g, (u,), (v,))[1]
            except NotImplementedError as exc:  # an operation without a forward-mode derivative
                raise UnsupportedSchemeError(
                    f"scheme {layers.scheme.name}: solver='newton' needs Jacobian-vector products "
                    f"(torch.func.jvp) of the functions, and torch has none for an operation in them "
                    f"({str(exc).splitlines()[0][:160]}); use solver='anderson' or 'fixed_point'"
                ) from exc

    with torch.no_grad():
        sizes = flat.sizes if per_unknown else None
        outcome = solve(solver.method, g, jvp, flat.flat(first), solver, tol, solver.max_iter, sizes)
    return flat, outcome


def implicit_layer(
    layers, n: int, state: tuple[torch.Tensor, ...], solver: Solver, observe=None, context=NO_CONTEXT
) -> tuple[torch.Tensor, ...]:
    """Layer ``n`` of an implicit block: its solve, and the new state vector. ``observe(key, name,
    *args)``, if given, evaluates the calls of the final evaluation, at the solution. ``context``:
    the functions' keyword arguments; the final evaluation reads its tensors with autograd, so
    the implicit-function backward reaches them as it reaches the functions' parameters."""
    layer = _Layer(layers, n, state, context)
    with torch.no_grad():
        first = layer.predict()
    tol = tolerance(solver.tol, state)
    flat, outcome = solve_map(layers, solver, layer, first, tol)
    if not outcome.residual <= tol:
        refuse(layers, solver, n, "step", outcome, tol, dtype=state[0].dtype)
    layers.last_pass.solves.append(
        SolveInfo(n, outcome.iterations, outcome.evaluations + 1, outcome.residual)
    )
    solution = flat.split(outcome.value)
    if torch.is_grad_enabled() and _needs_graph(layers, n, state, layer.params, context):
        leaves = tuple(t.detach().requires_grad_(True) for t in solution)
        values = layer.final(leaves, observe)
        unknowns = _ImplicitGradient.apply(_Adjoint(layers, solver, n, leaves, values, flat, tol), *values)
    else:
        unknowns = layer.final(solution, observe)
    return tuple(unknowns[i] if new else state[i] for new, i in layers.code.implicit.assemble)


def recording_caller(layers: Layers, n: int, state, context: Context = NO_CONTEXT) -> Callable:
    """``call(key, name, *args)`` for repeated evaluations of layer ``n`` outside a training pass
    (``SchemeBlock.inverse``): the first evaluation of each call records what it started from and
    changes the buffers once; later ones replay it (same random numbers, buffers untouched)."""
    record = CallRecord(state, kwargs=context.kwargs)
    seen: set[int] = set()

    def call(key, name, *args):
        module = layers.function(name, n)
        if key not in seen:
            seen.add(key)
            return record.run(n, key, module, args)
        return record.call_again(n, key, module, args)

    return call


def _needs_graph(layers: Layers, n: int, state, params, context: Context) -> bool:
    """Whether a gradient can flow through layer ``n``: its input, its functions' parameters, its
    scheme parameters or the context require one (frozen layers below the trained ones solve no
    adjoint)."""
    if any(t.requires_grad for t in state) or any(
        isinstance(v, torch.Tensor) and v.requires_grad for v in params.values()
    ):
        return True
    if context.requiring_grad():
        return True
    return any(p.requires_grad for m in layers.layer_modules(n) for p in m.parameters())


class _Adjoint:
    """What the backward pass of one layer needs: the kept evaluation of ``G`` at the solution."""

    def __init__(self, layers: Layers, solver, n, leaves, values, flat, tol):
        self.layers, self.solver, self.n, self.leaves, self.values, self.flat, self.tol = (
            layers,
            solver,
            n,
            leaves,
            values,
            flat,
            tol,
        )

    def solve(self, grads: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """``w = g + (dG/du)^T w`` for the output's gradient ``g``."""
        layers, flat, solver = self.layers, self.flat, self.solver
        pairs = [(v, i) for i, v in enumerate(self.values) if v.requires_grad]
        outputs = [v for v, _ in pairs]

        def transposed(w: torch.Tensor) -> torch.Tensor:  # (dG/du)^T w
            parts = flat.split(w)
            found = torch.autograd.grad(
                outputs, self.leaves, [parts[i] for _, i in pairs], retain_graph=True, allow_unused=True
            )
            return flat.flat(
                [
                    torch.zeros_like(leaf) if r is None else r
                    for leaf, r in zip(self.leaves, found, strict=True)
                ]
            )

        given = flat.flat(grads)
        tol = self.tol if solver.backward_tol is None else solver.backward_tol  # self.tol: the forward's
        max_iter = solver.adjoint_max_iter
        if not outputs or float(given.abs().max()) == 0.0:
            outcome = Outcome(given, 0, 0, 0.0)
        elif solver.method == "newton":
            w, used, cycles, relative, stagnated = gmres(
                lambda v: v - transposed(v.view_as(given)).reshape(-1),
                given.reshape(-1),
                tol,
                max_iter * solver.krylov,
                solver.krylov,
            )
            outcome = Outcome(w.view_as(given), cycles, used, relative, stagnated)  # restarts, products
        else:
            outcome = solve(
                solver.method, lambda w: given + transposed(w), None, given, solver, tol, max_iter, flat.sizes
            )
        if not outcome.residual <= tol:
            refuse(layers, solver, self.n, "adjoint", outcome, tol, dtype=given.dtype)
        layers.last_pass.backward_solves.append(
            SolveInfo(self.n, outcome.iterations, outcome.evaluations, outcome.residual)
        )
        return flat.split(outcome.value)


class _ImplicitGradient(torch.autograd.Function):
    """The identity on ``G``'s values at the solution; its backward hands ``G``'s graph the adjoint
    solution ``w`` instead of the output's gradient (the implicit function theorem)."""

    @staticmethod
    def forward(ctx, adjoint: _Adjoint, *values):
        ctx.adjoint = adjoint
        ctx.set_materialize_grads(True)
        return tuple(v.clone() for v in values)

    @staticmethod
    def backward(ctx, *grads):
        if torch.is_grad_enabled():
            raise DoubleBackwardError(
                "an implicit layer's gradient comes from a linear solve; a second-order gradient "
                "(create_graph=True) through it is not supported"
            )
        w = ctx.adjoint.solve(grads)
        return (None, *w)
