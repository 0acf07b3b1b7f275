"""The schemes the tests enrol, derived from the library and the analysis (never listed by hand):
a scheme added to ``schemes/`` is tested in every mode that applies to it."""

from __future__ import annotations

import functools

import odenet

LIBRARY: dict[str, odenet.Scheme] = {name: odenet.load(name) for name in odenet.library_names()}
ALL_SCHEMES: list[str] = sorted(LIBRARY)
EXPLICIT: list[str] = [name for name in ALL_SCHEMES if LIBRARY[name].is_explicit]  # every memory mode
IMPLICIT: list[str] = [name for name in ALL_SCHEMES if not LIBRARY[name].is_explicit]  # solved per layer


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
