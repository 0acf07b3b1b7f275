"""Training defaults per scheme: what ``odenet train SCHEME`` uses for what the command line does not say.

A library scheme has measured defaults (``benchmarks/train_defaults.py`` trains every one with them and
writes the table in docs/training.md). A scheme a user writes has none: its defaults are those of
the library scheme it most resembles, judged on its analysis (first- or second-order in time, how
many functions, whether it has an explicit inverse, how many states), with the step scaled down
when its stability interval is shorter than that scheme's, so that the layers' ``h*lambda`` stay as
far inside it as the measured ones did. ``odenet train --explain-defaults`` prints the choice and why.

Plain values only: no torch here (the command line reads these while building its parser).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType

from odenet.ir import Scheme
from odenet.options import Family, Memory

__all__ = ["LIBRARY_DEFAULTS", "SchemeDefaults", "scheme_defaults"]


@dataclass(frozen=True)
class SchemeDefaults:
    family: Family  # the residual functions
    lr: float
    memory_saving: Memory  # the mode that saves memory: reversible when the inverse is explicit
    step: float | None = None  # the step parameter's value; None: the scheme's own default
    like: str | None = None  # the library scheme these were taken from, for a user's scheme
    reasons: tuple[str, ...] = ()

    def step_value(self, scheme: Scheme) -> float | None:
        """The step ``scheme`` trains with: the chosen one, else its own default; None without one."""
        if self.step is not None:
            return self.step
        param = scheme.step_param
        return None if param is None or param.default is None else float(param.default)


_BN = "bn: conv-BatchNorm-ReLU-conv residual functions, which keep every scheme's h*lambda small"
# Measured with `python benchmarks/train_defaults.py` (5 epochs on digits, test accuracy in
# docs/training.md): every library scheme reaches 95% with these but backward Euler (94.7%).
_REVNET = (
    "measured for revnet",
    "lr 1e-3: without a step each coupling adds f's whole output (36% on digits at 1e-2, 99% at 1e-3)",
    _BN,
)
LIBRARY_DEFAULTS = MappingProxyType(
    {
        name: SchemeDefaults(
            "bn",
            1e-3 if name == "revnet" else 1e-2,
            memory,
            reasons=_REVNET if name == "revnet" else (f"measured for {name}", _BN),
        )
        for name, memory in {
            "ab2": "checkpoint",
            "euler": "checkpoint",
            "hamiltonian": "reversible",
            "heun": "checkpoint",
            "leapfrog": "reversible",
            "lm_resnet": "reversible",
            "midpoint": "reversible",
            "momentum": "reversible",
            "reversible_heun": "reversible",
            "revnet": "reversible",
            "rk4": "checkpoint",
            "verlet": "reversible",
            # implicit: each layer solves its step and keeps one evaluation (no mode saves more)
            "backward_euler": "autograd",
            "gauss_legendre2": "autograd",
            "implicit_midpoint": "autograd",
            "trapezoidal": "autograd",
        }.items()
    }
)


def _structure(scheme: Scheme) -> tuple:
    """What defaults depend on: ODE order in time, number of functions, inverse, number of states."""
    from odenet.analysis import analyze

    a = analyze(scheme)
    return (
        a.stability.ode_order,
        len(scheme.functions),
        a.reversibility.kind == "explicit",
        len(scheme.states),
    )


@functools.cache
def _library_structures() -> dict[str, tuple]:
    from odenet.library import load

    return {name: _structure(load(name)) for name in LIBRARY_DEFAULTS}


def _reach(scheme: Scheme, axis: str) -> float | None:
    """How far the stability interval reaches from 0 along the real axis (``axis="real"``, the longer
    side: a scheme written with ``-h*f`` is the mirror of one with ``+h*f``, and the network learns the
    sign of ``f``) or the imaginary axis, in the region's variable (h*lambda or h**2*lambda); None when
    unbounded, 0 when the scheme is stable there only at 0."""
    from odenet.analysis import analyze
    from odenet.analysis.stability import LAMBDA

    s = analyze(scheme).stability
    interval = s.real_interval if axis == "real" else s.imag_interval
    if interval is None:
        return 0.0
    ends = [None if end is None else abs(float(end)) for end in interval]
    if axis == "real" and (ends[0] is None or ends[1] is None):
        return None
    if axis != "real" and ends[0] is None and ends[1] is None:
        return None
    scale = 1.0  # the intervals are in the region's variable
    if s.variable == LAMBDA and scheme.step_param is not None:
        # a region in lambda itself (damped: c*h keeps h from factoring out): h*lambda at the default
        # step, h**2*lambda for a second-order ODE, so that it compares with a scaled region
        scale = abs(float(scheme.step_param.default)) ** (2 if s.ode_order == 2 else 1)
    return max(e for e in ends if e is not None) * scale


def scheme_defaults(scheme: Scheme) -> SchemeDefaults:
    """The defaults for ``scheme``: measured for a library scheme (by name and text), derived from the
    analysis for any other."""
    from odenet.library import library_names, load

    if scheme.name in LIBRARY_DEFAULTS and scheme.name in library_names() and load(scheme.name) == scheme:
        return LIBRARY_DEFAULTS[scheme.name]
    key = _structure(scheme)
    structures = _library_structures()

    def distance(name: str) -> tuple:
        other = structures[name]
        return tuple(int(a != b) for a, b in zip(key, other, strict=True)), name

    like = min(structures, key=distance)
    base = LIBRARY_DEFAULTS[like]
    order, functions, explicit, states = key
    reasons = [
        f"resembles {like}: {'second' if order == 2 else 'first'}-order in time, {functions} function(s), "
        f"{'an explicit inverse' if explicit else 'no explicit inverse'}, {states} state(s)",
        base.reasons[-1],
    ]
    memory: Memory = "reversible" if explicit else "checkpoint"
    why = "the inverse is explicit" if explicit else "no explicit inverse, so activations are recomputed"
    if not scheme.is_explicit:
        memory, why = "autograd", "an implicit step: each layer solves it and keeps one evaluation"
    reasons.append(f"memory-saving mode {memory}: {why}")
    step = None
    param = scheme.step_param
    if param is not None:
        # compare along an axis where both schemes are stable beyond 0, the resembled scheme's own
        # first (the real axis for dissipative schemes, the imaginary one for symplectic ones); Euler's
        # [-2, 0] when the resembled scheme has no step (its region is in lambda, not comparable)
        reference_scheme = load(like) if load(like).step_param is not None else load("euler")
        axes = sorted(("real", "imag"), key=lambda a: _reach(reference_scheme, a) == 0)
        variable = f"{scheme.step}**2*lambda" if order == 2 else f"{scheme.step}*lambda"
        usable = [a for a in axes if _reach(scheme, a) != 0 and _reach(reference_scheme, a) != 0]
        if not usable:
            reasons.append(
                f"step {scheme.step} = {float(param.default):g}, its own: it is stable on neither axis "
                f"where {reference_scheme.name} is (beyond {variable} = 0), so there is no "
                "interval to scale by"
            )
        else:
            axis = usable[0]
            ours, theirs = _reach(scheme, axis), _reach(reference_scheme, axis)
            where = "real axis" if axis == "real" else "imaginary axis"
            if ours is not None and theirs is not None and ours < theirs:
                exponent = 0.5 if order == 2 else 1.0  # the region's variable is h**2*lambda for order 2
                step = round(float(param.default) * (ours / theirs) ** exponent, 6)
                reasons.append(
                    f"step {scheme.step} = {step:g}: its stability interval reaches {variable} = "
                    f"{ours:.3g} on the {where}, {reference_scheme.name}'s {theirs:.3g}; scaled so the "
                    f"layers' {variable} stay as far inside"
                )
            else:
                reach = "without end" if ours is None else f"{ours:.3g}"
                other = "without end" if theirs is None else f"{theirs:.3g}"
                reasons.append(
                    f"step {scheme.step} = {float(param.default):g}, its own: its stability interval "
                    f"reaches {variable} = {reach} on the {where}, {reference_scheme.name}'s {other}"
                )
    return SchemeDefaults(base.family, base.lr, memory, step, like, tuple(reasons))
