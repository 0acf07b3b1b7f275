"""Everything generated for one scheme, in one cached object.

:func:`scheme_code` returns the :class:`SchemeCode` of a scheme: the step and its start, made at
once (every block runs them), and, each on first use, the derived inverse, the fixed-point inverse,
an implicit step's map, the vector-Jacobian products, the bit-exact step of fixed-point mode and
which calls of the step with ``-h`` sit at the forward's points. Blocks of equal schemes share one
object (a scheme is a frozen value); a block pickles by its scheme's text and asks for the object
again when loaded. ``odenet compile --emit`` and the trained-stability code read the same object.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

from odenet.codegen import (
    StepCode,
    called_keys,
    compile_source,
    evaluation_points,
    generate_exact,
    generate_implicit,
    generate_init,
    generate_step,
    generate_vjp,
    implicit_unknowns,
    interleaved_vjp,
    release_dead,
)
from odenet.errors import NotReversibleError, OdenetError
from odenet.ir import Equation, Scheme, parse_value, value
from odenet.ir.reversal import forward_to_reversed, reversed_to_forward
from odenet.nn.generated import namespace

__all__ = ["ExactCode", "ImplicitParts", "InverseCode", "SchemeCode", "scheme_code"]


class InverseCode(NamedTuple):
    """The derived explicit inverse: the compiled step and its source, or why there is none."""

    step: Callable | None
    code: StepCode | None
    error: OdenetError | None


class ImplicitParts(NamedTuple):
    """An implicit step's generated map ``G`` and what runs it (``implicit.py``)."""

    step: Callable  # G(state, guess, p, call) -> the unknowns' computed values
    constant: frozenset[int]  # keys of the calls that read no unknown
    start: tuple  # where each unknown's first guess comes from (a state's index, or None: zero)
    assemble: tuple  # where each value of the next state vector comes from: (unknown?, index)
    code: StepCode  # the generated source


class ExactCode(NamedTuple):
    """Fixed-point mode's integer step and its inverse (``modes/fixed_point.py``)."""

    step_code: StepCode
    inverse_code: StepCode
    step: Callable
    inverse: Callable
    coefficients: tuple  # each update's c, as a sympy expression of the parameters


class SchemeCode:
    """The generated code of one scheme (see the module doc)."""

    def __init__(self, scheme: Scheme):
        self.scheme = scheme
        self.forward, self.init = generate_step(scheme), generate_init(scheme)
        self.step = compile_source(self.forward, namespace(), f"{scheme.name} step")
        self.start = compile_source(self.init, namespace(), f"{scheme.name} init")
        self._vjps: dict[tuple, tuple[StepCode, Callable]] = {}

    def __repr__(self) -> str:
        return f"SchemeCode({self.scheme.name}: {len(self.forward.calls)} calls per step)"

    @property
    def call_count(self) -> int:
        """How many distinct function calls one forward step makes (keys 0 .. call_count - 1)."""
        return len(self.forward.calls)

    def vjp(self, learnable: tuple[str, ...], cached: bool) -> tuple[StepCode, Callable]:
        """The step's vector-Jacobian product (:func:`odenet.codegen.generate_vjp`), per set of
        learnable parameters wanted: (source, compiled)."""
        found = self._vjps.get((learnable, cached))
        if found is None:
            code = generate_vjp(self.scheme, learnable, cached)
            label = f"{self.scheme.name} vjp{' (calls cached)' if cached else ''}"
            found = self._vjps[(learnable, cached)] = (code, compile_source(code, namespace(), label))
        return found

    def interleaved_vjp(self, learnable: tuple[str, ...]) -> Callable:
        """The cached product as a generator that asks for each evaluation where it needs it
        (:func:`odenet.codegen.interleaved_vjp`), for reversible mode's exact inverse."""
        key = (learnable, "interleaved")
        found = self._vjps.get(key)
        if found is None:
            code = interleaved_vjp(self.vjp(learnable, True)[0])
            label = f"{self.scheme.name} vjp (interleaved)"
            found = self._vjps[key] = (code, compile_source(code, namespace(), label))
        return found[1]

    @functools.cached_property
    def inverse_shares_every_call(self) -> bool:
        """Whether the derived explicit inverse evaluates every call of the forward step (at the
        forward's points): then the product can take each evaluation from it as it is made."""
        code = self.inverse.code
        if code is None or self.call_count == 0:  # without calls nothing to interleave (nor a generator)
            return False
        return set(range(self.call_count)) <= called_keys(code.source)

    @functools.cached_property
    def inverse(self) -> InverseCode:
        """The derived inverse step (a sympy solve, on first use: only reversible mode needs it).
        It evaluates the functions at the forward's points, spelled in the values it knows: each call
        gets the key of the forward call at the same point, so that the backward pass evaluates each
        point once and replays the forward's random numbers and buffers for it."""
        from odenet.analysis.inverse import invert

        scheme = self.scheme
        try:
            derivation = invert(scheme)
        except NotReversibleError as exc:
            return InverseCode(None, None, exc)
        translate = reversed_to_forward(scheme)
        points = evaluation_points(scheme)
        spelled = generate_step(derivation.scheme, call_keys={}, translate=translate).calls
        code = generate_step(
            derivation.scheme,
            function_name="inverse_step",
            call_keys={**points.keys, **points.match(spelled)},
            comment="the derived inverse, in reversed time: X[m+1] is the older value",
            translate=translate,
        )
        # each value freed after its last read: a call's value is not kept while the next is evaluated
        code = dataclasses.replace(code, source=release_dead(code.source))
        return InverseCode(compile_source(code, namespace(), f"{scheme.name} inverse"), code, None)

    @functools.cached_property
    def fixed_point_inverse(self) -> tuple[ImplicitParts | None, OdenetError | None]:
        """The inverse of an explicit step without an explicit one, as an implicit step in reversed
        time that iteration solves: (parts, None), or (None, why it is not one)."""
        from odenet.analysis.inverse import fixed_point_inverse

        scheme = self.scheme
        try:
            inverse = fixed_point_inverse(scheme)
        except NotReversibleError as exc:
            return None, exc
        translate, points = reversed_to_forward(scheme), evaluation_points(scheme)
        spelled = generate_implicit(inverse, call_keys={}, translate=translate).calls
        keys = {**points.keys, **points.match(spelled)}  # as the explicit inverse's (above)
        return _implicit_parts(inverse, keys, translate, "fixed_point_inverse"), None

    @functools.cached_property
    def implicit(self) -> ImplicitParts:
        """An implicit step's generated map ``G`` (``implicit.py``)."""
        return _implicit_parts(self.scheme, {}, {}, "implicit_step")

    @functools.cached_property
    def negative_step_points(self) -> dict[int, int]:
        """Which calls of the step with ``-h`` evaluate a function at one of the forward step's
        points, read at the rebuilt input: ``{its key: the forward call's key}``.

        The step with ``-h`` is the forward code run on the state in reversed time: a step of its
        own, whose new values are the rebuilt input. The layer's vector-Jacobian product evaluates
        the forward's calls at that rebuilt input; written in the reversed step's symbols (its new
        values for the forward's old ones, its old values for the forward's new ones), a forward
        call whose arguments equal, in that step's values, one of its points is the same function of
        the same numbers. Leapfrog's ``f(y[n])`` is its own; Verlet, symmetric, shares both points
        (crossed); a damped kick-drift-kick in an order that is not symmetric
        (tests/data/user/damped_lie.scheme) shares one. Such an evaluation serves the layer's
        vector-Jacobian product too, and replays the forward call's random numbers. (The rebuild is
        approximate, so nothing here may assume that it inverts the step.)"""
        scheme = self.scheme
        step = next((p.symbol for p in scheme.params if p.name == scheme.step), None)
        if step is None:
            return {}
        negative = dataclasses.replace(
            scheme,
            steps=tuple(Equation(eq.target, eq.expr.xreplace({step: -step})) for eq in scheme.steps),
        )
        points = evaluation_points(negative)  # keyed as the forward code's calls, which it runs
        rename = forward_to_reversed(scheme)
        inlined: dict = {}  # stages and new values as expressions of the old values
        for eq in scheme.steps:
            inlined[eq.target] = eq.expr.xreplace(inlined)
        wanted = {j: call.xreplace(inlined).xreplace(rename) for j, call in enumerate(self.forward.calls)}
        found = points.match(list(wanted.values()))
        return dict(sorted((found[call], j) for j, call in wanted.items() if call in found))

    @functools.cached_property
    def exact(self) -> ExactCode:
        """Fixed-point mode's integer step and inverse; raises UnsupportedSchemeError for a scheme
        whose updates are not ``c*old + held terms`` (:func:`odenet.analysis.exact.exact_parts`)."""
        from odenet.analysis.exact import exact_parts

        scheme = self.scheme
        parts = exact_parts(scheme)
        keys = dict(evaluation_points(scheme).keys)
        step_code = generate_exact(scheme, parts, keys, inverse=False)
        inverse_code = generate_exact(scheme, parts, keys, inverse=True)
        step = compile_source(step_code, namespace(), f"{scheme.name} fixed-point step")
        inverse = compile_source(inverse_code, namespace(), f"{scheme.name} fixed-point inverse")
        return ExactCode(step_code, inverse_code, step, inverse, tuple(c for _, _, c, _ in parts))


@functools.lru_cache(maxsize=64)
def scheme_code(scheme: Scheme) -> SchemeCode:
    """The one :class:`SchemeCode` of ``scheme`` (shared by blocks of equal schemes)."""
    return SchemeCode(scheme)


def _implicit_parts(scheme: Scheme, call_keys: dict, translate: dict, function_name: str) -> ImplicitParts:
    """An implicit step's map; ``call_keys`` and ``translate`` key the calls of a fixed-point
    inverse as the forward step's (see :func:`odenet.codegen.generate_step`)."""
    code = generate_implicit(scheme, function_name, call_keys=call_keys, translate=translate)
    unknowns = implicit_unknowns(scheme)
    read = {u.xreplace(translate) for u in unknowns}
    constant = frozenset(k for k, c in zip(code.keys, code.calls, strict=True) if not (c.free_symbols & read))
    position = {symbol: i for i, symbol in enumerate(scheme.state_vector)}
    start = tuple(position[value(parse_value(u)[0])] if parse_value(u) else None for u in unknowns)
    index = {u: i for i, u in enumerate(unknowns)}
    assemble = []
    for symbol in scheme.state_vector:
        state, offset = parse_value(symbol)
        new = value(state, offset + 1)
        assemble.append((True, index[new]) if offset == 0 else (False, position[new]))
    step = compile_source(code, namespace(), f"{scheme.name} {code.function_name}")
    return ImplicitParts(step, constant, start, tuple(assemble), code)
