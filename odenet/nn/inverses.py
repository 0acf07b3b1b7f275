"""The inverses of a layer, the four ways odenet rebuilds an input from its output.

- :func:`exact_inverse_step`: the derived inverse (``analysis.inverse.invert``), generated code;
- :func:`fixed_point_inverse_step`: where the inverse is a fixed point (Euler, Heun), solved by
  iteration to a tolerance, refused loudly where it does not converge;
- :func:`negative_step`: the step with ``-h`` in reversed time, approximate (the adjoint mode);
- fixed-point mode's bit-exact integer inverse lives with that mode (``modes/fixed_point.py``).

All work on state vectors in forward time; the inverses run in reversed time
(``ir.reversal``), so the history is turned around on the way in and out.
"""

from __future__ import annotations

import torch

from odenet.errors import UnsupportedSchemeError
from odenet.ir.reversal import reverse_history
from odenet.nn.drift import DEFAULT_GROWTH
from odenet.nn.implicit import Map, recording_caller, refuse, solve_map
from odenet.nn.layers import NO_CONTEXT, Context, Layers
from odenet.nn.solvers import SolveInfo, Solver

__all__ = ["exact_inverse_step", "fixed_point_inverse_step", "negative_step"]


def exact_inverse_step(
    layers: Layers,
    n: int,
    new_state,
    call=None,
    tol: float | None = None,
    solver=None,
    context: Context = NO_CONTEXT,
):
    """The input of layer ``n`` from its output, by the derived inverse, or by solving the
    fixed-point inverse (to ``tol``, with ``solver``) where there is no explicit one (Euler, Heun).
    ``call(key, name, *args)`` evaluates the functions (by default layer ``n``'s modules)."""
    inverse, _, error = layers.code.inverse
    reversed_state = reverse_history(layers.scheme, new_state)
    if inverse is None:
        if layers.code.fixed_point_inverse[1] is not None:
            raise UnsupportedSchemeError(str(error))
        caller = call or recording_caller(layers, n, new_state, context)  # inverse(): buffers change once
        checked = layers.checked(caller, new_state, n)
        tol = DEFAULT_GROWTH * torch.finfo(new_state[0].dtype).eps if tol is None else tol
        out = fixed_point_inverse_step(layers, n, reversed_state, checked, tol, solver or Solver())
    else:
        out = inverse(
            reversed_state,
            layers.layer_params(n),
            layers.checked(call or layers.caller(n, context), new_state, n),
        )
    return reverse_history(layers.scheme, out)


def negative_step(layers: Layers, n: int, new_state, call=None, context: Context = NO_CONTEXT):
    """The input of layer ``n`` rebuilt approximately: the forward step with ``-h`` (the scheme's
    step parameter, whatever its name), in reversed time (Sander et al. 2022). Exact for
    time-symmetric schemes such as leapfrog."""
    params = dict(layers.layer_params(n))
    params[layers.scheme.step] = -params[layers.scheme.step]
    reversed_state = reverse_history(layers.scheme, new_state)
    call = layers.checked(call or layers.caller(n, context), new_state, n)
    out = layers.code.step(reversed_state, params, call)
    return reverse_history(layers.scheme, out)


@torch.no_grad()
def fixed_point_inverse_step(layers: Layers, n: int, reversed_state, call, tol: float, solver: Solver):
    """Layer ``n``'s input from its output (both in reversed time) by solving the fixed-point
    inverse (:func:`odenet.analysis.inverse.fixed_point_inverse`) with ``solver`` to the
    relative residual ``tol`` (a tenth of it where rounding allows; at least 100 eps, so that a
    tolerance no rebuild can meet is left to the drift guard to measure); ``call`` evaluates the
    functions as the forward did. A solve that does not converge raises
    :class:`~odenet.errors.ConvergenceError`: the rebuilt input, and the gradient, would be wrong."""
    parts, error = layers.code.fixed_point_inverse
    if parts is None:
        raise error
    inverse = Map(parts.step, parts.constant, parts.start, reversed_state, layers.layer_params(n), call)
    inverse.layer, inverse.shaped = n, parts.code.shaped
    first = inverse.predict()
    # relative to the whole state, as the guard measures rebuilt inputs: an input that is exactly
    # zero beside a large one (Nesterov's velocity at layer 0) is rebuilt to the rounding of the
    # terms that make it, which is no accuracy relative to itself
    flat, outcome = solve_map(layers, solver, inverse, first, tol / 10, per_unknown=False)
    if not outcome.residual <= max(tol, DEFAULT_GROWTH * torch.finfo(reversed_state[0].dtype).eps):
        refuse(
            layers,
            solver,
            n,
            "rebuild",
            outcome,
            tol,
            f"The inverse of {layers.scheme.name} is a fixed point that iteration finds when "
            f"{_contraction_condition(layers, n)}: keep the functions contractive (spectral "
            "normalization, make_function(..., contraction=0.9)), lower the step, or use "
            "memory='checkpoint'",
            reversed_state[0].dtype,
        )
    layers.last_pass.rebuilds.append(SolveInfo(n, outcome.iterations, outcome.evaluations, outcome.residual))
    unknowns = flat.split(outcome.value)
    return tuple(unknowns[i] if new else reversed_state[i] for new, i in parts.assemble)


def _contraction_condition(layers: Layers, n: int) -> str:
    """The analysis's condition for layer ``n``'s fixed-point inverse to converge, at its parameters."""
    import sympy  # the analysis's numbers, on this failing path only

    from odenet.analysis.inverse import lipschitz_limit
    from odenet.analysis.verdict import lipschitz_condition

    values = {name: sympy.Float(float(v)) for name, v in layers.layer_params(n).items()}
    limit = lipschitz_limit(layers.scheme, {sympy.Symbol(k, real=True): v for k, v in values.items()})
    return lipschitz_condition(layers.scheme, limit, values)
