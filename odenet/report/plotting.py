"""The pictures of odenet's results, on matplotlib axes: ``odenet.plot_stability`` (a scheme's
stability region) and ``odenet.plot_spectra`` (a trained network's layer spectra over it). The
report writer and the command line draw their PNGs with these same functions.

Matplotlib is imported when a picture is drawn, never at ``import odenet``. The figure helpers of
:mod:`odenet.figures` are re-exported here for the experiments' scripts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from odenet.analysis import Analysis, analyze
from odenet.analysis.picture import draw_stability
from odenet.extras import require
from odenet.figures import (
    REGION_FIGURE,
    SPECTRA_FIGURE,
    STABLE_TOLERANCE,
    new_figure,
    save_figure,
    shade_region,
)
from odenet.ir import Scheme
from odenet.models.picture import draw_spectra

if TYPE_CHECKING:
    from odenet.models.spectra import TrainedStability

__all__ = [
    "STABLE_TOLERANCE",
    "new_figure",
    "plot_spectra",
    "plot_stability",
    "save_figure",
    "shade_region",
]


def plot_stability(scheme_or_analysis: Scheme | Analysis, ax: Any = None, **style: Any) -> Any:
    """Draw the stability region of a scheme (analyzed at its parameters' defaults) or of an
    analysis on ``ax``; returns the matplotlib Axes. ``style``: ``color``, ``boundary``,
    ``intervals`` (colours of the fill, the boundary and the stable intervals), ``title`` and
    ``resolution`` (grid points per axis). Without ``ax``, a new pyplot figure's axes, as pandas'
    and seaborn's plots do: a notebook shows it under the cell, ``plt.show()`` in a script."""
    if isinstance(scheme_or_analysis, Scheme):
        scheme_or_analysis = analyze(scheme_or_analysis)
    return draw_stability(scheme_or_analysis, _pyplot_axes(**REGION_FIGURE) if ax is None else ax, **style)


def plot_spectra(trained_stability: TrainedStability, ax: Any = None) -> Any:
    """Draw a trained network's layer spectra (``odenet.models.trained_stability``'s result) over the
    scheme's stability region on ``ax`` (without one, a new pyplot figure's axes, as above); returns
    the matplotlib Axes."""
    return draw_spectra(trained_stability, _pyplot_axes(**SPECTRA_FIGURE) if ax is None else ax)


def _pyplot_axes(**figure: Any) -> Any:
    pyplot = require("matplotlib.pyplot", "drawing a figure")
    return pyplot.figure(**figure).add_subplot()
