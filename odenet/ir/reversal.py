"""The reversed-time convention of inverse steps, in one place.

An inverse step is itself a :class:`~odenet.ir.Scheme`, in reversed time (index ``m``). Forward, a
state with history ``d`` steps ``(x[n], ..., x[n-d])`` to ``(x[n+1], ..., x[n-d+1])``; the inverse
recovers the oldest value. In its own symbols, its current value ``X[m]`` is the forward
``x[n-d+1]``, its history ``X[m-i]`` the forward ``x[n-d+1+i]`` (more recent values), and its new
value ``X[m+1]`` the recovered ``x[n-d]``: history keeps its meaning in both directions.

The analysis derives inverses in these symbols, the code generator keys the inverse's calls by the
forward step's symbols, and compiled blocks reorder state vectors between the two directions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

import sympy

from odenet.ir.symbols import split_value, value

if TYPE_CHECKING:
    from odenet.ir.scheme import Scheme

__all__ = ["forward_to_reversed", "from_reversed", "reverse_history", "reversed_to_forward", "to_reversed"]

T = TypeVar("T")


def forward_to_reversed(scheme: Scheme) -> dict[sympy.Symbol, sympy.Symbol]:
    """The reversed-time names of the forward step's values: for a state with history ``d``,
    ``x[n-d+1+i] -> X[m-i]`` (i = 0..d) and the recovered ``x[n-d] -> X[m+1]``."""
    rename = {}
    for state in scheme.states:
        depth = scheme.history[state]
        for i in range(depth + 1):
            rename[value(state, -depth + 1 + i)] = value(state, -i)
        rename[value(state, -depth)] = value(state, 1)
    return rename


def reversed_to_forward(scheme: Scheme) -> dict[sympy.Symbol, sympy.Symbol]:
    """The inverse scheme's symbols in the forward step's (X[m+1] = x[n-d], X[m-i] = x[n-d+1+i])."""
    return {r: f for f, r in forward_to_reversed(scheme).items()}


def to_reversed(scheme: Scheme, forward_new: Mapping[sympy.Symbol, T]) -> dict[sympy.Symbol, T]:
    """The inverse scheme's *old* state vector from the values of a forward step (``x[n+1]``,
    ``x[n]``, ...): the values the inverse starts from."""
    rename = forward_to_reversed(scheme)
    return {rename[f]: forward_new[f] for f in rename if split_value(rename[f])[1] <= 0}


def from_reversed(scheme: Scheme, inverse_values: Mapping[sympy.Symbol, T]) -> dict[sympy.Symbol, T]:
    """The forward step's *old* state vector from the inverse scheme's values after its step
    (``X[m+1]`` and ``X[m], X[m-1], ...``)."""
    rename = forward_to_reversed(scheme)
    old = set(scheme.state_vector)
    return {f: inverse_values[r] for f, r in rename.items() if f in old}


def reverse_history(scheme: Scheme, state: Sequence[T]) -> tuple[T, ...]:
    """Reorder a state vector (a sequence in the order of ``scheme.state_vector``) between forward
    and reversed time: each state's block of history is reversed (forward ``(x[n+1], x[n])`` is the
    inverse's ``(X[m], X[m-1])``, with ``X[m] = x[n]``)."""
    out: list[T] = []
    i = 0
    for s in scheme.states:
        size = scheme.history[s] + 1
        out.extend(reversed(state[i : i + size]))
        i += size
    return tuple(out)
