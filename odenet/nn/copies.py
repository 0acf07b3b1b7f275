"""Rebuilding between exact copies, with a guard: the pass of ``memory="reversible"`` and
``memory="adjoint"`` (see ``modes/reversible.py`` for the whole story).

Forward runs every layer under ``no_grad`` and keeps only the last output, plus exact copies of the
state at a few layer boundaries (the block's input is always one). Backward walks the layers from
last to first: it rebuilds layer ``n``'s input from its output (the derived inverse, exact; or the
step with ``-h``, approximate), measures it against the copy where there is one, and takes the
layer's vector-Jacobian product at it (``vjp.py``). With the adaptive guard every group starts at
a copy and repairs itself (an exact recomputation from that copy) when an error passes the
tolerance; with the raise guard the lowest group reads every error and raises.
"""

from __future__ import annotations

import bisect
import math
from typing import TYPE_CHECKING

import torch

from odenet.errors import ReconstructionError
from odenet.nn.layers import NO_CONTEXT, Context, Layers
from odenet.nn.rebuild import RebuildPass, parameter_bytes, shortest_group, to_host
from odenet.nn.vjp import InterleavedProduct, kept_call, layer_vjp

if TYPE_CHECKING:
    from odenet.nn.modes.base import MemoryMode

__all__ = ["CopiesPass"]


class CopiesPass(RebuildPass):
    """One forward pass through layers ``[0, stop)`` and its backward: the exact copies, the release
    groups, the errors measured. ``mode`` is the Reversible (``exact``) or Adjoint mode object."""

    def __init__(
        self,
        layers: Layers,
        mode: MemoryMode,
        exact: bool,
        state: tuple[torch.Tensor, ...],
        stop: int,
        context: Context = NO_CONTEXT,
    ):
        super().__init__(layers, mode, state, stop, context)
        self.exact = exact
        self.report = layers.last_pass
        self.eps = torch.finfo(self.dtype).eps
        self.adaptive = exact and mode.guard == "adaptive"
        # the product taken while the inverse runs (one function's graph alive at a time)
        self.interleaved = exact and layers.code.inverse_shares_every_call
        self.negative_step = {} if exact else layers.code.negative_step_points  # the adjoint's shared calls
        if exact:
            self.tolerance = mode.drift.tolerance_for(self.dtype, self.autocast)
            planned = mode.drift.boundaries(layers, self.dtype, self.tolerance)
            self.keep = {n for n in planned if n < stop}
        else:  # the adjoint is approximate by design: its error is reported, not bounded
            self.tolerance, self.keep = math.inf, {0}
        state_bytes = sum(t.nbytes for t in state)
        per_layer = parameter_bytes(layers, self.function_params) / layers.depth
        self.shortest = shortest_group(state_bytes, per_layer)
        if self.adaptive:
            self.groups = self._groups(state_bytes, per_layer)
        else:
            size = self.shortest
            self.groups = [(low, min(low + size, stop)) for low in range(0, stop, size)]
        self.copies: dict[int, tuple[torch.Tensor, ...]] = {}  # detached: no cycle through grad_fn
        self.pending: list[tuple[int, torch.Tensor]] = []  # errors measured, not read yet
        self.measured: list[tuple[int, float]] = []
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

    def prepare(self) -> None:
        self.keep.add(self.lowest)  # the lowest group ends the rebuild: its input is an exact copy

    # -- forward --------------------------------------------------------------------------------
    def forward_group(self, start, stop, state):
        layers = self.layers
        if start in self.keep:
            self.copies[start] = tuple(t.detach() for t in state)
        for n in range(start, stop):
            state = layers.step(n, state, self.record.caller(layers, n))
            if n + 1 in self.keep and n + 1 < self.stop:
                self.copies[n + 1] = tuple(t.detach() for t in state)
        return tuple(state)

    def kept_bytes(self) -> int:
        """Memory kept beyond the output: exact copies (the block's input excluded, each storage
        once) and the record of random-number states and buffers."""
        storages = {}
        for n, kept in self.copies.items():
            for t in kept if n else ():
                storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        inputs = {t.untyped_storage().data_ptr() for t in self.copies.get(0, ())}
        return sum(v for k, v in storages.items() if k not in inputs) + self.record.nbytes()

    # -- backward -------------------------------------------------------------------------------
    def begin_backward(self, saved):
        self.pending, self.measured, self.checked = [], [], False
        self.record.replay = True
        if not self.adaptive:
            torch.autograd.Variable._execution_engine.queue_callback(self.final_check)
        return saved

    def backward_group(self, start, stop, grads, params, param_grads):
        if stop < self.stop and not self.graph_retained():
            # the copies above this group served the groups above; only another backward pass
            # through this graph would read them again
            for n in [n for n in self.copies if n >= stop]:
                del self.copies[n]
        in_grads = self.backward_layers(start, stop, grads, params, param_grads)
        self.reached = start
        if self.adaptive or start == self.lowest:
            failure = self.check()
            if failure is not None:
                if not self.adaptive:
                    raise failure
                in_grads, param_grads[:] = None, [None] * len(params)  # freed before the recomputation
                in_grads = self.exact_backward(start, stop, grads, params, param_grads)
                self.handoff = self.copies[start]
                self.mode.repairs += 1
                self.report.repairs = self.mode.repairs
        return in_grads

    def backward_layers(self, start, stop, grads, params, param_grads, copies=None):
        """Layers ``stop-1 .. start`` from last to first: rebuild each input from the one above
        (from :attr:`handoff` at first; the input of ``start`` is left there), take its
        vector-Jacobian product and add the parameters' gradients into ``param_grads`` (aligned with
        ``params``). Where the pass has an exact copy the rebuilt input is measured against it and
        the copy is used; ``copies`` instead gives every input exactly (the repair), and nothing is
        rebuilt. Each layer's output is let go once its input is rebuilt (what the product needs of
        it, the kept evaluations hold), and its gradients once the product has read them."""
        index = {id(p): i for i, p in enumerate(params)}
        grads = list(grads)  # handed over to each layer's product in turn (the given list is kept)
        for n in reversed(range(start, stop)):
            cache: dict[int, tuple] = {}
            product = None
            if copies is not None:
                old = copies[n]
            else:
                if self.interleaved:
                    product = InterleavedProduct(self, n, grads, cache, index, param_grads)
                state, self.handoff = self.handoff, None
                old = self.rebuild(n, state, cache, product)
                del state
                exact = self.copies.get(n)
                if exact is not None:
                    self.pending.append((n, _relative_error(old, exact)))
                    old = exact
                    if not self.exact:
                        # the adjoint's rebuilt input may be far from the copy: its shared evaluations
                        # are not the copy's (an exact inverse's are, to the tolerance checked here)
                        cache.clear()
            if product is not None:
                grads = product.finish(old)
            else:
                grads = layer_vjp(self, n, old, grads, cache, index, param_grads)
            if copies is None:
                self.handoff = tuple(t.detach() for t in old)
        return grads

    def rebuild(self, n: int, state, cache: dict, product: InterleavedProduct | None = None):
        """Layer n's input from its output; with the exact inverse, each call is evaluated once and
        kept (with its small graph) in ``cache`` for the layer's product, which takes it at once
        where ``product`` is given."""
        layers = self.layers
        with torch.no_grad():
            if not self.exact:
                return layers.approximate_inverse_step(
                    n, state, kept_call(self, n, cache, self.negative_step)
                )
            if (
                layers.code.inverse.code is None
            ):  # a fixed-point inverse: its iterations' evaluations are not kept

                def replay(key, name, *args):
                    return self.record.call_again(n, key, layers.function(name, n), args)

                return layers.inverse_step(n, state, replay, self.tolerance)
            then = None if product is None else product.advance
            return layers.inverse_step(n, state, kept_call(self, n, cache, then=then))

    def exact_backward(self, start, stop, out_grads, params, param_grads):
        """The adaptive guard's repair of layers ``[start, stop)``: every input recomputed by the
        forward from the exact copy at ``start`` (each call replayed), in chunks of about
        sqrt(stop - start) layers (memory: two chunks of states), and the vector-Jacobian products
        taken from those."""
        layers = self.layers
        size = max(1, math.isqrt(stop - start - 1) + 1)
        lows = list(range(start, stop, size))
        boundaries, state = {}, self.copies[start]
        with torch.no_grad():
            for n in range(start, lows[-1] + 1):
                if n in lows:
                    boundaries[n] = state
                if n < lows[-1]:
                    state = layers.step(n, state, self.record.caller(layers, n))
        grads = out_grads
        for low in reversed(lows):
            high = min(low + size, stop)
            copies, state = {}, boundaries.pop(low)
            with torch.no_grad():
                for n in range(low, high):
                    copies[n] = state
                    if n + 1 < high:
                        state = layers.step(n, state, self.record.caller(layers, n))
            grads = self.backward_layers(low, high, grads, params, param_grads, copies)
        return grads

    # -- the guard --------------------------------------------------------------------------------
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
                    state = self.layers.step(n, state, self.record.caller(self.layers, n))
            self.pending.append((self.reached, _relative_error(self.handoff, state)))
        failure = self.check()
        if failure is not None:
            raise failure

    def check(self) -> ReconstructionError | None:
        """Read the errors measured since the last check in one transfer; return the error to raise
        or repair when a rebuilt input is non-finite or off by more than the tolerance."""
        pending = self.pending
        self.pending, self.checked = [], True
        host = to_host(torch.stack([e.to(torch.float64) for _, e in pending])) if pending else []
        measured = sorted((n, e) for (n, _), e in zip(pending, host, strict=True))
        self.measured += measured
        self.report.reconstruction_errors = sorted(self.measured)
        tops = sorted(self.keep | {self.reached, self.stop})
        intervals = [(low, tops[bisect.bisect_right(tops, low)], e) for low, e in measured]
        if self.exact:
            self.mode.drift.learn(intervals, self.eps, self.tolerance)
        failing = [(low, high, e) for low, high, e in intervals if not e <= self.tolerance]
        if not failing:
            return None
        low, high, error = max(failing)  # the highest: the first met in backward order
        name = self.layers.scheme.name
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


def _relative_error(rebuilt, exact) -> torch.Tensor:
    """||rebuilt - exact|| / ||exact|| over the whole state, on the device (no host transfer). Each
    part's norm is taken in its own precision (float32 at least), without a float64 copy of the
    state (two of them were 4 MiB of a revnet block's 28 MiB peak, measured by odenet.profile);
    the parts' norms are combined in float64. A norm good to float32's rounding judges an error
    against a tolerance of 100 eps."""

    def norm(t: torch.Tensor) -> torch.Tensor:
        wide = torch.float32 if torch.finfo(t.dtype).bits < 32 else None
        return torch.linalg.vector_norm(t, dtype=wide).to(torch.float64)

    def difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # in eighths: the difference's temporary is an eighth of the part (the whole part was 1 of a
        # revnet block's 20 MiB peak, measured)
        if a.numel() < 2**16 or a.shape != b.shape:
            return norm(a - b)
        dim = max(range(a.dim()), key=lambda d: a.shape[d])  # slices along it are views, any layout
        pieces = zip(a.tensor_split(8, dim), b.tensor_split(8, dim), strict=True)
        return torch.linalg.vector_norm(torch.stack([norm(x - y) for x, y in pieces]))

    num = sum(difference(a.detach(), b).square() for a, b in zip(rebuilt, exact, strict=True))
    den = sum(norm(b).square() for b in exact)
    return torch.where(den > 0, num / den, num).sqrt()
