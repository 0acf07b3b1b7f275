"""The updates of a scheme as ``new = c * old + remainder``: what fixed-point mode
(``odenet.nn.modes.fixed_point``) needs to hold states as integers and undo each update exactly."""

from __future__ import annotations

import functools

import sympy
from sympy.core.function import AppliedUndef

from odenet.errors import UnsupportedSchemeError
from odenet.ir import Scheme, parse_value, value

__all__ = ["exact_parts"]


@functools.lru_cache(maxsize=64)
def exact_parts(scheme: Scheme) -> tuple[tuple[sympy.Symbol, sympy.Symbol, sympy.Expr, sympy.Expr], ...]:
    """``(new value, value it replaces, c, remainder)`` for each update in order, or
    :class:`UnsupportedSchemeError` saying which update does not have that form."""
    if scheme.coupled_stages or not scheme.is_explicit:
        raise UnsupportedSchemeError(
            f"memory='fixed_point' needs an explicit scheme, and {scheme.name} is implicit"
        )
    params = {p.symbol for p in scheme.params}
    held = set(scheme.state_vector)
    parts = []
    for state, residual in scheme.update_residuals.items():
        new = value(state, 1)
        old = value(state, -scheme.history[state])
        expr = new - residual  # the update with its stages substituted
        c = sympy.diff(expr, old)
        remainder = expr.xreplace({old: 0})
        why = None
        if c.free_symbols - params or c.atoms(AppliedUndef, sympy.Derivative):
            why = f"{old} enters {new} other than through a constant factor"
        elif c == 0:
            why = f"{new} does not depend on {old}, the value it replaces"
        elif sympy.simplify(expr - c * old - remainder) != 0:
            why = f"{new} is not c*{old} plus terms free of {old}"
        else:
            missing = {s for s in remainder.free_symbols if parse_value(s)} - held
            if missing:
                why = (
                    f"{new} reads {', '.join(sorted(map(str, missing)))}, no longer held when it is computed"
                )
        if why is not None:
            raise UnsupportedSchemeError(
                f"memory='fixed_point' needs every update to read new = c*old + terms of values still "
                f"held (old: the value the update replaces); in {scheme.name}, {why}. Use "
                "memory='reversible' (exact copies bound the drift) or memory='checkpoint'"
            )
        held = (held - {old}) | {new}
        parts.append((new, old, sympy.simplify(c), remainder))
    return tuple(parts)
