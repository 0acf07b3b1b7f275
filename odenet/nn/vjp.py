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

__all__ = ["engine_grad", "kept_call", "layer_vjp", "leaves_of"]


def kept_call(run: RebuildPass, n: int, cache: dict, points: dict[int, int] | None = None):
    """``call(key, name, *args)`` for an inverse: evaluates layer n's call again under what the
    forward's saw, keeps the evaluation with its small graph in ``cache`` (for the layer's
    vector-Jacobian product) and returns its value detached. ``points`` (the adjoint's step with
    -h): only the calls it names are at the forward's points, as the forward call it gives; the
    others are evaluated without a graph, replaying the forward call of their own key."""
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
        return out.detach()

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
    layers = run.layers
    dtype = old[0].dtype
    evaluations: dict[int, tuple] = {}

    def add(p, g):
        i = wanted[id(p)]
        param_grads[i] = g if param_grads[i] is None else param_grads[i] + g

    def call(key, name, *args):
        entry = cache.pop(key, None)
        if entry is None:
            leaves = leaves_of(args)
            with torch.enable_grad():
                out = run.record.call_again(n, key, layers.function(name, n), leaves)
            entry = (leaves, out)
        leaves, out = entry
        evaluations[key] = _Evaluation(name, leaves, out)
        out = out.detach()
        return out if out.dtype == dtype else out.to(dtype)

    # the context's tensors that take part: their gradients are found for the pass's leaves
    context = [(original, leaf) for original, leaf in run.context.leaves if id(original) in wanted]

    def pull(key, gradient):
        # each call is pulled once: its evaluation (its graph) is freed when pulled
        evaluation = evaluations.pop(key)
        leaves = evaluation.leaves
        if not run.mode.foreign_checked:
            refuse_foreign_tensors(run, n, [evaluation])
        params = [p for p in run.function_params[evaluation.name][n] if id(p) in wanted]
        tensors = [leaf for leaf in leaves if isinstance(leaf, torch.Tensor)]
        results: tuple = (None,) * len(tensors)
        if evaluation.requires_grad:  # else nothing in it needs a gradient (frozen, no input grad)
            if gradient.shape != evaluation.shape:  # a call broadcast in the step (f(2) + x[n])
                gradient = gradient.sum_to_size(evaluation.shape)
            targets = (*tensors, *params, *(leaf for _, leaf in context))
            results = engine_grad(evaluation.root, targets, gradient.to(evaluation.dtype))
            received = [*params, *(original for original, _ in context)]
            for p, g in zip(received, results[len(tensors) :], strict=True):
                if g is not None:
                    add(p, g)
        found = iter(
            torch.zeros_like(leaf) if r is None else r.to(dtype)
            for leaf, r in zip(tensors, results[: len(tensors)], strict=True)
        )
        # a plain-number argument has no gradient, and no symbol of the step reads one for it
        return tuple(next(found) if isinstance(leaf, torch.Tensor) else None for leaf in leaves)

    learnable = tuple(name for name, raw in layers.raw_params.items() if id(raw) in wanted)
    vjp = layers.code.vjp(learnable, all(k in cache for k in range(layers.code.call_count)))[1]
    if values is None:
        with torch.no_grad():
            values = layers.layer_params(n)
    state_grads, value_grads = vjp(tuple(old), _handed_over(grads), values, call, pull)
    if not run.mode.foreign_checked:
        refuse_foreign_tensors(run, n, list(evaluations.values()))
    if learnable:  # through the map that keeps each parameter in its interval
        given = [(name, g) for name, g in zip(learnable, value_grads, strict=True) if g is not None]
        raws = [layers.raw_params[name] for name, _ in given]
        with torch.enable_grad():
            mapped = [
                constrain(raw[n], layers.intervals[name]) for raw, (name, _) in zip(raws, given, strict=True)
            ]
        results = torch.autograd.grad(mapped, raws, [g for _, g in given]) if given else ()
        for raw, g in zip(raws, results, strict=True):
            add(raw, g)
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
