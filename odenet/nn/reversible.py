"""Training without storing activations, with a guard on every rebuilt input.

Forward runs every layer under ``no_grad`` and keeps only the last output, plus exact copies of the
state at a few layer boundaries (the block's input is always one). Backward walks the layers from
last to first:

1. rebuild layer ``n``'s input from its output: exactly, by the derived inverse (``reversible``), or
   approximately, by a step with ``-h`` (``adjoint``, Sander et al. 2022);
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
outside) would silently get no gradient, so the first backward pass
of a block walks the evaluations' graphs and refuses one.

Every evaluation in backward runs under what the forward's evaluation saw (``replay.py``): its
random-number state, its autocast settings and its buffers. Parameters, fixed scheme parameters
and the input changed in place between forward and backward are refused, as autograd refuses them.

**Drift and the guard.** An inverse that divides (momentum: ``v[n] = (v[n+1] - (1-gamma) f(x[n]))
/gamma``) multiplies rounding error by its backward amplification ``a`` (spectral radius of
``M(0)^-1``) per layer, and any inverse multiplies it by the growth of the backward dynamics, which
depends on the functions' Jacobians (leapfrog with a strongly expanding ``f``). :class:`DriftControl`
plans exact copies so that the growth it expects (``a`` per layer, or the growth it measured on
earlier passes, whichever is larger) keeps the error under a quarter of the tolerance between two
copies (a sixteenth with the raise guard). At every copy the rebuilt input is compared with the
copy: there the error is measured, not predicted (``block.reconstruction_errors``); between two
copies it is taken to grow with the distance from the copy above. The errors, non-finite ones
included, stay on the device until they are read. The tolerance is ``drift_tolerance``, by default
100 eps of the state's dtype, and under autocast to a lower precision at least eps / 10 of that
precision. When an error passes it:

- ``guard="adaptive"`` (default): the stack runs as release groups, each one ``autograd.Function``
  whose input is kept as an exact copy (as well as the copies the plan places inside it). A
  group reads its errors when its layers are done, before it returns any gradient; if one fails,
  the group's inputs are recomputed exactly by the forward from its input, in chunks of about
  sqrt(length) layers, and its gradients taken from those. The growth measured is remembered, so
  later passes keep copies closer together. Groups are ``sqrt(depth * S / P)`` layers long (S:
  bytes of the state, P: parameter bytes per layer; at least ``shortest_group``: SEGMENT, or fewer
  where the layers' parameters outweigh the state), which balances the copies
  they add against the gradients they hold; the errors are read once per group (once per backward
  when the block is one group, as for convolutional functions of a few channels);
- ``guard="raise"``: the stack runs as segments of ``shortest_group`` layers that release their parameters'
  gradients as they finish, with no copies beyond the plan and the input of the lowest segment
  that takes part (memory flat in depth, also when gradients accumulate into existing ``.grad``);
  the errors are read once, when the lowest segment is done or, if it does not run (a gradient
  asked only of upper layers), at the end of the backward pass, after an exact recomputation of the
  last rebuilt input; a failure raises :class:`~odenet.errors.ReconstructionError` naming the layer
  from which the error, estimated from the measured growth, passes the tolerance.

A second-order gradient (``create_graph=True``) raises :class:`~odenet.errors.DoubleBackwardError`.
"""

from __future__ import annotations

import bisect
import copy
import math
import numbers

import numpy as np
import sympy
import torch

from odenet.errors import ConfigError, DoubleBackwardError, ReconstructionError, UnsupportedSchemeError
from odenet.nn.memory import saved_tensor_bytes
from odenet.nn.params import constrain
from odenet.nn.replay import AutocastState, CallRecord
from odenet.options import Guard, choices

__all__ = ["GUARDS", "DriftControl", "ReconstructionError", "check_budget", "run_reversible"]

GUARDS = choices(Guard)

# Accepted relative error of a rebuilt state, by default: rounding may grow 100-fold (two digits)
# before a copy restores the state (1.2e-5 in float32, 2.2e-14 in float64).
DEFAULT_GROWTH = 100.0
# Copies are planned for an error of tolerance / PLAN_MARGIN, so that the guard rarely has to act:
# the amplification a = rho(M(0)^-1) ignores the functions (momentum, gamma = 0.9, float32: measured
# growth 1.17 per layer where a = 1.11) and the rounding added at every layer; where it
# underestimates more than that, the guard measures it and the plan learns. The raise guard cannot
# repair, so it plans with a wider margin.
PLAN_MARGIN = {"adaptive": 4.0, "raise": 16.0}

SEGMENT = 16  # layers per autograd.Function with guard="raise", the shortest adaptive group (fewer
# where the layers' parameters are large against the state: shortest_group)


class DriftControl:
    """Where to keep exact copies of the state so that rebuilt inputs stay accurate."""

    def __init__(self, block, tolerance: float | None, guard: str = "adaptive"):
        if guard not in GUARDS:
            raise ConfigError(f"guard must be one of {', '.join(GUARDS)}, not {guard!r}")
        if tolerance is not None and not float(tolerance) > 0:
            raise ConfigError(f"drift_tolerance must be a number > 0, not {tolerance!r}")
        self.block = block
        self.tolerance = None if tolerance is None else float(tolerance)
        self.guard = guard
        self.reset()

    def reset(self) -> None:
        """Forget the measured growth and the cached amplifications."""
        self._matrix = None
        self._amplifications: np.ndarray | None = None
        self._source: tuple | None = None
        self.learned = np.ones(self.block.depth)  # growth per layer measured by the guard

    def __getstate__(self):
        return {**self.__dict__, "_matrix": None}  # sympy matrix: rebuilt on first use

    # -- the backward amplification of each layer, a(n) = rho(M(0)^-1) ----------------------------
    def _parameters(self) -> list[tuple[str, torch.Tensor]]:
        """The parameter tensors M(0) depends on (learnable: one value per layer; fixed: a scalar)."""
        if self._matrix is None:
            from odenet.analysis.stability import LAMBDA, amplification_matrix

            self._matrix = amplification_matrix(self.block.scheme).subs(LAMBDA, 0)
        names = sorted(s.name for s in self._matrix.free_symbols)
        block = self.block
        return [
            (name, block.raw_params[name] if name in block.raw_params else getattr(block, f"fixed_{name}"))
            for name in names
        ]

    def device_values(self) -> torch.Tensor:
        """The values of those parameters for every layer, on their device, as one float64 vector."""
        depth = self.block.depth
        parts = []
        for name, tensor in self._parameters():
            if name in self.block.raw_params:
                values = constrain(tensor.detach(), self.block._intervals[name])
            else:
                values = tensor.detach().expand(depth)
            parts.append(values.to(torch.float64))
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def refresh(self, values) -> None:
        """Compute the amplifications from the parameters' values (``device_values``, on the host)."""
        from odenet.analysis.numeric import evaluate

        parameters = self._parameters()
        matrix, depth = self._matrix, self.block.depth
        values = np.asarray(values, dtype=float)
        env = {
            sympy.Symbol(name, real=True): values[i * depth : (i + 1) * depth]
            for i, (name, _) in enumerate(parameters)
        }
        size = matrix.shape[0]
        stacked = np.empty((depth, size, size))
        for i in range(size):
            for j in range(size):
                stacked[:, i, j] = evaluate(matrix[i, j], env, {})
        with np.errstate(all="ignore"):
            determinants = np.linalg.det(stacked)
        out = np.full(depth, math.inf)
        regular = np.abs(determinants) > 1e-300
        if regular.any():
            out[regular] = np.abs(np.linalg.eigvals(np.linalg.inv(stacked[regular]))).max(axis=-1)
        self._amplifications = out
        self._source = self._identity()

    def _identity(self) -> tuple:
        return tuple((id(t), t.data_ptr(), t.device, t.dtype, t._version) for _, t in self._parameters())

    def amplifications(self) -> np.ndarray:
        """Backward amplification of each layer at the current parameter values. Learnable
        parameters are read from the device at every call (once per forward pass that plans; an
        optimizer step may move them without telling: fused optimizers leave version counters
        alone); fixed ones only when the tensors were replaced or written (``to()``,
        ``load_state_dict``)."""
        parameters = self._parameters()
        learnable = any(name in self.block.raw_params for name, _ in parameters)
        if learnable or self._amplifications is None or self._source != self._identity():
            self.refresh(_to_host(self.device_values()))
        return self._amplifications

    # -- the plan and what the guard learns ------------------------------------------------------
    def tolerance_for(self, dtype: torch.dtype, autocast: AutocastState | None = None) -> float:
        """The accepted relative error of a rebuilt state: ``drift_tolerance``, or 100 eps of the
        state's dtype. Under autocast to a lower precision the functions' own rounding sets the
        gradient's accuracy, and a rebuild may add a tenth of it: at least eps(compute dtype) / 10
        (a rebuild off by a whole eps made float16 gradients 1.8 times autograd's error)."""
        if self.tolerance is not None:
            return self.tolerance
        tolerance = DEFAULT_GROWTH * torch.finfo(dtype).eps
        compute = dtype if autocast is None else autocast.compute_dtype(dtype)
        return max(tolerance, torch.finfo(compute).eps / 10)

    def boundaries(self, dtype: torch.dtype, tolerance: float | None = None) -> set[int]:
        """Layer boundaries (the input of layer j is boundary j) at which to keep an exact copy."""
        eps = torch.finfo(dtype).eps
        target = (self.tolerance_for(dtype) if tolerance is None else tolerance) / PLAN_MARGIN[self.guard]
        rates = np.maximum(self.amplifications(), self.learned)
        keep = {0}
        accumulated = 1.0
        for n in reversed(range(self.block.depth)):  # backward order: error grows from the output
            if accumulated * rates[n] * eps > target:
                keep.add(n + 1)
                accumulated = 1.0
            accumulated *= rates[n]
        keep.discard(self.block.depth)
        return keep

    def learn(self, intervals, eps: float, tolerance: float) -> None:
        """Remember the growth per layer of every interval ``(low, high, error)`` whose measured
        error passed the planned one, so that later plans keep copies closer together."""
        for low, high, error in intervals:
            if not error <= tolerance / PLAN_MARGIN[self.guard]:  # NaN included
                growth = (error / eps) ** (1 / (high - low)) if math.isfinite(error) else math.inf
                self.learned[low:high] = np.maximum(self.learned[low:high], growth)


class _Pass:
    """What one forward pass through the stack shares with its backward pass: the exact copies, the
    release groups, the record of every call, the autocast settings, the errors measured, and during
    backward the state handed from a group to the one below it (groups do not save their outputs)."""

    def __init__(self, block, exact: bool, state: tuple[torch.Tensor, ...], stop: int):
        self.block, self.exact, self.stop = block, exact, stop  # layers [0, stop) (above: graphs kept)
        self.dtype, self.device = state[0].dtype, state[0].device
        self.eps = torch.finfo(self.dtype).eps
        self.autocast = AutocastState(self.device.type)
        self.record = CallRecord(state)
        self.adaptive = exact and block.drift.guard == "adaptive"
        self.negative_step = {} if exact else block.negative_step_points  # the adjoint's shared calls
        self.function_params = function_params(block)
        if exact:
            self.tolerance = block.drift.tolerance_for(self.dtype, self.autocast)
            planned = block.drift.boundaries(self.dtype, self.tolerance)
            self.keep = {n for n in planned if n < stop}
        else:  # the adjoint is approximate by design: its error is reported, not bounded
            self.tolerance, self.keep = math.inf, {0}
        state_bytes = sum(t.nbytes for t in state)
        per_layer = _parameter_bytes(block, self.function_params) / block.depth
        self.shortest = shortest_group(state_bytes, per_layer)
        if self.adaptive:
            self.groups = self._groups(state_bytes, per_layer)
        else:
            size = self.shortest
            self.groups = [(low, min(low + size, stop)) for low in range(0, stop, size)]
        self.copies: dict[int, tuple[torch.Tensor, ...]] = {}  # detached: no cycle through grad_fn
        self.versions: list[tuple[torch.Tensor, int]] = []  # what backward needs unchanged
        self.lowest = 0  # the lowest group that takes part in autograd's graph
        self.pending: list[tuple[int, torch.Tensor]] = []  # errors measured, not read yet
        self.measured: list[tuple[int, float]] = []
        self.handoff: tuple[torch.Tensor, ...] | None = None
        self.reached = stop  # the lowest layer whose input this backward pass rebuilt
        self.checked = False

    def _groups(self, state_bytes: int, per_layer: float) -> list[tuple[int, int]]:
        """Release groups for the adaptive guard: L layers each, each starting at an exact copy (its
        input), so that its errors are read and a failure repaired before any of its gradients is
        released. A group holds its parameters' gradients until then, and L = sqrt(depth * state
        bytes / parameter bytes per layer), at least ``shortest_group``, balances the two costs (the
        copies, depth/L states; the held gradients, L layers)."""
        stop = self.stop
        limit = (
            stop if per_layer == 0 else max(self.shortest, math.isqrt(int(stop * state_bytes / per_layer)))
        )
        self.keep |= set(range(0, stop, limit))
        return [(low, min(low + limit, stop)) for low in range(0, stop, limit)]

    def kept_bytes(self) -> int:
        """Memory kept beyond the output: exact copies (the block's input excluded, each storage
        once) and the record of random-number states and buffers."""
        storages = {}
        for n, kept in self.copies.items():
            for t in kept if n else ():
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        inputs = {t.untyped_storage().data_ptr() for t in self.copies.get(0, ())}
        return sum(v for k, v in storages.items() if k not in inputs) + self.record.nbytes()

    def check_unchanged(self) -> None:
        check_unchanged(self.block, self.versions)

    def final_check(self) -> None:
        """The raise guard's read when the lowest segment did not run (the backward pass stopped
        above it): the last rebuilt input is compared with its value recomputed exactly by the
        forward from the copy below, then every error is read."""
        if self.checked or self.handoff is None:
            return
        if self.reached not in self.copies:
            below = max(n for n in self.copies if n < self.reached)
            state = self.copies[below]
            with torch.no_grad(), self.autocast.restored():
                for n in range(below, self.reached):
                    state = self.block.step(n, state, self.record.caller(self.block, n))
            self.pending.append((self.reached, _relative_error(self.handoff, state)))
        failure = self.check()
        if failure is not None:
            raise failure

    def check(self) -> ReconstructionError | None:
        """Read the errors measured since the last check in one transfer; return the error to raise
        or repair when a rebuilt input is non-finite or off by more than the tolerance."""
        block, pending = self.block, self.pending
        self.pending, self.checked = [], True
        host = _to_host(torch.stack([e.to(torch.float64) for _, e in pending])) if pending else []
        measured = sorted((n, e) for (n, _), e in zip(pending, host, strict=True))
        self.measured += measured
        block.reconstruction_errors = sorted(self.measured)
        tops = sorted(self.keep | {self.reached, self.stop})
        intervals = [(low, tops[bisect.bisect_right(tops, low)], e) for low, e in measured]
        if self.exact:
            block.drift.learn(intervals, self.eps, self.tolerance)
        failing = [(low, high, e) for low, high, e in intervals if not e <= self.tolerance]
        if not failing:
            return None
        low, high, error = max(failing)  # the highest: the first met in backward order
        name = block.scheme.name
        advice = (
            "guard='adaptive' recomputes such layers exactly; or lower drift_tolerance (copies closer "
            "together), or use memory='checkpoint'"
            if self.exact
            else "the step with -h is unstable here; use memory='checkpoint'"
        )
        if not math.isfinite(error):
            return ReconstructionError(
                f"rebuilding the input of layer {low} of {name} gave non-finite values (the rebuild "
                f"went wrong between layers {low} and {high - 1}): the inverse amplifies rounding "
                f"error too much; {advice}"
            )
        # log-linear growth from eps at the copy above to the error measured at this one
        steps = (high - low) * math.log(self.tolerance / self.eps) / math.log(error / self.eps)
        first = min(high - 1, max(low, math.floor(high - steps)))
        return ReconstructionError(
            f"rebuilding the input of layer {low} of {name}: relative error {error:.3g} against its "
            f"exact copy, more than the tolerance {self.tolerance:.3g}; by the growth measured, the error "
            f"passes the tolerance from layer {first} down, so the gradients of layers {low} to {first} "
            f"would be wrong; {advice}"
        )


def check_unchanged(block, versions) -> None:
    """Refuse, as autograd does, a backward pass after the input, a parameter or a fixed scheme
    parameter was changed in place since the forward pass (the rebuild would use new values);
    ``versions``: ``(tensor, version at the forward)`` pairs."""
    for tensor, version in versions:
        if tensor._version != version:
            raise RuntimeError(
                f"a tensor {block.scheme.name}'s block needs for its backward pass (its input, "
                f"a parameter or a fixed scheme parameter, shape {tuple(tensor.shape)}) was modified "
                "in place after the forward pass; run the forward again, or clone the input "
                "before modifying it"
            )


def function_params(block) -> dict[str, list[list[torch.Tensor]]]:
    """Each function's parameters per layer, listed once per pass (walking modules is slow)."""
    return {
        name: [list(block.functions[name].parameters())] * block.depth
        if block.shared[name]
        else [list(m.parameters()) for m in block.functions[name]]
        for name in block.functions
    }


def _parameter_bytes(block, function_params) -> int:
    """Bytes of the functions' own trainable parameters over all layers (shared ones left out: their
    gradient is one tensor however many layers a group holds)."""
    return sum(
        p.nbytes
        for name, layers in function_params.items()
        if not block.shared[name]
        for params in layers
        for p in params
        if p.requires_grad
    )


HELD_GRADIENTS = 16 * 2**20  # bytes of parameter gradients a group may always hold


def shortest_group(state_bytes: int, parameter_bytes_per_layer: float) -> int:
    """Layers per ``autograd.Function`` at least: SEGMENT, fewer where their parameters' gradients,
    which a Function returns all at once when its backward ends, would pass both SEGMENT states and
    HELD_GRADIENTS (a layer of 8 MiB of weights on a state of 1 MiB: 2 layers, not 16, which held
    128 MiB of gradients: more than autograd's whole activation memory, measured). Below that,
    groups stay long: their count sets the per-group costs (a host read each, with the guard)."""
    if parameter_bytes_per_layer <= 0:
        return SEGMENT
    allowed = max(SEGMENT * state_bytes, HELD_GRADIENTS)
    return max(1, min(SEGMENT, int(allowed // parameter_bytes_per_layer)))


class _Layers(torch.autograd.Function):
    """Layers ``[start, stop)`` of the stack, one release group. Only the top group saves its output;
    each backward rebuilds its group's input and hands it to the group below through the pass
    object. With the adaptive guard a group reads its own measurements and, if one fails, recomputes
    its layers exactly, before it returns any gradient; otherwise the lowest group reads them all
    and raises (or, if it does not run, a callback at the end of the backward pass does)."""

    @staticmethod
    def forward(ctx, run, start, stop, n_state, *tensors):
        block = run.block
        state = tensors[:n_state]
        if start in run.keep:
            run.copies[start] = tuple(t.detach() for t in state)
        for n in range(start, stop):
            state = block.step(n, state, run.record.caller(block, n))
            if n + 1 in run.keep and n + 1 < run.stop:
                run.copies[n + 1] = tuple(t.detach() for t in state)
        # an output that is an input (one layer, history passing through) must be a new tensor
        inputs = {id(t) for t in tensors}
        state = tuple(t.clone() if id(t) in inputs else t for t in state)
        ctx.run, ctx.start, ctx.stop, ctx.n_state = run, start, stop, n_state
        ctx.params = tensors[n_state:]
        ctx.last = stop == run.stop
        if ctx.last:
            ctx.save_for_backward(*state)
        return state

    @staticmethod
    def backward(ctx, *grads):
        run = ctx.run
        if torch.is_grad_enabled():
            mode = "reversible" if run.exact else "adjoint"
            raise DoubleBackwardError(
                f"memory='{mode}' cannot give second-order gradients (create_graph=True): it rebuilds "
                "activations outside autograd's graph; use memory='checkpoint' or memory='autograd' "
                f"for {run.block.scheme.name}'s block"
            )
        if ctx.last:  # a new backward pass through this graph (it may run more than once)
            run.check_unchanged()
            state, run.pending, run.measured, run.checked = ctx.saved_tensors, [], [], False
            run.record.replay = True
            if not run.adaptive:
                torch.autograd.Variable._execution_engine.queue_callback(run.final_check)
        else:
            state = run.handoff
        out_grads = tuple(torch.zeros_like(s) if g is None else g for s, g in zip(state, grads, strict=True))
        needs = ctx.needs_input_grad[4 + ctx.n_state :]
        params = [p for p, need in zip(ctx.params, needs, strict=True) if need]
        param_grads: list[torch.Tensor | None] = [None] * len(params)
        with run.autocast.restored():
            state, in_grads = _backward_layers(
                run, ctx.start, ctx.stop, state, out_grads, params, param_grads
            )
            run.handoff, run.reached = state, ctx.start
            if run.adaptive or ctx.start == run.lowest:
                failure = run.check()
                if failure is not None:
                    if not run.adaptive:
                        raise failure
                    in_grads, param_grads = None, [None] * len(params)  # freed before the recomputation
                    in_grads = _exact_backward(run, ctx.start, ctx.stop, out_grads, params, param_grads)
                    run.handoff = run.copies[ctx.start]
                    run.block.repairs += 1
        run.block._foreign_checked = True
        returned = iter(param_grads)
        return (None, None, None, None, *in_grads, *(next(returned) if need else None for need in needs))


def _backward_layers(run, start, stop, state, grads, params, param_grads, copies=None):
    """Layers ``stop-1 .. start`` from last to first: rebuild each input, take its vector-Jacobian
    product and add the parameters' gradients into ``param_grads`` (aligned with ``params``). Where
    the pass has an exact copy the rebuilt input is measured against it and the copy is used;
    ``copies`` instead gives every input exactly (the repair), and nothing is rebuilt."""
    index = {id(p): i for i, p in enumerate(params)}
    for n in reversed(range(start, stop)):
        cache: dict[int, tuple] = {}
        if copies is not None:
            old = copies[n]
        else:
            old = _rebuild(run, n, state, cache)
            exact = run.copies.get(n)
            if exact is not None:
                run.pending.append((n, _relative_error(old, exact)))
                old = exact
                if not run.exact:
                    # the adjoint's rebuilt input may be far from the copy: its shared evaluations
                    # are not the copy's (an exact inverse's are, to the tolerance checked here)
                    cache.clear()
        grads = _layer_vjp(run, n, old, grads, cache, index, param_grads)
        state = tuple(t.detach() for t in old)
    return state, grads


def _exact_backward(run, start, stop, out_grads, params, param_grads):
    """The adaptive guard's repair of layers ``[start, stop)``: every input recomputed by the forward
    from the exact copy at ``start`` (each call replayed), in chunks of about sqrt(stop - start)
    layers (memory: two chunks of states), and the vector-Jacobian products taken from those."""
    block = run.block
    size = max(1, math.isqrt(stop - start - 1) + 1)
    lows = list(range(start, stop, size))
    boundaries, state = {}, run.copies[start]
    with torch.no_grad():
        for n in range(start, lows[-1] + 1):
            if n in lows:
                boundaries[n] = state
            if n < lows[-1]:
                state = block.step(n, state, run.record.caller(block, n))
    grads = out_grads
    for low in reversed(lows):
        high = min(low + size, stop)
        copies, state = {}, boundaries.pop(low)
        with torch.no_grad():
            for n in range(low, high):
                copies[n] = state
                if n + 1 < high:
                    state = block.step(n, state, run.record.caller(block, n))
        _, grads = _backward_layers(run, low, high, None, grads, params, param_grads, copies)
    return grads


def _rebuild(run, n: int, state, cache: dict):
    """Layer n's input from its output; with the exact inverse, each call is evaluated once and kept
    (with its small graph) in ``cache`` for the re-run."""
    block = run.block
    if not run.exact:
        with torch.no_grad():
            return block.approximate_inverse_step(n, state, kept_call(run, n, cache, run.negative_step))

    if block.inverse_code is None:  # a fixed-point inverse: its iterations' evaluations are not kept

        def replay(key, name, *args):
            return run.record.call_again(n, key, block.function(name, n), args)

        with torch.no_grad():
            return block.inverse_step(n, state, replay)
    with torch.no_grad():
        return block.inverse_step(n, state, kept_call(run, n, cache))


def kept_call(run, n: int, cache: dict, points: dict[int, int] | None = None):
    """``call(key, name, *args)`` for an inverse: evaluates layer n's call again under what the
    forward's saw, keeps the evaluation with its small graph in ``cache`` (for the layer's
    vector-Jacobian product) and returns its value detached. ``points`` (the adjoint's step with
    -h): only the calls it names are at the forward's points, as the forward call it gives; the
    others are evaluated without a graph, replaying the forward call of their own key."""
    block = run.block

    def call(key, name, *args):
        module = block.function(name, n)
        if points is not None and key not in points:
            return run.record.call_again(n, key, module, args)
        forward_key = key if points is None else points[key]
        leaves = _leaves(args)
        with torch.enable_grad():
            out = run.record.call_again(n, forward_key, module, leaves)
        cache[forward_key] = (leaves, out)
        return out.detach()

    return call


def _layer_vjp(run, n: int, old, grads, cache: dict, wanted: dict, param_grads: list, values=None):
    """The vector-Jacobian product of layer n at its input ``old`` with ``grads``: returns the
    gradients for the layer's input, and adds those of the parameters in ``wanted`` (id -> index)
    into ``param_grads``. ``values``: the scheme parameters' values (by default the layer's own).

    The step's own arithmetic is differentiated symbolically (``block.vjp``, generated code); autograd
    differentiates only the functions, each call through the graph of its evaluation: the one the
    inverse made (``cache``), or one made here (replaying what the forward's call saw)."""
    block = run.block
    dtype = old[0].dtype
    evaluations: dict[int, tuple] = {}

    def add(p, g):
        i = wanted[id(p)]
        param_grads[i] = g if param_grads[i] is None else param_grads[i] + g

    def call(key, name, *args):
        entry = cache.get(key)
        if entry is None:
            leaves = _leaves(args)
            with torch.enable_grad():
                out = run.record.call_again(n, key, block.function(name, n), leaves)
            entry = (leaves, out)
        evaluations[key] = (name, *entry)
        out = entry[1].detach()
        return out if out.dtype == dtype else out.to(dtype)

    def pull(key, gradient):
        name, leaves, out = evaluations[key]
        params = [p for p in run.function_params[name][n] if id(p) in wanted]
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        results: tuple = (None,) * len(tensors)
        if out.requires_grad:  # else nothing in the function needs a gradient (frozen, no input grad)
            if gradient.shape != out.shape:  # a call broadcast in the step (f(2) + x[n])
                gradient = gradient.sum_to_size(out.shape)
            results = _engine_grad(out, (*tensors, *params), gradient.to(out.dtype))
            for p, g in zip(params, results[len(tensors) :], strict=True):
                if g is not None:
                    add(p, g)
        found = iter(
            torch.zeros_like(leaf) if r is None else r.to(dtype)
            for leaf, r in zip(tensors, results[: len(tensors)], strict=True)
        )
        # a plain-number argument has no gradient, and no symbol of the step reads one for it
        return tuple(next(found) if isinstance(leaf, torch.Tensor) else None for leaf in leaves)

    learnable = tuple(name for name, raw in block.raw_params.items() if id(raw) in wanted)
    vjp = block.vjp(learnable, cached=all(k in cache for k in range(block.call_count)))
    if values is None:
        with torch.no_grad():
            values = block.layer_params(n)
    state_grads, value_grads = vjp(tuple(old), tuple(grads), values, call, pull)
    if not block._foreign_checked:
        _refuse_foreign_tensors(run, n, [(e[1], e[2]) for e in evaluations.values()])
    if learnable:  # through the map that keeps each parameter in its interval
        given = [(name, g) for name, g in zip(learnable, value_grads, strict=True) if g is not None]
        raws = [block.raw_params[name] for name, _ in given]
        with torch.enable_grad():
            mapped = [
                constrain(raw[n], block._intervals[name]) for raw, (name, _) in zip(raws, given, strict=True)
            ]
        results = torch.autograd.grad(mapped, raws, [g for _, g in given]) if given else ()
        for raw, g in zip(raws, results, strict=True):
            add(raw, g)
    return [
        g if g.shape == s.shape else g.sum_to_size(s.shape) for g, s in zip(state_grads, old, strict=True)
    ]


def _leaves(args) -> list:
    """The arguments of a call as leaves of its own graph; a plain number (``f(2)``) stays one."""
    return [a.detach().requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args]


def _engine_grad(out: torch.Tensor, inputs: tuple, gradient: torch.Tensor) -> tuple:
    """``torch.autograd.grad(out, inputs, gradient, allow_unused=True)`` straight from autograd's
    engine: what ``torch.autograd.grad`` checks (shapes, overrides, batched gradients) holds by
    construction here, and skipping its Python layer saves 20 to 60 us per layer, measured."""
    return torch.autograd.Variable._execution_engine.run_backward(
        (out,), (gradient,), False, False, inputs, True, False
    )


def _refuse_foreign_tensors(run, n: int, evaluations) -> None:
    """Walk the graphs of layer n's evaluations ``(leaves, out)`` down to their leaves: one that
    requires grad and is neither a call's argument nor a registered parameter of the block would get
    no gradient from this mode, so it is refused (on a block's first backward pass; the step's own
    arithmetic builds no graph)."""
    allowed = {id(p) for p in run.block.parameters()}
    allowed |= {id(leaf) for evaluation_leaves, _ in evaluations for leaf in evaluation_leaves}
    stack = [out.grad_fn for _, out in evaluations if out.grad_fn is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) not in allowed:
            raise UnsupportedSchemeError(
                f"a function of layer {n} of {run.block.scheme.name}'s block uses a tensor that requires "
                f"grad (shape {tuple(variable.shape)}) and is neither its input nor a registered parameter "
                "of the block: memory='reversible' and memory='adjoint' would give it no gradient. Register "
                "it as a parameter of the function's module, or use memory='checkpoint' or 'autograd'"
            )
        stack.extend(fn for fn, _ in node.next_functions)


def _to_host(tensor: torch.Tensor) -> list[float]:
    """A deliberate host read (allowed under CUDA's sync debug mode, which is there to find the
    reads nobody meant)."""
    if not tensor.is_cuda:
        return tensor.tolist()
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        return tensor.tolist()
    finally:
        torch.cuda.set_sync_debug_mode(mode)


def _relative_error(rebuilt, exact) -> torch.Tensor:
    """||rebuilt - exact|| / ||exact|| over the whole state, on the device (no host transfer)."""
    num = sum((a.detach() - b).to(torch.float64).square().sum() for a, b in zip(rebuilt, exact, strict=True))
    den = sum(b.to(torch.float64).square().sum() for b in exact)
    return torch.where(den > 0, num / den, num).sqrt()


def run_reversible(block, state, exact: bool):
    """All layers, keeping no activations beyond the graphs ``memory_budget`` allows: one
    ``autograd.Function`` per release group, then the top layers that keep their graphs. (Kept on
    top, their graphs are freed first in the backward pass, before the rebuilding needs memory:
    the peak is the larger of the two, not their sum.)"""
    block.graph_layers = 0
    block.graph_bytes = 0 if isinstance(block.memory_budget, int) else None  # measured for bytes only
    if not torch.is_grad_enabled() or not (
        any(p.requires_grad for p in block.parameters()) or any(t.requires_grad for t in state)
    ):
        return block.steps(0, block.depth, state)  # nothing to differentiate: a plain loop
    stop = block.depth - _graph_layers(block, state)
    if stop == 0:
        block.kept_bytes = 0
        return _keep_graphs(block, 0, state)
    run = _Pass(block, exact, state, stop)
    shared = [p for name in block.functions if block.shared[name] for p in run.function_params[name][0]]
    shared += list(block.raw_params.values())
    groups = []
    for low, high in run.groups:
        own = [
            p
            for n in range(low, high)
            for name in block.functions
            if not block.shared[name]
            for p in run.function_params[name][n]
        ]
        groups.append(list({id(p): p for p in own + shared if p.requires_grad}.values()))
    # the lowest group in autograd's graph ends the rebuild: its input must be an exact copy
    tracked = any(t.requires_grad for t in state)
    run.lowest = next(
        (low for (low, _), params in zip(run.groups, groups, strict=True) if tracked or params), 0
    )
    run.keep.add(run.lowest)
    fixed = [getattr(block, f"fixed_{name}") for name in block._param_names if name not in block.raw_params]
    run.versions = [(t, t._version) for t in [*state, *block.parameters(), *fixed]]
    for (low, high), params in zip(run.groups, groups, strict=True):
        state = _Layers.apply(run, low, high, len(state), *state, *params)
    block.kept_bytes = run.kept_bytes()
    return _keep_graphs(block, stop, state) if stop < block.depth else tuple(state)


# -- memory budget: the graphs of the top layers -------------------------------------------------------


def check_budget(budget, memory: str) -> float | int | None:
    """``memory_budget`` as given, checked: None, a fraction in [0, 1] (float) or bytes (int >= 0)."""
    if budget is None:
        return None
    if memory not in ("reversible", "adjoint"):
        raise ConfigError(
            "memory_budget applies to memory='reversible' and memory='adjoint' (the layers whose graphs "
            f"do not fit are rebuilt), not to memory={memory!r}"
        )
    if isinstance(budget, numbers.Integral) and not isinstance(budget, bool) and budget >= 0:
        if budget == 1:  # far more likely meant as "everything" than as one byte
            raise ConfigError(
                "memory_budget=1 is one byte, less than any layer's graph: give a fraction as a float "
                "(1.0 keeps every graph) or a number of bytes"
            )
        return int(budget)
    if (
        isinstance(budget, numbers.Real)
        and not isinstance(budget, (bool, numbers.Integral))
        and 0 <= budget <= 1
    ):
        return float(budget)
    raise ConfigError(
        "memory_budget must be a fraction of autograd's activation memory between 0 and 1 (a float, "
        f"such as 0.25) or a whole number of bytes >= 0 (an int, such as 2**30), not {budget!r}"
    )


def _probe_layer_bytes(block, state) -> int:
    """What layer 0's graph saves for this input, measured on copies of its modules with the random
    stream forked: the block's buffers and the user's random numbers are left as they were."""
    key = (
        tuple((tuple(t.shape), t.dtype, t.device, t.requires_grad) for t in state),
        block.training,
        torch.is_autocast_enabled(state[0].device.type),
        tuple(p.requires_grad for m in block.layer_modules(0) for p in m.parameters()),
    )
    if block._probe is not None and block._probe[0] == key:
        return block._probe[1]
    if not torch._C._autograd._saved_tensors_hooks_is_enabled():
        raise ConfigError(
            "memory_budget in bytes measures saved tensors with saved-tensor hooks, which are disabled "
            "here (torch.autograd.graph.disable_saved_tensors_hooks); give memory_budget as a fraction"
        )
    try:
        modules = {name: copy.deepcopy(block.function(name, 0)) for name in block.functions}
    except RuntimeError as error:  # a module that cannot be copied (weight_norm's computed weight)
        raise ConfigError(
            f"memory_budget in bytes sizes layer 0's graph on a copy of its modules, and they cannot be "
            f"copied ({error}); give memory_budget as a fraction"
        ) from error
    # the input counts: layer 0 saves the block's input, which exists anyway, but the layers above
    # save new tensors in its place
    exclude = [*(p for m in modules.values() for p in m.parameters()), *block.parameters()]
    devices = [state[0].device] if state[0].device.type == "cuda" else []
    # the probe's graph is dropped at once: the user's hooks (an offload, a counter) do not see it
    with torch.random.fork_rng(devices=devices), saved_tensor_bytes(exclude) as counter:
        block.step(0, state, lambda key, name, *args: modules[name](*args))
    block._probe = (key, counter.bytes)
    return counter.bytes


def _graph_layers(block, state) -> int:
    """How many of the top layers keep their graphs under ``memory_budget``: a fraction keeps that
    share of the layers; bytes keep as many as fit at the size of layer 0's graph (probed)."""
    budget, depth = block.memory_budget, block.depth
    if budget is None or budget == 0:
        return 0
    if isinstance(budget, float):
        return min(depth, math.floor(budget * depth + 1e-9))
    size = _probe_layer_bytes(block, state)
    return depth if size == 0 else min(depth, budget // size)


def _keep_graphs(block, start: int, state):
    """Layers ``[start, depth)`` with their graphs (plain autograd); a budget in bytes counts what
    they save (``block.graph_bytes``)."""
    block.graph_layers = block.depth - start
    if isinstance(block.memory_budget, float):
        return block.steps(start, block.depth, state)
    with saved_tensor_bytes([*state, *block.parameters()], compose=True) as counter:
        state = block.steps(start, block.depth, state)
    block.graph_bytes = counter.bytes
    return state
