"""A layer's vector-Jacobian product at a rebuilt input, for the modes that rebuild (``rebuild.py``).

The step's own arithmetic is differentiated symbolically (generated code, ``codegen.generate_vjp``:
sympy's derivatives of the elementwise expressions); autograd differentiates only the functions,
each call through the graph of its evaluation. An inverse that evaluates a function at one of the
forward's points keeps that evaluation (:func:`kept_call`), and the product pulls the call's
gradient through it: each point is evaluated once per layer in the backward pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from odenet.errors import UnsupportedSchemeError
from odenet.nn.params import constrain

if TYPE_CHECKING:
    from odenet.nn.rebuild import RebuildPass

__all__ = ["InterleavedProduct", "engine_grad", "kept_call", "layer_vjp", "leaves_of"]


def kept_call(run: RebuildPass, n: int, cache: dict, points: dict[int, int] | None = None, then=None):
    """``call(key, name, *args)`` for an inverse: evaluates layer n's call again under what the
    forward's saw, keeps the evaluation with its small graph in ``cache`` (for the layer's
    vector-Jacobian product) and returns its value detached. ``points`` (the adjoint's step with
    -h): only the calls it names are at the forward's points, as the forward call it gives; the
    others are evaluated without a graph, replaying the forward call of their own key. ``then``:
    called after each evaluation is kept (:meth:`InterleavedProduct.advance`)."""
    layers = run.layers

    def call(key, name, *args):
        module = layers.function(name, n)
        if points is not None and key not in points:
            return run.record.call_again(n, key, module, args)
        forward_key = key if points is None else points[key]
        leaves = leaves_of(args)
        with torch.enable_grad():
            out = run.record.call_again(n, forward_key, module, leaves)
        cache[forward_key] = (leaves, out)
        value = out.detach()
        del out  # else this frame keeps the output's values alive while ``then`` pulls its graph
        if then is not None:
            then()
        return value

    return call


def layer_vjp(
    run: RebuildPass, n: int, old, grads, cache: dict, wanted: dict, param_grads: list, values=None
):
    """The vector-Jacobian product of layer n at its input ``old`` with ``grads``: returns the
    gradients for the layer's input, and adds those of the parameters in ``wanted`` (id -> index)
    into ``param_grads``. ``values``: the scheme parameters' values (by default the layer's own).

    The step's own arithmetic is differentiated symbolically (``SchemeCode.vjp``, generated code); autograd
    differentiates only the functions, each call through the graph of its evaluation: the one the
    inverse made (``cache``), or one made here (replaying what the forward's call saw)."""
    product = _Product(run, n, cache, wanted, param_grads, values)
    cached = all(k in cache for k in range(run.layers.code.call_count))
    vjp = run.layers.code.vjp(product.learnable, cached)[1]
    results = vjp(tuple(old), _handed_over(grads), product.values, product.call, product.pull)
    return product.finish(old, *results)


class InterleavedProduct:
    """Layer n's vector-Jacobian product taken while its exact inverse runs: the generated product
    (``codegen.interleaved_vjp``) pulls each call's gradient as soon as the inverse has evaluated
    it, before the next call is evaluated, so one function's graph is alive at a time. Made before
    the inverse (with the gradients given); :meth:`advance` is the inverse's ``then`` hook;
    :meth:`finish` takes the layer's input once rebuilt (or its exact copy) and returns its
    gradients. Only for an inverse that evaluates every call of the step
    (``SchemeCode.inverse_shares_every_call``)."""

    def __init__(self, run: RebuildPass, n: int, grads, cache: dict, wanted: dict, param_grads: list):
        self.product = _Product(run, n, cache, wanted, param_grads)
        generator = run.layers.code.interleaved_vjp(self.product.learnable)
        self.steps = generator(_handed_over(grads), self.product.values, self.product.pull)
        self.need = next(self.steps)  # (key, name) of an evaluation, or None for the layer's input
        self.results: tuple | None = None

    def advance(self) -> None:
        """Hand the product every evaluation it waits for that the inverse has made."""
        cache = self.product.cache
        while self.results is None and self.need is not None and self.need[0] in cache:
            self.send(self.product.call(*self.need))

    def send(self, value) -> None:
        try:
            self.need = self.steps.send(value)
        except StopIteration as stop:  # done: nothing more to ask for
            self.results, self.need = stop.value, None

    def finish(self, old) -> list[torch.Tensor]:
        while self.results is None:
            if self.need is None:
                self.send(tuple(old))
            else:
                assert self.need[0] in self.product.cache, "the inverse did not evaluate a call"
                self.send(self.product.call(*self.need))
        return self.product.finish(old, *self.results)


class _Product:
    """What one layer's vector-Jacobian product calls back: ``call`` (an evaluation, from the
    inverse's ``cache`` or made here), ``pull`` (a call's vector-Jacobian product through autograd)
    and ``finish`` (the parameters' gradients, the input's summed to shape)."""

    def __init__(self, run: RebuildPass, n: int, cache: dict, wanted: dict, param_grads: list, values=None):
        layers = run.layers
        self.run, self.n, self.cache, self.wanted, self.param_grads = run, n, cache, wanted, param_grads
        self.dtype = run.dtype
        self.evaluations: dict[int, _Evaluation] = {}
        # the context's tensors that take part: their gradients are found for the pass's leaves
        self.context = [(original, leaf) for original, leaf in run.context.leaves if id(original) in wanted]
        self.learnable = tuple(name for name, raw in layers.raw_params.items() if id(raw) in wanted)
        if values is None:
            with torch.no_grad():
                values = layers.layer_params(n)
        self.values = values

    def add(self, p, g) -> None:
        i = self.wanted[id(p)]
        self.param_grads[i] = g if self.param_grads[i] is None else self.param_grads[i] + g

    def call(self, key, name, *args):
        run, n = self.run, self.n
        entry = self.cache.pop(key, None)
        if entry is None:
            leaves = leaves_of(args)
            with torch.enable_grad():
                out = run.record.call_again(n, key, run.layers.function(name, n), leaves)
            entry = (leaves, out)
        leaves, out = entry
        self.evaluations[key] = _Evaluation(name, leaves, out)
        out = out.detach()
        return out if out.dtype == self.dtype else out.to(self.dtype)

    def pull(self, key, gradient):
        # each call is pulled once: its evaluation (its graph) is freed when pulled
        run, n, dtype = self.run, self.n, self.dtype
        evaluation = self.evaluations.pop(key)
        leaves = evaluation.leaves
        if not run.mode.foreign_checked:
            refuse_foreign_tensors(run, n, [evaluation])
        params = [p for p in run.function_params[evaluation.name][n] if id(p) in self.wanted]
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        results: tuple = (None,) * len(tensors)
        if evaluation.requires_grad:  # else nothing in it needs a gradient (frozen, no input grad)
            if gradient.shape != evaluation.shape:  # a call broadcast in the step (f(2) + x[n])
                gradient = gradient.sum_to_size(evaluation.shape)
            targets = (*tensors, *params, *(leaf for _, leaf in self.context))
            results = engine_grad(evaluation.root, targets, gradient.to(evaluation.dtype))
            received = [*params, *(original for original, _ in self.context)]
            for p, g in zip(received, results[len(tensors) :], strict=True):
                if g is not None:
                    self.add(p, g)
        found = iter(
            torch.zeros_like(leaf) if r is None else r.to(dtype)
            for leaf, r in zip(tensors, results[: len(tensors)], strict=True)
        )
        # a plain-number argument has no gradient, and no symbol of the step reads one for it
        return tuple(next(found) if isinstance(leaf, torch.Tensor) else None for leaf in leaves)

    def finish(self, old, state_grads, value_grads) -> list[torch.Tensor]:
        run, n, layers = self.run, self.n, self.run.layers
        if not run.mode.foreign_checked:
            refuse_foreign_tensors(run, n, list(self.evaluations.values()))
        if self.learnable:  # through the map that keeps each parameter in its interval
            given = [(name, g) for name, g in zip(self.learnable, value_grads, strict=True) if g is not None]
            raws = [layers.raw_params[name] for name, _ in given]
            with torch.enable_grad():
                mapped = [
                    constrain(raw[n], layers.intervals[name])
                    for raw, (name, _) in zip(raws, given, strict=True)
                ]
            results = torch.autograd.grad(mapped, raws, [g for _, g in given]) if given else ()
            for raw, g in zip(raws, results, strict=True):
                self.add(raw, g)
        return [
            g if g.shape == s.shape else g.sum_to_size(s.shape) for g, s in zip(state_grads, old, strict=True)
        ]


class _Evaluation:
    """A call's evaluation for the vector-Jacobian product: its leaves and its graph, without its
    output's values (the root of the graph is the output's gradient edge, so the output is freed once
    the generated code has read it: a state-sized tensor per call at the backward pass's peak)."""

    __slots__ = ("dtype", "leaves", "name", "node", "requires_grad", "root", "shape")

    def __init__(self, name: str, leaves: list, out: torch.Tensor):
        self.name, self.leaves = name, leaves
        self.shape, self.dtype, self.requires_grad = out.shape, out.dtype, out.requires_grad
        self.node = out.grad_fn
        # a leaf output (a function returning its input) has no node to start from: kept itself
        self.root = out if out.grad_fn is None else torch.autograd.graph.get_gradient_edge(out)


def _handed_over(grads) -> tuple:
    """The given gradients as a tuple; a list is emptied, so that the generated code, which frees each
    gradient once read, holds the only reference (the caller hands its gradients over)."""
    given = tuple(grads)
    if isinstance(grads, list):
        grads.clear()
    return given


def leaves_of(args) -> list:
    """The arguments of a call as leaves of its own graph; a plain number (``f(2)``) stays one."""
    return [a.detach().requires_grad_(True) if isinstance(a, torch.Tensor) else a for a in args]


def engine_grad(out: torch.Tensor, inputs: tuple, gradient: torch.Tensor) -> tuple:
    """``torch.autograd.grad(out, inputs, gradient, allow_unused=True)`` straight from autograd's
    engine: what ``torch.autograd.grad`` checks (shapes, overrides, batched gradients) holds by
    construction here, and skipping its Python layer saves 20 to 60 us per layer, measured."""
    return torch.autograd.Variable._execution_engine.run_backward(
        (out,), (gradient,), False, False, inputs, True, False
    )


def refuse_foreign_tensors(run: RebuildPass, n: int, evaluations) -> None:
    """Walk the graphs of layer n's evaluations (:class:`_Evaluation`) down to their leaves: one
    that requires grad and is neither a call's argument nor a registered parameter of the block would
    get no gradient from this mode, so it is refused (on a block's first backward pass; the step's
    own arithmetic builds no graph)."""
    allowed = {id(p) for p in run.layers.parameters()}
    allowed |= {id(leaf) for evaluation in evaluations for leaf in evaluation.leaves}
    allowed |= {id(leaf) for _, leaf in run.context.leaves}
    stack = [evaluation.node for evaluation in evaluations if evaluation.node is not None]
    seen = set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None and id(variable) not in allowed:
            raise UnsupportedSchemeError(
                f"a function of layer {n} of {run.layers.scheme.name}'s block uses a tensor that requires "
                f"grad (shape {tuple(variable.shape)}) and is neither its input, a registered parameter "
                "of the block nor a keyword argument of the block's call: memory='reversible' and "
                "memory='adjoint' would give it no gradient. Pass it to the block as a keyword "
                "(block(x, name=tensor) gives it to every function call), register it as a parameter of "
                "the function's module, or use memory='checkpoint' or 'autograd'"
            )
        stack.extend(fn for fn, _ in node.next_functions)
