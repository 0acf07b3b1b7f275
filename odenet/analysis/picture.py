"""The stability region of an analysis, drawn on matplotlib axes.

The axes' limits and aspect come from the region itself: its extent along the real axis (the
intervals' ends, and the region's bounding box found on a grid) and, separately, its height above
the real axis (probed on a geometric grid, so that a region hundreds of units long and a few units
high, as heavy-ball momentum's at gamma = 0.99, is neither cut nor flattened into a line). Equal
aspect where the two extents are comparable, else each axis its own scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from odenet.analysis.stability import LAMBDA
from odenet.errors import ConfigError
from odenet.figures import REGION_FIGURE, STABLE_TOLERANCE, axes_or_new, shade_region

if TYPE_CHECKING:
    from odenet.analysis.analyze import Analysis

__all__ = ["REGION_STYLE", "draw_split", "draw_stability", "region_limits"]

# What ``plot_stability(..., **style)`` accepts, and the defaults.
REGION_STYLE = {
    "color": "#9ecae1",  # the region's fill
    "boundary": "#08519c",  # the level line where the spectral radius is 1
    "intervals": "#d94801",  # the stable intervals on the two axes
    "title": None,  # the axes' title; None: "NAME: stability region"
    "resolution": 401,  # grid points along each axis
}

MIN_REACH = 3.0  # the smallest half-width shown (a region of a point, or none, still has axes)
EQUAL_ASPECT = 3.0  # equal aspect while width and height differ by less than this factor


def _stable(analysis: Analysis, z: np.ndarray) -> np.ndarray:
    s = analysis.stability
    return s.radius(z / s.scale) <= 1 + STABLE_TOLERANCE


def region_limits(analysis: Analysis) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((x_low, x_high), (y_low, y_high))``: the region and the origin with a margin, at least
    ``MIN_REACH`` on each side of the origin. An unbounded region is shown to a little beyond its
    finite ends (or to ``MIN_REACH``)."""
    s = analysis.stability
    ends = [abs(e) for interval in (s.real_interval, s.imag_interval) if interval for e in interval if e]
    reach = max(MIN_REACH, 1.3 * max(ends, default=0.0))
    # the real extent: on the real axis and over a square grid of the reach
    xs = np.linspace(-reach, reach, 801)
    heights = np.geomspace(reach * 1e-4, reach, 200)
    ys = np.concatenate([-heights[::-1], [0.0], heights])
    stable = _stable(analysis, xs[None, :] + 1j * ys[:, None])
    rows, cols = np.nonzero(stable)
    if cols.size:
        low, high = min(float(xs[cols].min()), 0.0), max(float(xs[cols].max()), 0.0)
        height = float(np.abs(ys[rows]).max())
    else:
        low = high = height = 0.0
    width = max(high - low, 2 * MIN_REACH)
    margin = 0.12 * width
    x_low, x_high = min(low - margin, -MIN_REACH), max(high + margin, MIN_REACH)
    y_half = max(1.15 * height, MIN_REACH)
    return (x_low, x_high), (-y_half, y_half)


def draw_stability(analysis: Analysis, ax: Any = None, **style: Any) -> Any:
    """Draw ``analysis``'s stability region in the complex plane of its variable (``h*λ``,
    ``h**2*λ`` or ``λ``) on ``ax`` (a new figure's axes when None) and return the axes. ``style``:
    the keys of :data:`REGION_STYLE`."""
    unknown = sorted(set(style) - set(REGION_STYLE))
    if unknown:
        raise ConfigError(
            f"plot_stability has no style {unknown[0]!r}; it takes {', '.join(sorted(REGION_STYLE))}"
        )
    options = {**REGION_STYLE, **style}
    s = analysis.stability
    (x_low, x_high), (y_low, y_high) = region_limits(analysis)
    ax = axes_or_new(ax, **REGION_FIGURE)
    resolution = int(options["resolution"])
    xs = np.linspace(x_low, x_high, resolution)
    ys = np.linspace(y_low, y_high, resolution)
    shade_region(ax, lambda z: s.radius(z / s.scale), xs, ys, options["color"], boundary=options["boundary"])
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    for interval, horizontal in ((s.real_interval, True), (s.imag_interval, False)):
        if interval is None:
            continue
        low, high = interval
        if horizontal:
            low, high = (x_low if low is None else low), (x_high if high is None else high)
            ax.plot([low, high], [0, 0], color=options["intervals"], lw=3, solid_capstyle="butt")
        else:
            low, high = (y_low if low is None else low), (y_high if high is None else high)
            ax.plot([0, 0], [low, high], color=options["intervals"], lw=3, solid_capstyle="butt")
    var = sympy.latex(s.variable)
    ax.set_xlabel(f"Re(${var}$)")
    ax.set_ylabel(f"Im(${var}$)")
    title = options["title"]
    ax.set_title(f"{analysis.scheme.name}: stability region" if title is None else title)
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(y_low, y_high)
    ratio = (x_high - x_low) / (y_high - y_low)
    ax.set_aspect("equal" if 1 / EQUAL_ASPECT < ratio < EQUAL_ASPECT else "auto")
    return ax


def draw_split(analysis: Analysis, ax: Any = None, resolution: int = 301) -> Any:
    """Draw where a scheme of several functions is stable with a real λ for each of the first two
    (the others 0): the plane of ``(h*λ_f, h*λ_g)`` (in the variable's unit), on ``ax``."""
    split = analysis.split
    if split is None:
        raise ConfigError(f"scheme {analysis.scheme.name} has one function: its region is in one λ")
    first, second = list(split.variables)[:2]
    s = analysis.stability
    ends = [  # each alone's ends, in lambda, then in the variable's unit
        abs(e) / alone.scale * s.scale
        for alone in split.alone.values()
        for interval in (alone.real_interval, alone.imag_interval)
        if interval
        for e in interval
        if e
    ]
    reach = max(2 * MIN_REACH, 1.5 * max(ends, default=0.0))
    xs = np.linspace(-reach, reach, resolution)
    others = {name: 0.0 for name in split.variables if name not in (first, second)}

    def radius(z: np.ndarray) -> np.ndarray:
        return split.radius({first: z.real / s.scale, second: z.imag / s.scale, **others}, analysis.params)

    ax = axes_or_new(ax, **REGION_FIGURE)
    shade_region(ax, radius, xs, xs, REGION_STYLE["color"])  # no level line: |eigenvalues| = 1 inside
    ax.axhline(0, color="0.6", lw=0.6)
    ax.axvline(0, color="0.6", lw=0.6)
    for name, label in ((first, ax.set_xlabel), (second, ax.set_ylabel)):
        label(f"${sympy.latex(s.variable.subs(LAMBDA, sympy.Symbol(f'lambda_{name}')))}$ (real)")
    ax.set_title(f"{analysis.scheme.name}: stable with a real λ for {first} and for {second}")
    ax.set_aspect("equal")
    return ax
