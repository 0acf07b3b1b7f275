"""Training without storing activations.

The stack runs as segments of SEGMENT layers, each an ``autograd.Function``. Forward runs every
layer under ``no_grad`` and keeps only the last output (plus, with drift control, an exact copy of
the state at a few layer boundaries); a segment's output is not saved but rebuilt, and handed to
the segment before it during backward. Segments exist so that each returns its own parameters'
gradients, which autograd accumulates and frees before the next segment: with one Function over the
whole stack, every layer's parameter gradients would be alive at once at the end of backward (a
transient copy the size of the model; measured 2.7x its size at depth 512). Backward walks the
layers from last to first:

1. rebuild layer ``n``'s input from its output: exactly, by the derived inverse (``reversible``), or
   approximately, by a step with ``-h`` (``adjoint``, Sander et al. 2022);
2. re-run layer ``n`` on the rebuilt input with gradients enabled and take the vector-Jacobian
   product for the input and the layer's parameters.

The inverse and the re-run evaluate the functions at the same points (leapfrog: ``f(y[n])``;
reversible Heun: ``f(z[n])`` and ``f(z[n+1])``), so each call is evaluated once: the inverse keeps
the evaluation with its small graph, and the re-run plugs it in through :class:`_Reattach`, whose
backward is that graph's vector-Jacobian product. Every parameter is an input of the Function, so
optimizers and DistributedDataParallel see ordinary ``.grad`` fields.

Drift. An inverse that divides (momentum: ``v[n] = (v[n+1] - (1-gamma) f(x[n]))/gamma``) multiplies
rounding error by its backward amplification ``a`` (spectral radius of ``M(0)^-1``, ``1/gamma``)
per layer: in float32 momentum with gamma = 0.5 is garbage after ~30 layers. :class:`DriftControl`
computes ``a`` for every layer at the current parameter values and stores an exact copy of the
state wherever the accumulated ``prod(a) * eps(dtype)`` would pass the tolerance; backward restarts
from those copies. Memory is then O(depth / k) with ``k ~ log(tol/eps) / log(a)``, and O(1) when
``a = 1`` (leapfrog, revnet, reversible Heun). The measured reconstruction error at each copy is
kept in ``block.reconstruction_errors``; a non-finite rebuild raises :class:`ReconstructionError`
naming the first layer it happened at (checked once at the end of the backward pass, before any
gradient is returned), so a wrong gradient is never returned silently.
"""

from __future__ import annotations

import math

import numpy as np
import sympy
import torch

from odenet.errors import OdenetError
from odenet.nn.norm import frozen_running_stats
from odenet.nn.params import constrain

__all__ = ["DriftControl", "ReconstructionError", "run_reversible"]

# Accepted prod(a) * eps between two exact copies, by default: rounding may grow 100-fold (two
# digits) before a copy restores the state, in any dtype (1.2e-5 in float32, 2.2e-14 in float64).
DEFAULT_GROWTH = 100.0


class ReconstructionError(OdenetError, FloatingPointError):
    """Rebuilding a layer's input gave non-finite values: the gradient would be wrong."""


class DriftControl:
    """Where to keep exact copies of the state so that rebuilt inputs stay accurate."""

    def __init__(self, block, tolerance: float | None):
        self.block = block
        self.tolerance = None if tolerance is None else float(tolerance)
        self._matrix = None  # M(lambda = 0) as a function of the parameters, built on first use

    def _amplification_matrix(self):
        if self._matrix is None:
            from odenet.analysis.linear import LAMBDA, amplification_matrix

            self._matrix = amplification_matrix(self.block.scheme).subs(LAMBDA, 0)
        return self._matrix

    def amplifications(self) -> list[float]:
        """Backward amplification of each layer at the current parameter values: the spectral
        radius of M(0)^-1, for all layers at once (M's entries evaluated on arrays of values)."""
        from odenet.analysis.numeric import evaluate

        matrix = self._amplification_matrix()
        depth = self.block.depth
        env = {}
        for name in self.block._param_names:
            if name in self.block.raw_params:
                raw = self.block.raw_params[name].detach()
                values = constrain(raw, self.block._intervals[name]).double().cpu().numpy()
            else:
                values = np.full(depth, float(getattr(self.block, f"fixed_{name}")))
            env[sympy.Symbol(name, real=True)] = values
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
            inverses = np.linalg.inv(stacked[regular])
            out[regular] = np.abs(np.linalg.eigvals(inverses)).max(axis=-1)
        return out.tolist()

    def boundaries(self, dtype: torch.dtype) -> set[int]:
        """Layer boundaries (the input of layer j is boundary j) at which to keep an exact copy."""
        eps = torch.finfo(dtype).eps
        tolerance = DEFAULT_GROWTH * eps if self.tolerance is None else self.tolerance
        keep = {0}
        accumulated = 1.0
        amplifications = self.amplifications()
        for n in reversed(range(self.block.depth)):  # backward order: error grows from the output
            if accumulated * amplifications[n] * eps > tolerance:
                keep.add(n + 1)
                accumulated = 1.0
            accumulated *= amplifications[n]
        keep.discard(self.block.depth)
        return keep


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


SEGMENT = 16  # layers per autograd.Function: the parameter gradients in flight at any time


class _Carrier:
    """What the segments of one forward pass share: the exact copies to keep, and during backward
    the state handed from a segment to the one before it (segments do not save their outputs)."""

    def __init__(self, keep: set[int]):
        self.keep = keep
        self.state: tuple[torch.Tensor, ...] | None = None
        self.errors: list[tuple[int, float]] = []
        self.kept_bytes = 0


class _Segment(torch.autograd.Function):
    """Layers ``[start, stop)`` of the stack. Only the last segment saves its output; each backward
    rebuilds its segment's input and hands it to the previous segment through the carrier. Each
    segment returns the gradients of its own parameters, which autograd accumulates and frees
    before the next segment runs, so no more than SEGMENT layers' gradients are alive at once."""

    @staticmethod
    def forward(ctx, block, exact, carrier, start, stop, n_state, *tensors):
        state = tensors[:n_state]
        stored = {start: tuple(state)} if start in carrier.keep else {}
        for n in range(start, stop):
            state = block.step(n, state)
            if n + 1 in carrier.keep and n + 1 < stop:
                stored[n + 1] = state
        # an output that is an input (one layer, history passing through) must be a new tensor
        inputs = {id(t) for t in tensors}
        state = tuple(t.clone() if id(t) in inputs else t for t in state)
        carrier.kept_bytes += sum(
            t.untyped_storage().nbytes() for k, copy in stored.items() if k for t in copy
        )
        ctx.block, ctx.exact, ctx.carrier, ctx.stored = block, exact, carrier, stored
        ctx.start, ctx.stop, ctx.n_state = start, stop, n_state
        ctx.params = tensors[n_state:]
        ctx.last = stop == block.depth
        if ctx.last:
            ctx.save_for_backward(*state)
        return state

    @staticmethod
    def backward(ctx, *grads):
        block, carrier = ctx.block, ctx.carrier
        state = ctx.saved_tensors if ctx.last else carrier.state
        grads = [torch.zeros_like(s) if g is None else g for s, g in zip(state, grads, strict=True)]
        index = {id(p): i for i, p in enumerate(ctx.params)}
        param_grads: list[torch.Tensor | None] = [None] * len(ctx.params)
        magnitudes: list[torch.Tensor] = []  # per rebuilt layer, from the last layer down
        with frozen_running_stats(block.functions.values()):
            state, grads = _backward_layers(ctx, state, grads, index, param_grads, magnitudes)
        finite = torch.isfinite(torch.stack(magnitudes)).tolist()
        if not all(finite):
            layer = ctx.stop - 1 - finite.index(False)
            raise ReconstructionError(
                f"rebuilding the input of layer {layer} of {block.scheme.name} gave non-finite values: "
                "the inverse amplifies rounding error too much; lower drift_tolerance or use "
                "memory='checkpoint'"
            )
        carrier.state = state
        if ctx.start == 0:
            block.reconstruction_errors = sorted(carrier.errors)
        return (None, None, None, None, None, None, *grads, *param_grads)


def _backward_layers(ctx, state, grads, index, param_grads, magnitudes):
    """The layers of one segment from last to first: rebuild each input, take its vector-Jacobian
    product, accumulate the parameters' gradients (in ``param_grads``); returns the segment's
    rebuilt input and the gradient with respect to it."""
    block, exact, carrier = ctx.block, ctx.exact, ctx.carrier
    for n in reversed(range(ctx.start, ctx.stop)):
        old = _rebuild(block, exact, n, state, cache := {})
        # the largest magnitude of the rebuilt state: NaN or inf if anything went non-finite;
        # checked once per segment (one host sync, not one per layer)
        magnitudes.append(torch.stack([t.detach().abs().amax() for t in old]).amax())
        if n in ctx.stored:
            exact_state = ctx.stored[n]
            carrier.errors.append((n, _relative_error(old, exact_state)))
            old = exact_state
        grads, layer_grads = _layer_vjp(block, n, old, grads, cache)
        for p, r in layer_grads:
            if r is not None and id(p) in index:
                i = index[id(p)]
                param_grads[i] = r if param_grads[i] is None else param_grads[i] + r
        state = tuple(t.detach() for t in old)
    return state, grads


def _rebuild(block, exact: bool, n: int, state, cache: dict):
    """Layer n's input from its output; with the exact inverse, each call is evaluated once and kept
    (with its small graph) in ``cache`` for the re-run."""
    if not exact:
        with torch.no_grad():
            return block.approximate_inverse_step(n, state)

    def inverse_call(key, name, *args):
        leaves = [a.detach().requires_grad_(True) for a in args]
        with torch.enable_grad():
            out = block.function(name, n)(*leaves)
        cache[key] = (leaves, out)
        return out.detach()

    with torch.no_grad():
        return block.inverse_step(n, state, inverse_call)


def _layer_vjp(block, n: int, old, grads, cache: dict):
    """Re-run layer n on ``old`` and take the vector-Jacobian product with ``grads``: the gradients
    for the layer's input, and (parameter, gradient) pairs for its parameters."""
    # Where the inverse evaluated a call at exactly a rebuilt state tensor (leapfrog's f(y[n]),
    # momentum's f(x[n])), that evaluation's leaf becomes the re-run's input: its graph then joins
    # the re-run directly, with no _Reattach and no second engine call.
    leaf_of = {}
    for leaves, _ in cache.values():
        for leaf in leaves:
            leaf_of.setdefault(_same_tensor_key(leaf), leaf)
    old_leaves = []
    for t in old:
        leaf = leaf_of.get(_same_tensor_key(t))
        old_leaves.append(t.detach().requires_grad_(True) if leaf is None else leaf)

    def rerun_call(key, name, *args):
        module = block.function(name, n)
        if key in cache:
            leaves, out = cache.pop(key)
            if len(leaves) == len(args) and all(a is b for a, b in zip(args, leaves, strict=True)):
                return out
            params = [p for p in module.parameters() if p.requires_grad]
            return _Reattach.apply((leaves, out), len(args), *args, *params)
        return module(*args)

    layer_params = [p for m in block.layer_modules(n) for p in m.parameters() if p.requires_grad]
    layer_params += [p for p in block.raw_params.values() if p.requires_grad]
    with torch.enable_grad():
        new = block._step(tuple(old_leaves), block.layer_params(n), rerun_call)
        pairs = [(t, g) for t, g in zip(new, grads, strict=True) if t.requires_grad]
        results = torch.autograd.grad(
            [t for t, _ in pairs], old_leaves + layer_params, [g for _, g in pairs], allow_unused=True
        )
    state_grads = [
        torch.zeros_like(t) if r is None else r for t, r in zip(old, results[: len(old)], strict=True)
    ]
    return state_grads, list(zip(layer_params, results[len(old) :], strict=True))


def _same_tensor_key(t: torch.Tensor) -> tuple:
    """Two tensors with this key hold the same values: the same storage, offset, shape, strides."""
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)


def _relative_error(rebuilt, exact) -> float:
    num = sum(float((a - b).double().norm() ** 2) for a, b in zip(rebuilt, exact, strict=True))
    den = sum(float(b.double().norm() ** 2) for b in exact)
    return math.sqrt(num / den) if den else math.sqrt(num)


def run_reversible(block, state, exact: bool):
    """All layers, keeping no activations: segments of SEGMENT layers, each an autograd.Function."""
    if not torch.is_grad_enabled() or not (
        any(p.requires_grad for p in block.parameters()) or any(t.requires_grad for t in state)
    ):
        return block.steps(0, block.depth, state)  # nothing to differentiate: a plain loop
    keep = block.drift.boundaries(state[0].dtype) if exact else {0}
    carrier = _Carrier(keep)
    shared = [p for name, m in block.functions.items() if block.shared[name] for p in m.parameters()]
    shared += list(block.raw_params.values())
    for start in range(0, block.depth, SEGMENT):
        stop = min(start + SEGMENT, block.depth)
        own = [
            p
            for n in range(start, stop)
            for name in block.functions
            if not block.shared[name]
            for p in block.function(name, n).parameters()
        ]
        params = [p for p in own + shared if p.requires_grad]
        state = _Segment.apply(block, exact, carrier, start, stop, len(state), *state, *params)
    block.kept_bytes = carrier.kept_bytes
    return tuple(state)
