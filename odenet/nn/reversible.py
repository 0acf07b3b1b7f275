"""Training without storing activations, with a guard on every rebuilt input.

Forward runs every layer under ``no_grad`` and keeps only the last output, plus exact copies of the
state at a few layer boundaries (the block's input is always one). Backward walks the layers from
last to first:

1. rebuild layer ``n``'s input from its output: exactly, by the derived inverse (``reversible``), or
   approximately, by a step with ``-h`` (``adjoint``, Sander et al. 2022);
2. re-run layer ``n`` on the rebuilt input with gradients enabled and take the vector-Jacobian
   product for the input and the layer's parameters.

The inverse and the re-run evaluate the functions at the same points (leapfrog: ``f(y[n])``;
reversible Heun: ``f(z[n])`` and ``f(z[n+1])``), so each call is evaluated once: the inverse keeps
the evaluation with its small graph, and the re-run plugs it in (as its own input when the call was
made at a state tensor, else through :class:`_Reattach`, whose backward is that graph's
vector-Jacobian product). Each value carried in the state (multistep history ``u[n-1]``) gets its
own leaf, so its gradient is counted once even where two positions hold the same tensor.

Every evaluation in backward runs under what the forward's evaluation saw (``replay.py``): its
random-number state, its autocast settings and its buffers.

**Drift and the guard.** An inverse that divides (momentum: ``v[n] = (v[n+1] - (1-gamma) f(x[n]))
/gamma``) multiplies rounding error by its backward amplification ``a`` (spectral radius of
``M(0)^-1``) per layer, and any inverse multiplies it by the growth of the backward dynamics, which
depends on the functions' Jacobians (leapfrog with a strongly expanding ``f``). :class:`DriftControl`
plans exact copies so that the growth it expects (``a`` per layer, or the growth it measured on
earlier passes, whichever is larger) keeps the error under a quarter of the tolerance between two
copies (a sixteenth with the raise guard). At every copy the rebuilt input is compared with the
copy: that error is measured, not predicted (``block.reconstruction_errors``). Errors, non-finite
ones included, stay on the device until they are read; the tolerance is 100 times the machine
epsilon of the dtype the functions compute in, or ``drift_tolerance``. What happens when an error passes it:

- ``guard="adaptive"`` (default): the stack runs as release groups, each one ``autograd.Function``
  whose input is kept as an exact copy (as well as the copies the plan places inside it). A
  group reads its errors when its layers are done, before it returns any gradient; if one fails,
  the group's inputs are recomputed exactly by the forward from its bottom copy, in chunks of about
  sqrt(length) layers, and its gradients taken from those. The growth measured is remembered, so
  later passes keep copies closer together. Groups are ``sqrt(depth * S / P)`` layers long (S:
  bytes of the state, P: parameter bytes per layer; at least SEGMENT), which balances the copies
  they add against the gradients they hold; the errors are read once per group (once per backward
  when the block is one group, as for convolutional functions of a few channels);
- ``guard="raise"``: the stack runs as segments of SEGMENT layers that release their parameters'
  gradients as they finish, with no forced copies (memory flat in depth, also when gradients
  accumulate into existing ``.grad``); the errors are read once, at the end of the backward pass,
  and a failure raises :class:`~odenet.errors.ReconstructionError` naming the layer from which the
  error, estimated from the measured growth, passes the tolerance.

A second-order gradient (``create_graph=True``) raises :class:`~odenet.errors.DoubleBackwardError`.
"""

from __future__ import annotations

import math

import numpy as np
import sympy
import torch

from odenet.errors import DoubleBackwardError, ReconstructionError, SchemeValueError
from odenet.nn.params import constrain
from odenet.nn.replay import AutocastState, CallRecord

__all__ = ["GUARDS", "DriftControl", "ReconstructionError", "run_reversible"]

GUARDS = ("adaptive", "raise")

# Accepted relative error of a rebuilt state, by default: rounding may grow 100-fold (two digits)
# before a copy restores the state (1.2e-5 in float32, 2.2e-14 in float64).
DEFAULT_GROWTH = 100.0
# Copies are planned for an error of tolerance / PLAN_MARGIN, so that the guard rarely has to act:
# the amplification a = rho(M(0)^-1) ignores the functions (momentum, gamma = 0.9, float32: measured
# growth 1.17 per layer where a = 1.11) and the rounding added at every layer; where it
# underestimates more than that, the guard measures it and the plan learns. The raise guard cannot
# repair, so it plans with a wider margin.
PLAN_MARGIN = {"adaptive": 4.0, "raise": 16.0}

SEGMENT = 16  # layers per autograd.Function with guard="raise"; the shortest adaptive group


class DriftControl:
    """Where to keep exact copies of the state so that rebuilt inputs stay accurate."""

    def __init__(self, block, tolerance: float | None, guard: str = "adaptive"):
        if guard not in GUARDS:
            raise SchemeValueError(f"guard must be one of {', '.join(GUARDS)}, not {guard!r}")
        if tolerance is not None and not float(tolerance) > 0:
            raise SchemeValueError(f"drift_tolerance must be a number > 0, not {tolerance!r}")
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
            from odenet.analysis.linear import LAMBDA, amplification_matrix

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


class _Reattach(torch.autograd.Function):
    """Plug an evaluation made during the inverse into the re-run's graph: forward returns the
    stored value; backward is the stored evaluation's vector-Jacobian product."""

    @staticmethod
    def forward(ctx, stored, n_args, *tensors):
        # ``stored`` = (leaves, out) travels inside a tuple: as top-level arguments autograd would
        # treat them as inputs and walk the evaluation's graph a second time.
        ctx.leaves, ctx.out = stored
        ctx.params = tensors[n_args:]
        return ctx.out.detach()

    @staticmethod
    def backward(ctx, grad):
        inputs = [*ctx.leaves, *ctx.params]
        grads = torch.autograd.grad(ctx.out, inputs, grad, allow_unused=True)
        ctx.leaves = ctx.out = None
        return (None, None, *grads)


class _Pass:
    """What one forward pass through the stack shares with its backward pass: the exact copies, the
    release groups, the record of every call, the autocast settings, the errors measured, and during
    backward the state handed from a group to the one below it (groups do not save their outputs)."""

    def __init__(self, block, exact: bool, state: tuple[torch.Tensor, ...]):
        self.block, self.exact = block, exact
        self.dtype, self.device = state[0].dtype, state[0].device
        self.eps = torch.finfo(self.dtype).eps
        self.autocast = AutocastState(self.device.type)
        self.record = CallRecord(state)
        self.adaptive = exact and block.drift.guard == "adaptive"
        if exact:
            self.tolerance = block.drift.tolerance_for(self.dtype, self.autocast)
            self.keep = block.drift.boundaries(self.dtype, self.tolerance)
        else:  # the adjoint is approximate by design: its error is reported, not bounded
            self.tolerance, self.keep = math.inf, {0}
        self.groups = (
            self._groups(sum(t.nbytes for t in state))
            if self.adaptive
            else [(start, min(start + SEGMENT, block.depth)) for start in range(0, block.depth, SEGMENT)]
        )
        self.copies: dict[int, tuple[torch.Tensor, ...]] = {}
        self.input_versions: list[int] = []
        self.pending: list[tuple[int, torch.Tensor]] = []  # errors measured, not read yet
        self.measured: list[tuple[int, float]] = []
        self.handoff: tuple[torch.Tensor, ...] | None = None

    def _groups(self, state_bytes: int) -> list[tuple[int, int]]:
        """Release groups for the adaptive guard: L layers each, each starting at an exact copy (its
        input), so that its errors are read and a failure repaired before any of its gradients is
        released. A group holds its parameters' gradients until then, and L = sqrt(depth * state
        bytes / parameter bytes per layer), at least SEGMENT, balances the two costs (the copies,
        depth/L states; the held gradients, L layers)."""
        block, depth = self.block, self.block.depth
        own = sum(
            p.nbytes
            for name in block.functions
            if not block.shared[name]
            for p in block.functions[name].parameters()
            if p.requires_grad
        )
        per_layer = own / depth
        limit = depth if per_layer == 0 else max(SEGMENT, math.isqrt(int(depth * state_bytes / per_layer)))
        self.keep |= set(range(0, depth, limit))
        return [(start, min(start + limit, depth)) for start in range(0, depth, limit)]

    def recording(self, n: int):
        def call(key, name, *args):
            return self.record.run(n, key, self.block.function(name, n), args)

        return call

    def replaying(self, n: int):
        def call(key, name, *args):
            with self.record.replaying(n, key):
                return self.block.function(name, n)(*args)

        return call

    def kept_bytes(self) -> int:
        """Memory kept beyond the output: exact copies (the block's input excluded, each storage
        once) and the record of random-number states and buffers."""
        storages = {}
        for n, copy in self.copies.items():
            for t in copy if n else ():
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        inputs = {t.untyped_storage().data_ptr() for t in self.copies.get(0, ())}
        return sum(v for k, v in storages.items() if k not in inputs) + self.record.nbytes()

    def check(self, final: bool) -> ReconstructionError | None:
        """Read the errors measured since the last check in one transfer; return the error to raise
        or repair when a rebuilt input is non-finite or off by more than the tolerance."""
        block, pending = self.block, self.pending
        self.pending = []
        if final and any(t._version != v for t, v in zip(self.copies[0], self.input_versions, strict=True)):
            raise RuntimeError(
                f"the input of {block.scheme.name}'s block was modified in place after its forward pass; "
                "the reversible backward pass needs it unchanged (clone it before modifying it)"
            )
        host = _to_host(torch.stack([e.to(torch.float64) for _, e in pending])) if pending else []
        measured = [(n, e) for (n, _), e in zip(pending, host, strict=True)]
        self.measured += measured
        if final:
            block.reconstruction_errors = sorted(self.measured)
        above = sorted(self.keep | {block.depth})
        intervals = [(low, above[above.index(low) + 1], e) for low, e in sorted(measured)]
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


class _Layers(torch.autograd.Function):
    """Layers ``[start, stop)`` of the stack, one release group. Only the top group saves its output;
    each backward rebuilds its group's input and hands it to the group below through the pass
    object. With the adaptive guard a group reads its own measurements and, if one fails, recomputes
    its layers exactly, before it returns any gradient; otherwise the group at layer 0 reads them
    all and raises."""

    @staticmethod
    def forward(ctx, run, start, stop, n_state, *tensors):
        block = run.block
        state = tensors[:n_state]
        if start == 0:
            run.input_versions = [t._version for t in state]
        if start in run.keep:
            run.copies[start] = tuple(state)
        for n in range(start, stop):
            state = block.step(n, state, run.recording(n))
            if n + 1 in run.keep and n + 1 < block.depth:
                run.copies[n + 1] = tuple(state)
        # an output that is an input (one layer, history passing through) must be a new tensor
        inputs = {id(t) for t in tensors}
        state = tuple(t.clone() if id(t) in inputs else t for t in state)
        ctx.run, ctx.start, ctx.stop, ctx.n_state = run, start, stop, n_state
        ctx.params = tensors[n_state:]
        ctx.last = stop == block.depth
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
            state, run.pending, run.measured = ctx.saved_tensors, [], []
        else:
            state = run.handoff
        out_grads = tuple(torch.zeros_like(s) if g is None else g for s, g in zip(state, grads, strict=True))
        needs = ctx.needs_input_grad[4 + ctx.n_state :]
        params = [p for p, need in zip(ctx.params, needs, strict=True) if need]
        with run.autocast.restored():
            state, in_grads, param_grads = _backward_layers(
                run, ctx.start, ctx.stop, state, out_grads, params, run.copies, measure=True
            )
            run.handoff = state
            if run.adaptive or ctx.start == 0:
                failure = run.check(final=ctx.start == 0)
                if failure is not None:
                    if not run.adaptive:
                        raise failure
                    in_grads = param_grads = None  # freed before the recomputation
                    in_grads, param_grads = _exact_backward(run, ctx.start, ctx.stop, out_grads, params)
                    run.handoff = run.copies[ctx.start]
                    run.block.repairs += 1
        returned = iter(param_grads)
        return (None, None, None, None, *in_grads, *(next(returned) if need else None for need in needs))


def _backward_layers(run, start, stop, state, grads, params, copies, measure):
    """Layers ``stop-1 .. start`` from last to first: rebuild each input (or take its exact copy),
    take its vector-Jacobian product, accumulate the parameters' gradients. With ``measure``, a
    layer whose input has a copy is rebuilt too, and the error against the copy is recorded."""
    block = run.block
    index = {id(p): i for i, p in enumerate(params)}
    param_grads: list[torch.Tensor | None] = [None] * len(params)
    owned: set[int] = set()  # accumulators that are ours to add into
    scheme_params = [p for p in block.raw_params.values() if id(p) in index]
    for n in reversed(range(start, stop)):
        cache: dict[int, tuple] = {}
        exact = copies.get(n)
        if exact is None or measure:
            old = _rebuild(run, n, state, cache)
            if exact is not None:
                run.pending.append((n, _relative_error(old, exact)))
        if exact is not None:
            old = exact
        layer = {id(p): p for m in block.layer_modules(n) for p in m.parameters() if id(p) in index}
        grads, layer_grads = _layer_vjp(run, n, old, grads, cache, [*layer.values(), *scheme_params])
        for p, g in layer_grads:
            if g is None:
                continue
            i = index[id(p)]
            if param_grads[i] is None:
                param_grads[i] = g
            elif i in owned:
                param_grads[i].add_(g)
            else:
                param_grads[i] = param_grads[i] + g
                owned.add(i)
        state = tuple(t.detach() for t in old)
    return state, grads, param_grads


def _exact_backward(run, start, stop, out_grads, params):
    """The adaptive guard's repair of layers ``[start, stop)``: every input recomputed by the forward
    from the exact copy at ``start`` (each call replayed), in chunks of about sqrt(stop - start)
    layers (memory: two chunks of states), and the vector-Jacobian products taken from those."""
    block = run.block
    size = max(1, math.isqrt(stop - start - 1) + 1)
    boundaries = {}
    state = run.copies[start]
    with torch.no_grad():
        for n in range(start, stop - 1):
            if (n - start) % size == 0:
                boundaries[n] = state
            state = block.step(n, state, run.replaying(n))
    boundaries[start] = run.copies[start]
    grads, total = out_grads, [None] * len(params)
    for low in sorted(boundaries, reverse=True):
        high = min(low + size, stop)
        copies, state = {}, boundaries.pop(low)
        with torch.no_grad():
            for n in range(low, high):
                copies[n] = state
                if n + 1 < high:
                    state = block.step(n, state, run.replaying(n))
        _, grads, param_grads = _backward_layers(run, low, high, None, grads, params, copies, measure=False)
        total = [_add(t, g) for t, g in zip(total, param_grads, strict=True)]
    return grads, total


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return b if a is None else (a if b is None else a + b)


def _rebuild(run, n: int, state, cache: dict):
    """Layer n's input from its output; with the exact inverse, each call is evaluated once and kept
    (with its small graph) in ``cache`` for the re-run."""
    block = run.block
    if not run.exact:
        with torch.no_grad():
            return block.approximate_inverse_step(n, state, run.replaying(n))

    def inverse_call(key, name, *args):
        leaves = [a.detach().requires_grad_(True) for a in args]
        with torch.enable_grad(), run.record.replaying(n, key):
            out = block.function(name, n)(*leaves)
        cache[key] = (leaves, out)
        return out.detach()

    with torch.no_grad():
        return block.inverse_step(n, state, inverse_call)


def _layer_vjp(run, n: int, old, grads, cache: dict, params):
    """Re-run layer n on ``old`` and take the vector-Jacobian product with ``grads``: the gradients
    for the layer's input, and (parameter, gradient) pairs for ``params``. At an exact copy, an
    evaluation the inverse made at the rebuilt state is still reused: the two differ by no more than
    the tolerance the guard checks."""
    block = run.block
    # Where the inverse evaluated a call at exactly a state tensor (leapfrog's f(y[n]), momentum's
    # f(x[n])), that evaluation's leaf becomes the re-run's input: its graph then joins the re-run
    # directly. One leaf per position: a tensor held at two positions (u[n] and its copy u[n-1] at
    # the start of a multistep scheme) must not receive the gradient of both.
    leaf_of = {}
    for leaves, _ in cache.values():
        for leaf in leaves:
            leaf_of.setdefault(_same_tensor_key(leaf), leaf)
    old_leaves, taken = [], set()
    for t in old:
        leaf = leaf_of.get(_same_tensor_key(t))
        if leaf is None or id(leaf) in taken:
            leaf = t.detach().requires_grad_(True)
        taken.add(id(leaf))
        old_leaves.append(leaf)

    def rerun_call(key, name, *args):
        module = block.function(name, n)
        entry = cache.pop(key, None)
        if entry is not None:
            leaves, out = entry
            if len(leaves) == len(args) and all(a is b for a, b in zip(args, leaves, strict=True)):
                return out
            module_params = [p for p in module.parameters() if p.requires_grad]
            return _Reattach.apply((leaves, out), len(args), *args, *module_params)
        with run.record.replaying(n, key):
            return module(*args)

    with torch.enable_grad():
        new = block.step(n, tuple(old_leaves), rerun_call)
        pairs = [(t, g) for t, g in zip(new, grads, strict=True) if t.requires_grad]
        results = torch.autograd.grad(
            [t for t, _ in pairs], old_leaves + list(params), [g for _, g in pairs], allow_unused=True
        )
    state_grads = [
        torch.zeros_like(t) if r is None else r for t, r in zip(old, results[: len(old)], strict=True)
    ]
    return state_grads, list(zip(params, results[len(old) :], strict=True))


def _to_host(tensor: torch.Tensor) -> list[float]:
    """The one deliberate host read of a backward pass (allowed under CUDA's sync debug mode, which
    is there to find the reads nobody meant)."""
    if not tensor.is_cuda:
        return tensor.tolist()
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        return tensor.tolist()
    finally:
        torch.cuda.set_sync_debug_mode(mode)


def _same_tensor_key(t: torch.Tensor) -> tuple:
    """Two tensors with this key hold the same values: the same storage, offset, shape, strides."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _relative_error(rebuilt, exact) -> torch.Tensor:
    """||rebuilt - exact|| / ||exact|| over the whole state, on the device (no host transfer)."""
    num = sum((a.detach() - b).to(torch.float64).square().sum() for a, b in zip(rebuilt, exact, strict=True))
    den = sum(b.to(torch.float64).square().sum() for b in exact)
    return torch.where(den > 0, num / den, num).sqrt()


def run_reversible(block, state, exact: bool):
    """All layers, keeping no activations: one ``autograd.Function`` per release group."""
    if not torch.is_grad_enabled() or not (
        any(p.requires_grad for p in block.parameters()) or any(t.requires_grad for t in state)
    ):
        return block.steps(0, block.depth, state)  # nothing to differentiate: a plain loop
    run = _Pass(block, exact, state)
    shared = [p for name, m in block.functions.items() if block.shared[name] for p in m.parameters()]
    shared += list(block.raw_params.values())
    for start, stop in run.groups:
        own = [
            p
            for n in range(start, stop)
            for name in block.functions
            if not block.shared[name]
            for p in block.function(name, n).parameters()
        ]
        params = list({id(p): p for p in own + shared if p.requires_grad}.values())
        state = _Layers.apply(run, start, stop, len(state), *state, *params)
    block.kept_bytes = run.kept_bytes()
    return tuple(state)
