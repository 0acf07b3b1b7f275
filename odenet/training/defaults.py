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


_BN = "bn: conv-BatchNorm-ReLU-conv residual functions, which keep every scheme's h*lambda small"
# Measured with `python benchmarks/train_defaults.py` (5 epochs on digits, test accuracy in
# docs/training.md): every library scheme reaches 95% with these.
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
    """How far the stability interval reaches along the negative real axis (``axis="real"``) or the
    imaginary axis, in the region's variable (h*lambda or h**2*lambda); None when unbounded."""
    from odenet.analysis import analyze

    s = analyze(scheme).stability
    interval = s.real_interval if axis == "real" else s.imag_interval
    if interval is None:
        return 0.0
    end = (
        -interval[0]
        if axis == "real" and interval[0] is not None
        else (interval[1] if axis != "real" else None)
    )
    return None if end is None else abs(float(end) * s.scale)


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
    reasons.append(
        f"memory-saving mode {memory}: "
        + ("the inverse is explicit" if explicit else "no explicit inverse, so activations are recomputed")
    )
    step = None
    param = scheme.step_param
    if param is not None:
        # compare along the axis where the resembled scheme is stable (the negative real axis for
        # dissipative schemes, the imaginary one for symplectic ones); Euler's [-2, 0] when the
        # resembled scheme has no step (its region is in lambda, not comparable)
        reference_scheme = load(like) if load(like).step_param is not None else load("euler")
        axis = "real" if _reach(reference_scheme, "real") != 0 else "imag"
        ours, theirs = _reach(scheme, axis), _reach(reference_scheme, axis)
        where = "negative real axis" if axis == "real" else "imaginary axis"
        if ours == 0:
            reasons.append(
                f"step {scheme.step} = {float(param.default):g}, its own: its stability interval on the "
                f"{where} is only 0, so no step keeps {scheme.step}*lambda inside it there"
            )
        elif ours is not None and theirs is not None and ours < theirs:
            exponent = 0.5 if order == 2 else 1.0  # the region's variable is h**2*lambda for order 2
            step = round(float(param.default) * (ours / theirs) ** exponent, 6)
            reasons.append(
                f"step {scheme.step} = {step:g}: its stability interval reaches {ours:.3g} on the {where}, "
                f"{reference_scheme.name}'s {theirs:.3g}; scaled so the layers' {scheme.step}*lambda stay "
                "as far inside"
            )
    return SchemeDefaults(base.family, base.lr, memory, step, like, tuple(reasons))
