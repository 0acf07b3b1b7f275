"""Training defaults per scheme and data set: what ``odenet train SCHEME`` uses for what the command
line does not say.

A library scheme has tuned defaults: the learning rate, the value of its step parameter and the
residual-function family that the tuning sweep (``experiments/o_tuning.py``, docs/experiments.md (o))
chose for it on each data set it swept, by successive halving on a validation split. A data set the
sweep did not cover takes the setting of the swept set of its kind: digits' for images (the ``conv``
layout), MNIST-1D's for everything else. A library scheme the sweep has not reached keeps the
defaults measured before it (``benchmarks/train_defaults.py``: lr 1e-2, the
scheme's own step, bn; lr 1e-3 for revnet).

A scheme a user writes has none: its defaults are those of the library scheme it most resembles,
judged on its analysis (first- or second-order in time, how many functions, whether it has an
explicit inverse, how many states), among the schemes the sweep tuned on the data set whose step is
of the same kind (explicit, or implicit: solved per layer), else among every tuned one, with that
scheme's step scaled down when its own stability
interval is shorter, so that the layers' ``h*lambda`` stay as far inside it as the tuned ones did.
``odenet train --explain-defaults`` prints the choice and why.

Plain values only: no torch here (the command line reads these while building its parser).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from odenet.ir import Param, Scheme
from odenet.ir.printing import format_number
from odenet.options import Family, Memory

if TYPE_CHECKING:
    from odenet.analysis.analyze import Stability

__all__ = [
    "MEMORY_SAVING",
    "SWEPT",
    "TUNED",
    "SchemeDefaults",
    "Tuned",
    "library_defaults",
    "scheme_defaults",
    "swept",
]


@dataclass(frozen=True, repr=False)
class SchemeDefaults:
    """What ``odenet train`` takes for a scheme when not told. ``repr``: the options and where they
    come from (the reasons are in :attr:`reasons`; ``--explain-defaults`` prints them)."""

    family: Family  # the residual functions
    lr: float
    memory_saving: Memory  # the mode that saves memory: reversible when the inverse is explicit
    step: float | None = None  # the step parameter's value; None: the scheme's own default
    like: str | None = None  # the library scheme these were taken from, for a user's scheme
    reasons: tuple[str, ...] = ()
    tuned_on: str | None = None  # the data set the sweep tuned them on; None: measured before it

    def __repr__(self) -> str:
        step = "" if self.step is None else f" --step {self.step:g}"
        where = "measured" if self.tuned_on is None else f"tuned on {self.tuned_on}"
        if self.like is not None:
            where = f"from {self.like}, {where}"
        return (
            f"SchemeDefaults({where}: --family {self.family} --lr {self.lr:g}{step}; "
            f"memory-saving {self.memory_saving})"
        )

    def origin(self, data: str | None) -> str:
        """Where these come from, for ``data``: ``measured`` (before the sweep), ``tuned``, or
        ``tuned on mnist1d`` when the sweep tuned them on another data set."""
        if self.tuned_on is None:
            return "measured"
        return "tuned" if self.tuned_on == data else f"tuned on {self.tuned_on}"

    def step_value(self, scheme: Scheme) -> float | None:
        """The step ``scheme`` trains with: the chosen one, else its own default; None without one."""
        if self.step is not None:
            return self.step
        param = scheme.step_param
        return None if param is None or param.default is None else float(param.default)


@dataclass(frozen=True)
class Tuned:
    """The setting the sweep chose for one scheme on one data set."""

    family: Family
    lr: float
    step: float | None  # None: the scheme has no step parameter
    validation: float  # its validation accuracy in %, after the rung it reached (``epochs``)
    settings: int  # how many settings the sweep compared
    seeds: int = 1  # how many seeds that rung's validation accuracy is the mean of
    # the settings that ranked higher but failed a final run (an implicit solve that did not converge)
    passed_over: tuple[str, ...] = ()
    epochs: int = 5  # of the rung the validation accuracy is from (an earlier one's, after a pass-over)


# Each layer of an implicit scheme solves its step and keeps one evaluation: no mode saves more.
MEMORY_SAVING: Mapping[str, Memory] = MappingProxyType(
    {
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
        "backward_euler": "autograd",
        "gauss_legendre2": "autograd",
        "implicit_midpoint": "autograd",
        "trapezoidal": "autograd",
    }
)

SWEEP_DATE = "2026-12-06"
SWEPT = ("mnist1d", "digits")  # the data sets whose tuned settings TUNED holds
# Written from docs/experiments/o_tuning.json (experiments/o_tuning.py): data set -> scheme -> setting.
TUNED: Mapping[str, Mapping[str, Tuned]] = MappingProxyType(
    {
        "mnist1d": MappingProxyType(
            {
                "ab2": Tuned("bn", 0.001, 0.3, 98.1, 24),
                # h 1 ranked higher, and seed 2's first solve did not converge there (o_tuning.md)
                "backward_euler": Tuned(
                    "bn",
                    0.001,
                    0.3,
                    91.8,
                    9,
                    epochs=2,
                    passed_over=("lr 0.001, h 1, bn", "lr 0.0003, h 1, bn"),
                ),
                "euler": Tuned("bn", 0.001, 1.0, 98.0, 24),
                "gauss_legendre2": Tuned("bn", 0.001, 1.0, 98.2, 9),
                "hamiltonian": Tuned("bn", 0.001, 1.0, 98.9, 24),
                "heun": Tuned("bn", 0.001, 1.0, 97.9, 24),
                "implicit_midpoint": Tuned("bn", 0.001, 1.0, 98.2, 9),
                "leapfrog": Tuned("bn", 0.001, 0.3, 98.0, 24),
                "lm_resnet": Tuned("bn", 0.001, 1.0, 98.0, 24),
                "midpoint": Tuned("bn", 0.001, 1.0, 98.4, 24),
                "momentum": Tuned("bn", 0.001, None, 97.9, 8),
                "reversible_heun": Tuned("bn", 0.001, 1.0, 98.1, 24),
                "revnet": Tuned("bn", 0.001, None, 98.9, 8),
                "rk4": Tuned("bn", 0.001, 1.0, 97.9, 24),
                "trapezoidal": Tuned("bn", 0.001, 1.0, 98.0, 9),
                "verlet": Tuned("bn", 0.001, 0.3, 97.5, 24),
            }
        ),
        "digits": MappingProxyType(
            {
                "ab2": Tuned("bn", 0.001, 0.3, 99.3, 24, seeds=3),
                "backward_euler": Tuned("bn", 0.0003, 1.0, 99.0, 9, seeds=3),
                "euler": Tuned("bn", 0.001, 0.3, 99.3, 24, seeds=3),
                "gauss_legendre2": Tuned("bn", 0.001, 1.0, 99.1, 9, seeds=3),
                "hamiltonian": Tuned("bn", 0.001, 1.0, 99.4, 24, seeds=3),
                "heun": Tuned("bn", 0.001, 0.3, 99.4, 24, seeds=3),
                "implicit_midpoint": Tuned("bn", 0.001, 1.0, 99.1, 9, seeds=3),
                "leapfrog": Tuned("bn", 0.001, 0.3, 98.7, 24, seeds=3),
                "lm_resnet": Tuned("bn", 0.001, 0.3, 99.7, 24, seeds=3),
                "midpoint": Tuned("bn", 0.001, 0.3, 99.5, 24, seeds=3),
                "momentum": Tuned("bn", 0.001, None, 99.1, 8, seeds=3),
                "reversible_heun": Tuned("bn", 0.001, 0.3, 99.4, 24, seeds=3),
                "revnet": Tuned("bn", 0.001, None, 99.7, 8, seeds=3),
                "rk4": Tuned("bn", 0.001, 0.3, 99.2, 24, seeds=3),
                "trapezoidal": Tuned("bn", 0.001, 0.3, 99.4, 9, seeds=3),
                "verlet": Tuned("bn", 0.001, 0.3, 98.5, 24, seeds=3),
            }
        ),
    }
)

_BN = "bn: conv-BN-ReLU-conv residual functions, which keep every scheme's h*lambda small"
_MEMORY_WHY = {
    "reversible": "the inverse is explicit",
    "checkpoint": "no explicit inverse, so activations are recomputed",
    "autograd": "an implicit step: each layer solves it and keeps one evaluation",
}


def _listed(names: tuple[str, ...]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def swept(data: str | None, layout: str | None = None) -> str:
    """The swept data set whose settings ``data`` (shaped for ``layout``) trains with: itself when
    swept, digits for other images, MNIST-1D otherwise."""
    if data in SWEPT:
        return data
    return "digits" if layout == "conv" else "mnist1d"


def _not_swept(data: str | None, on: str) -> tuple[str, ...]:
    """Why ``data`` takes the settings tuned on ``on`` (nothing when it is ``on``)."""
    if data == on:
        return ()
    return (f"{data or 'your data'} was not swept: the settings tuned on {on}",)


@functools.cache
def library_defaults(name: str, data: str) -> SchemeDefaults:
    """The defaults of library scheme ``name`` on the swept data set ``data``: the sweep's setting, or
    the ones measured before it where the sweep has not reached the scheme."""
    memory = MEMORY_SAVING[name]
    saving = f"memory-saving mode {memory}: {_MEMORY_WHY[memory]}"
    tuned = TUNED.get(data, {}).get(name)
    if tuned is not None:
        step = "no step" if tuned.step is None else f"step {tuned.step:g}"
        why = (
            f"tuned for {name} on {data} by the sweep of {SWEEP_DATE} (experiments/o_tuning.py, "
            f"docs/experiments.md (o)): lr {tuned.lr:g}, {step}, family {tuned.family}, "
            + (
                f"chosen from {tuned.settings} settings by successive halving: {_listed(tuned.passed_over)} "
                "ranked higher, but a final (test-set) run of each did not train (an implicit layer's "
                "solve did not converge); "
                if tuned.passed_over
                else f"the best of {tuned.settings} settings by successive halving, "
            )
            + f"{tuned.validation:.1f}% on a validation split of the training set after "
            f"{tuned.epochs} epochs" + (f" (the mean of {tuned.seeds} seeds)" if tuned.seeds > 1 else "")
        )
        return SchemeDefaults(
            tuned.family, tuned.lr, memory, tuned.step, reasons=(why, saving), tuned_on=data
        )
    if name == "revnet":
        measured = (
            "measured for revnet before the sweep reached it",
            "lr 1e-3: without a step each coupling adds f's whole output (36% on digits at 1e-2, "
            "99% at 1e-3)",
        )
        return SchemeDefaults("bn", 1e-3, memory, reasons=(*measured, _BN, saving))
    measured = (f"measured for {name} before the sweep reached it: lr 1e-2",)
    return SchemeDefaults("bn", 1e-2, memory, reasons=(*measured, _BN, saving))


def _structure(scheme: Scheme) -> tuple:
    """What defaults depend on: ODE order in time, number of functions, inverse, number of states,
    and whether the step is explicit (an implicit layer solves it, and a step too long for its
    solver to converge fails a run where an explicit scheme's would not)."""
    from odenet.analysis import analyze

    a = analyze(scheme)
    return (
        a.stability.ode_order,
        len(scheme.functions),
        a.reversibility.kind == "explicit",
        len(scheme.states),
        scheme.is_explicit,
    )


@functools.cache
def _library_structures() -> dict[str, tuple]:
    from odenet.library import load

    return {name: _structure(load(name)) for name in MEMORY_SAVING}


def _reaches(s: Stability, step: float | None = None) -> dict[str, float | None]:
    """How far the stability interval of ``s`` reaches from 0 along the real axis (``"real"``, the
    longer side: a scheme written with ``-h*f`` is the mirror of one with ``+h*f``, and the network
    learns the sign of ``f``) and the imaginary axis (``"imag"``), in the region's variable (h*lambda
    or h**2*lambda); None when unbounded, 0 when the scheme is stable there only at 0. A region in
    lambda itself (damped: c*h keeps h from factoring out) is put in h*lambda (h**2*lambda for a
    second-order ODE) at ``step`` when given, so that it compares with a scaled region."""
    from odenet.analysis.stability import LAMBDA

    scale = 1.0
    if step is not None and s.variable == LAMBDA:
        scale = abs(step) ** (2 if s.ode_order == 2 else 1)
    reaches: dict[str, float | None] = {}
    for axis, interval in (("real", s.real_interval), ("imag", s.imag_interval)):
        if interval is None:
            reaches[axis] = 0.0
            continue
        ends = [None if end is None else abs(float(end)) for end in interval]
        if (axis == "real" and None in ends) or (axis == "imag" and ends == [None, None]):
            reaches[axis] = None
        else:
            reaches[axis] = max(e for e in ends if e is not None) * scale
    return reaches


def scheme_defaults(scheme: Scheme, data: str | None = None, layout: str | None = None) -> SchemeDefaults:
    """The defaults for ``scheme`` on ``data`` (a bundled data set's name; None for a file of the
    user's, whose ``layout`` then says which swept set it takes after): tuned for a library scheme (by
    name and text), derived from the analysis for any other."""
    from odenet.library import library_names, load

    on = swept(data, layout)
    not_swept = _not_swept(data, on)
    if scheme.name in MEMORY_SAVING and scheme.name in library_names() and load(scheme.name) == scheme:
        found = library_defaults(scheme.name, on)
        if not not_swept:
            return found
        return dataclasses.replace(found, reasons=(*not_swept, *found.reasons))
    key = _structure(scheme)
    structures = _library_structures()

    def distance(name: str) -> tuple:  # which of the four differ, the first weighing most
        return tuple(int(a != b) for a, b in zip(key[:4], structures[name][:4], strict=True)), name

    # the schemes the sweep tuned on ``on`` with the same kind of step, else any it tuned
    order, _, explicit, _, explicit_step = key
    kind = "explicit" if explicit_step else "implicit"
    tuned = [n for n in structures if library_defaults(n, on).tuned_on is not None]
    same_kind = [n for n in tuned if structures[n][4] == explicit_step]
    candidates = same_kind or tuned or list(structures)
    like = min(candidates, key=distance)
    tied = [n for n in candidates if distance(n)[0] == distance(like)[0]]
    closest = ""
    if not explicit_step and len(tied) > 1:
        like, closest = _closest_iteration(scheme, tied)
    base = library_defaults(like, on)

    def describe(structure: tuple) -> tuple[str, ...]:
        order, functions, explicit, states, explicit_step = structure
        return (
            f"{'second' if order == 2 else 'first'}-order in time",
            f"{functions} function(s)",
            "an explicit inverse" if explicit else "no explicit inverse",
            f"{states} state(s)",
            "an explicit step" if explicit_step else "an implicit step",
        )

    ours, theirs = describe(key), describe(structures[like])
    differ = [t for o, t in zip(ours, theirs, strict=True) if o != t]
    reasons = [
        *not_swept,
        f"resembles {like}: {', '.join(ours)}" + (f" ({like} has {', '.join(differ)})" if differ else ""),
    ]
    if closest:
        reasons.append(closest)
    if tuned and not same_kind:
        reasons.append(
            f"its step is {kind}, and no {kind} library scheme is tuned on {on} yet (their defaults were "
            f"measured before the sweep): the settings of {like}, the closest that the sweep tuned"
        )
    reasons.append(base.reasons[0])
    memory: Memory = "reversible" if explicit else "checkpoint"
    if not scheme.is_explicit:
        memory = "autograd"
    reasons.append(f"memory-saving mode {memory}: {_MEMORY_WHY[memory]}")
    step, why = _step(scheme, like, on, order)
    if why:
        reasons.append(why)
    step, why = _inside_interval(scheme, step)
    if why:
        reasons.append(why)
    if not explicit_step and not structures[like][4]:  # both implicit
        step, why = _step_for_solve(scheme, like, on, step)
        if why:
            reasons.append(why)
    return SchemeDefaults(base.family, base.lr, memory, step, like, tuple(reasons), base.tuned_on)


def _closest_iteration(scheme: Scheme, tied: list[str]) -> tuple[str, str]:
    """Of implicit library schemes ``tied`` on every structural property, the one whose fixed-point
    iteration moves the most like ``scheme``'s at ``scheme``'s own step (by
    :func:`~odenet.analysis.stability.iteration_radius`; then by name), and a sentence saying so."""
    from odenet.analysis.stability import iteration_radius
    from odenet.library import load

    at = None if scheme.step_param is None else float(scheme.step_param.default)

    def moves(s: Scheme) -> float:
        return iteration_radius(s, {} if at is None or s.step_param is None else {s.step: at})

    ours = moves(scheme)
    theirs = {n: moves(load(n)) for n in tied}
    like = min(tied, key=lambda n: (abs(theirs[n] - ours), n))
    others = tuple(sorted(n for n in tied if n != like))
    alike = tuple(n for n in others if math.isclose(theirs[n], theirs[like], rel_tol=1e-9))
    where = "" if at is None else f" at step {at:g}"
    listed = ", ".join(f"{n}'s {theirs[n]:.3g}" for n in others)
    first = f" ({_listed(alike)} as close: {like} is the first by name)" if alike else ""
    return like, (
        f"so do {', '.join(others)}; of them {like}'s solve's iteration is the closest to its own{first}: "
        f"per unit of the guess{where} (each f(u) = lambda*u, lambda = 1 or -1) it moves {ours:.3g}, "
        f"{like}'s {theirs[like]:.3g}, {listed}"
    )


def _outside_interval(param: Param, step: float) -> str:
    """The interval a learnable step ``param`` is kept in, as written (``(0.4, 2)``), where ``step``
    lies outside it (compile would refuse it); "" where it lies inside or there is none."""
    if param.interval is None:
        return ""
    low, high = param.interval
    return "" if float(low) < step < float(high) else f"({format_number(low)}, {format_number(high)})"


def _inside_interval(scheme: Scheme, step: float | None) -> tuple[float | None, str]:
    """``step``, or None (the scheme's own) where it lies outside the interval a learnable step is
    kept in."""
    param = scheme.step_param
    if step is None or param is None or not (interval := _outside_interval(param, step)):
        return step, ""
    return None, (
        f"then step {scheme.step} = {float(param.default):g}, its own: {step:g} lies outside the "
        f"interval {interval} its learnable step is kept in"
    )


def _step_for_solve(scheme: Scheme, like: str, on: str, step: float | None) -> tuple[float | None, str]:
    """The step an implicit user scheme trains with, no longer than ``step`` (its own where None),
    at which its layers' fixed-point iteration moves no more per step than that of ``like`` (an
    implicit library scheme) at its tuned step (:func:`~odenet.analysis.stability.iteration_radius`):
    a stability interval says nothing of whether a layer's solve converges, and backward Euler's
    first solve at h 1 did not from one seed in three."""
    from odenet.analysis.inverse import round_down
    from odenet.analysis.stability import iteration_radius
    from odenet.library import load

    param, reference = scheme.step_param, load(like)
    theirs_step = library_defaults(like, on).step_value(reference)
    if param is None or theirs_step is None or reference.step_param is None:
        return step, ""
    h = float(param.default) if step is None else step
    limit = iteration_radius(reference, {reference.step: theirs_step})

    def radius(at: float) -> float:
        return iteration_radius(scheme, {scheme.step: at})

    def fits(moved: float) -> bool:
        return moved <= limit * (1 + 1e-9)

    at_h = radius(h)
    if fits(at_h):
        return step, ""
    kept = f"step {scheme.step} = {h:g} kept"
    at_0 = radius(0.0)
    if not fits(at_0):
        return step, (
            f"{kept}: at no step does its solve's iteration move as little per unit of its guess as "
            f"{like}'s {limit:.3g} at its tuned {theirs_step:g} (each f(u) = lambda*u, lambda = 1 or -1; "
            f"it moves {at_0:.3g} at step 0 and {at_h:.3g} at {h:g}); where its solves do not "
            "converge, --solver newton may"
        )
    low, high = 0.0, h
    for _ in range(24):  # the radius grows with the step
        middle = (low + high) / 2
        low, high = (middle, high) if fits(radius(middle)) else (low, middle)
    found = float(f"{low:.3g}")  # 3 significant digits: the nearest where it is inside the limit
    if not fits(radius(found)):
        found = round_down(low, 3)
    interval = _outside_interval(param, found)
    if interval:
        return step, (
            f"{kept}: its solve would move as little per step as {like}'s only at {found:g}, outside the "
            f"interval {interval} its learnable step is kept in"
        )
    return found, (
        f"then step {scheme.step} = {found:g}: at {h:g} its solve's iteration would move {at_h:.3g} "
        f"per unit of its guess (each f(u) = lambda*u, lambda = 1 or -1), {like}'s {limit:.3g} at its tuned "
        f"{theirs_step:g}; at {found:g} it moves no more, as the tuned layers' solves did"
    )


def _step(scheme: Scheme, like: str, on: str, order: int) -> tuple[float | None, str]:
    """The step a user's scheme resembling ``like`` trains with on ``on``, and why: the step of the
    library scheme it is compared with, scaled down by the ratio of their stability intervals when
    its own is shorter; None (its own) where nothing compares. The comparison is along an axis where
    both are stable beyond 0, the resembled scheme's own first (the real axis for dissipative
    schemes, the imaginary one for symplectic ones), against Euler's when the resembled scheme has
    no step (its region is in lambda, not comparable)."""
    from odenet.analysis import analyze
    from odenet.analysis.stability import LAMBDA
    from odenet.library import load

    param = scheme.step_param
    if param is None:
        return None, ""
    own = float(param.default)
    reference = like if load(like).step_param is not None else "euler"
    reference_scheme = load(reference)
    theirs_step = library_defaults(reference, on).step_value(reference_scheme)
    ours_s, theirs_s = analyze(scheme).stability, analyze(reference_scheme).stability
    ours_at = _reaches(ours_s, own)
    theirs_param = reference_scheme.step_param  # every reference has one (euler otherwise)
    theirs_at = _reaches(theirs_s, None if theirs_param is None else float(theirs_param.default))
    axes = sorted(("real", "imag"), key=lambda a: theirs_at[a] == 0)
    variable = f"{scheme.step}**2*lambda" if order == 2 else f"{scheme.step}*lambda"
    usable = [a for a in axes if ours_at[a] != 0 and theirs_at[a] != 0]
    if not usable:
        return None, (
            f"step {scheme.step} = {own:g}, its own: it is stable on neither axis where {reference} is "
            f"(beyond {variable} = 0), so there is no interval to scale by"
        )
    if theirs_step is None:
        return None, f"step {scheme.step} = {own:g}, its own: {reference} has no tuned step to compare with"
    axis = usable[0]
    ours, theirs = ours_at[axis], theirs_at[axis]
    where = "real axis" if axis == "real" else "imaginary axis"
    if ours_s.variable == LAMBDA:
        # the reference's interval in lambda at its step: its region's variable is h*lambda, or
        # h**2*lambda for a second-order ODE
        power = 2 if theirs_s.ode_order == 2 else 1
        target = None if theirs is None else theirs / theirs_step**power
        return _step_in_lambda(scheme, own, axis, reference, theirs_step, target)
    if ours is not None and theirs is not None and ours < theirs:
        exponent = 0.5 if order == 2 else 1.0  # the region's variable is h**2*lambda for order 2
        step = round(theirs_step * (ours / theirs) ** exponent, 6)
        return step, (
            f"step {scheme.step} = {step:g}: {reference}'s {theirs_step:g}, scaled by its stability "
            f"interval, which reaches {variable} = {ours:.3g} on the {where}, {reference}'s "
            f"{theirs:.3g}; so the layers' {variable} stay as far inside"
        )

    def reach(end: float | None) -> str:
        return "has no end" if end is None else f"reaches {variable} = {end:.3g}"

    if ours is None and theirs is None:
        compared = f"has no end, nor has {reference}'s"
    else:
        compared = f"{reach(ours)}, {reference}'s {reach(theirs)}"
    return theirs_step, (
        f"step {scheme.step} = {theirs_step:g}, {reference}'s: its stability interval on the {where} "
        f"{compared}"
    )


def _step_in_lambda(
    scheme: Scheme, own: float, axis: str, reference: str, theirs_step: float, target: float | None
) -> tuple[float | None, str]:
    """The step of a scheme whose stability region depends on the step itself (the tutorial's damped:
    ``c*h`` keeps ``h`` from factoring out), so that its region is in lambda: the largest step up to
    the reference's tuned ``theirs_step`` at which its interval on ``axis`` reaches lambda =
    ``target`` (the reference's at its step; None: without end), by bisection on the analysis at
    each step tried. Where the interval shrinks as the step grows, as for the scaled schemes, this is
    their rule: the layers' lambda stay as far inside as the reference's did."""
    from odenet.analysis import analyze

    where = "real axis" if axis == "real" else "imaginary axis"
    wanted = "without end" if target is None else f"{target:.3g}"

    def reach(step: float) -> float | None:
        """The interval's reach in lambda at ``step`` (None: without end)."""
        return _reaches(analyze(scheme, {scheme.step: step}).stability)[axis]

    def covers(found: float | None) -> bool:
        return found is None or (target is not None and found >= target * (1 - 1e-9))

    found = reach(theirs_step)
    if covers(found):
        reached = "without end" if found is None else f"{found:.3g}"
        return theirs_step, (
            f"step {scheme.step} = {theirs_step:g}, {reference}'s: its stability region depends on the step "
            f"itself; at that step its interval reaches lambda = {reached} on the {where}, {reference}'s "
            f"{wanted} at its step"
        )
    low, high = 0.0, theirs_step
    for _ in range(10):  # to theirs_step / 1024
        middle = (low + high) / 2
        low, high = (middle, high) if covers(reach(middle)) else (low, middle)
    if low == 0.0:
        return None, (
            f"step {scheme.step} = {own:g}, its own: its stability region depends on the step itself, and "
            f"at no step up to {reference}'s {theirs_step:g} does its interval reach lambda = {wanted} "
            f"on the {where}"
        )
    digits = 3 - math.floor(math.log10(low))
    step = math.floor(low * 10**digits) / 10**digits  # 4 digits, rounded down: it still covers
    return step, (
        f"step {scheme.step} = {step:g}: its stability region depends on the step itself; the largest "
        f"step up to {reference}'s {theirs_step:g} at which its interval reaches lambda = {wanted} on the "
        f"{where}, as far as {reference}'s at its step, so the layers' lambda stay as far inside"
    )
