"""What the generated code calls besides torch: elementwise helpers that spare it temporaries, and
the wrapper that gives it the functions' values in the state's dtype.

The generated step, inverse and vector-Jacobian product (``odenet.codegen``) are compiled with
:func:`namespace` as their globals.
"""

from __future__ import annotations

import torch

__all__ = ["accumulate", "in_state_dtype", "linear_combination", "namespace"]


def linear_combination(*terms):
    """``t0*s0 + t1*s1 + ...`` for ``terms = (t0, s0, t1, s1, ...)``: floating-point tensors of one
    shape and dtype with scalar coefficients (numbers or 0-dimensional tensors), in one pass over
    memory per term into one new tensor (the first term's product, or the sum of a term with
    coefficient 1 and the next one, then in place), where ``t0*s0 + t1*s1`` allocates a tensor per
    operation: 2.6 times faster for leapfrog's step on a conv state, measured. Anything else
    (broadcasting, mixed dtypes, integers, tensors inside ``torch.func`` transforms) is computed as
    written. The generated step, inverse and vector-Jacobian product use it for the scheme's linear
    combinations; autograd differentiates it as usual (the in-place updates touch only the new
    tensor, which no backward formula reads).

    Under ``torch.compile`` the sum is traced as written (the compiler fuses it): the checks below
    would break the graph, and torch 2.13's dynamo resumes such a function wrongly (a comprehension
    after a graph break inside a loop reads stale locals: the result was off by a whole term)."""
    if torch.compiler.is_compiling():
        return _as_written(terms)
    first = terms[0]
    if not isinstance(first, torch.Tensor) or not first.is_floating_point() or _wrapped(first):
        return _as_written(terms)
    base = -1  # a term with coefficient 1 starts the sum without a multiplication
    for i in range(0, len(terms), 2):
        tensor, scale = terms[i], terms[i + 1]
        if (
            not isinstance(tensor, torch.Tensor)
            or tensor.shape != first.shape
            or tensor.dtype != first.dtype
            or (isinstance(scale, torch.Tensor) and scale.dim())
            or _wrapped(tensor)
        ):
            return _as_written(terms)
        if base < 0 and not isinstance(scale, torch.Tensor) and scale == 1:
            base = i
    if base < 0 or len(terms) == 2:
        out = torch.mul(terms[0], terms[1])
        rest = range(2, len(terms), 2)
    else:
        other = 2 if base == 0 else 0
        scale = terms[other + 1]
        out = (
            torch.addcmul(terms[base], terms[other], scale)
            if isinstance(scale, torch.Tensor)
            else torch.add(terms[base], terms[other], alpha=scale)
        )
        rest = [i for i in range(0, len(terms), 2) if i != base and i != other]
    for i in rest:
        scale = terms[i + 1]
        if isinstance(scale, torch.Tensor):
            out.addcmul_(terms[i], scale)
        else:
            out.add_(terms[i], alpha=scale)
    return out


def _as_written(terms):
    """``t0*s0 + t1*s1 + ...`` term by term."""
    out = terms[0] * terms[1]
    for i in range(2, len(terms), 2):
        out = out + terms[i] * terms[i + 1]
    return out


def accumulate(like, *terms):
    """``linear_combination(*terms)`` for the gradient of ``like`` (a tensor or a number): a term
    broadcast beyond ``like``'s shape is first summed down to it (the gradient of a broadcast value
    is the sum over the broadcast elements)."""
    shape = like.shape if isinstance(like, torch.Tensor) else torch.Size()
    reduced = list(terms)
    for i in range(0, len(reduced), 2):
        tensor = reduced[i]
        if isinstance(tensor, torch.Tensor) and tensor.shape != shape and tensor.numel() > shape.numel():
            reduced[i] = tensor.sum_to_size(shape)
    return linear_combination(*reduced)


def _wrapped(tensor: torch.Tensor) -> bool:
    """Under ``torch.func`` transforms (vmap, grad) a tensor is a wrapper whose in-place updates
    must match its batching: such sums are computed as written."""
    return torch._C._functorch.is_functorch_wrapped_tensor(tensor)


def namespace() -> dict:
    """What generated code may use."""
    return {"torch": torch, "linear_combination": linear_combination, "accumulate": accumulate}


def in_state_dtype(call, state, layer: int | None = None, shaped: frozenset[int] | None = None):
    """``call`` with its results checked and in the state's dtype.

    Under autocast a function returns bfloat16; the step's arithmetic must still run in the state's
    precision, the same in every mode and in the inverse: a 0-dimensional parameter does not promote
    a bfloat16 tensor (``(1 - gamma)*f(x)`` would be rounded to bfloat16 in the forward and
    ``gamma*f(x) - f(x)`` differently in the inverse).

    A result that is not a tensor, or (for the calls in ``shaped``, whose values enter the state's
    arithmetic and whose arguments read the state: by default every call) not shaped like the
    state, is refused with
    :class:`~odenet.errors.FunctionOutputError` naming the function, ``layer`` and both shapes,
    where it would otherwise fail inside the generated step (``'tuple' object has no attribute
    'dtype'``) or, worse, broadcast silently. The check reads shapes only: no device sync."""
    dtype, shape = state[0].dtype, state[0].shape

    def typed(key, name, *args):
        out = call(key, name, *args)
        if not isinstance(out, torch.Tensor) or (out.shape != shape and (shaped is None or key in shaped)):
            _refuse_output(name, layer, out, shape, args)
        return out if out.dtype == dtype else out.to(dtype)

    return typed


def _refuse_output(name: str, layer: int | None, out, shape: torch.Size, args) -> None:
    from odenet.errors import FunctionOutputError

    where = f"function {name}" + ("" if layer is None else f" of layer {layer}")
    inputs = ", ".join(str(tuple(a.shape)) if isinstance(a, torch.Tensor) else repr(a) for a in args)
    if not isinstance(out, torch.Tensor):
        kind = type(out).__name__
        hint = ""
        if kind in ("tuple", "list"):
            hint = " (take the tensor you mean, such as out[0] of a transformer layer)"
        raise FunctionOutputError(
            f"{where} returned a {kind}, not a tensor{hint}: a scheme's function must return one tensor "
            f"shaped like the state it updates, {tuple(shape)} (its input: {inputs})"
        )
    raise FunctionOutputError(
        f"{where} returned shape {tuple(out.shape)} where the state it updates has shape {tuple(shape)} "
        f"(its input: {inputs}); a scheme's function maps the state to its rate of change, so the "
        "shapes must agree (a broadcast would silently train another network)"
    )
