"""The schemes the tests enrol, derived from the library and the analysis (never listed by hand):
a scheme added to ``schemes/`` is tested in every mode that applies to it."""

from __future__ import annotations

import functools
from pathlib import Path

import odenet

LIBRARY: dict[str, odenet.Scheme] = {name: odenet.load(name) for name in odenet.library_names()}
ALL_SCHEMES: list[str] = sorted(LIBRARY)
EXPLICIT: list[str] = [name for name in ALL_SCHEMES if LIBRARY[name].is_explicit]  # every memory mode
IMPLICIT: list[str] = [name for name in ALL_SCHEMES if not LIBRARY[name].is_explicit]  # solved per layer

# The shapes users write beyond the library: look-ahead calls (nag), stages with two functions
# (kdk), friction and trigonometric coefficients (damped_kdk, rotation), exp and sqrt of
# parameters (exp_euler), history with a stage (nesterov), and tableaux written out (rk4_38).
_ROOT = Path(__file__).resolve().parent.parent
USER_FILES: list[Path] = sorted(
    [
        *(_ROOT / "tests" / "data").glob("*.scheme"),
        *(_ROOT / "tests" / "data" / "user").glob("*.scheme"),
        *(_ROOT / "benchmarks" / "user_schemes").glob("*.scheme"),
    ]
)
USER: dict[str, odenet.Scheme] = {s.name: s for s in map(odenet.load, USER_FILES)}
assert not set(USER) & set(LIBRARY) and len(USER) == len(USER_FILES)


@functools.cache
def analysis(name: str) -> odenet.Analysis:
    return odenet.analyze(LIBRARY[name])


def _reversible() -> list[str]:
    return [name for name in EXPLICIT if analysis(name).reversibility.kind == "explicit"]


# explicit steps with an explicit inverse: the schemes of memory="reversible"
REVERSIBLE: list[str] = _reversible()
# explicit steps whose inverse is a fixed point (Euler, Heun): memory="reversible" solves for it
FIXED_POINT_INVERSE: list[str] = [
    name for name in EXPLICIT if analysis(name).reversibility.kind == "fixed-point"
]


def accepted_modes(scheme: odenet.Scheme) -> list[str]:
    """The memory modes ``compile`` accepts for ``scheme`` (enrolment by what compile says)."""
    from torch import nn

    accepted = []
    for memory in odenet.MEMORY_MODES:
        try:
            odenet.compile(scheme, {f.name: nn.Identity() for f in scheme.functions}, 1, memory)
        except odenet.UnsupportedSchemeError:
            continue
        accepted.append(memory)
    return accepted
