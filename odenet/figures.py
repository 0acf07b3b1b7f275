"""Figures: made with matplotlib's object API (no pyplot, so a user's backend and open figures are
left alone), saved atomically as PNG or inline as base64 (a notebook's HTML), and one way to shade a
stability region. Matplotlib is imported when a figure is made, never at ``import odenet``."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from odenet.extras import require
from odenet.files import atomic_path

__all__ = [
    "REGION_FIGURE",
    "SPECTRA_FIGURE",
    "STABLE_TOLERANCE",
    "axes_or_new",
    "inline_picture",
    "new_figure",
    "png_base64",
    "save_figure",
    "shade_region",
]

# A point is drawn inside a region when its spectral radius is at most 1 + this.
STABLE_TOLERANCE = 1e-9
# The figures' sizes: a stability region's, and a trained network's spectra over it.
REGION_FIGURE: dict[str, Any] = {"figsize": (5.6, 4.6), "dpi": 110}
SPECTRA_FIGURE: dict[str, Any] = {"figsize": (6.0, 5.0), "dpi": 110}


def new_figure(nrows: int = 1, ncols: int = 1, **figure: Any) -> tuple[Any, Any]:
    """A figure and its axes, like ``pyplot.subplots`` but owned by the caller (nothing global)."""
    figure_module = require("matplotlib.figure", "drawing a figure")
    fig = figure_module.Figure(**figure)
    return fig, fig.subplots(nrows, ncols)


def axes_or_new(ax: Any, **figure: Any) -> Any:
    """``ax`` itself, or the axes of a new figure of its own (``figure``: the Figure's arguments)."""
    return new_figure(**figure)[1] if ax is None else ax


def inline_picture(draw: Callable[[], Any], what: str, name: str, width: int) -> str:
    """``<img>`` of the axes ``draw()`` returns (the ``what`` of ``name``), inline as base64 PNG for a
    notebook's HTML; where matplotlib is missing, a paragraph that says so instead."""
    from odenet.errors import MissingDependencyError

    try:
        picture = png_base64(draw().figure)
    except MissingDependencyError as exc:
        return f"<p>(no picture of the {what}: {html.escape(str(exc))})</p>"
    alt = html.escape(f"{what} of {name}")
    return f'<img src="data:image/png;base64,{picture}" alt="{alt}" width="{width}"/>'


def png_base64(fig: Any) -> str:
    """``fig`` laid out and written as PNG, base64-encoded (for ``<img src="data:image/png;base64,...">``)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Lay out ``fig`` and write it to ``path`` as PNG, atomically."""
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, format="png")
    return Path(path)


def shade_region(
    ax: Any,
    radius: Callable[[np.ndarray], np.ndarray],
    xs: np.ndarray,
    ys: np.ndarray,
    color: str,
    boundary: str | None = None,
    real_axis: str | None = None,
) -> None:
    """Shade ``{z : radius(z) <= 1}`` on the grid ``xs + i ys``. ``boundary`` draws the level line
    ``radius = 1`` in that colour; ``real_axis`` draws the stable part of the real axis, so that a
    region of zero area (leapfrog's segment) still shows."""
    grid = xs[None, :] + 1j * ys[:, None]
    r = radius(grid)
    ax.contourf(xs, ys, (r <= 1 + STABLE_TOLERANCE).astype(float), levels=[0.5, 1.5], colors=[color])
    if boundary is not None:
        finite = np.where(np.isfinite(r), r, 1e6)
        ax.contour(xs, ys, finite, levels=[1.0], colors=[boundary], linewidths=0.8)
    if real_axis is not None:
        on_axis = radius(xs + 0j) <= 1 + STABLE_TOLERANCE
        ax.plot(np.where(on_axis, xs, np.nan), np.zeros_like(xs), color=real_axis, lw=4, zorder=1)
