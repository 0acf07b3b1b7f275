"""A trained network's layer spectra drawn over its scheme's stability region, on matplotlib axes.

No torch here: the result's arrays are numpy's, and matplotlib is imported when a figure is drawn.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import numpy as np

from odenet.extras import require
from odenet.figures import SPECTRA_FIGURE, STABLE_TOLERANCE, axes_or_new, inline_picture, shade_region

if TYPE_CHECKING:
    from odenet.models.spectra import TrainedStability

__all__ = ["draw_spectra", "spectra_html"]


def _reach(result: TrainedStability) -> tuple[float, float]:
    """Half-widths along the real and imaginary axes: every scaled eigenvalue and the region's
    extent along both axes (probed up to +-8), padded; equal where they are comparable."""
    points = [layer.scale * layer.eigenvalues for layer in result.layers]
    every = np.concatenate(points) if points else np.zeros(0, complex)
    reach_x = max(1.0, 1.25 * float(np.abs(every.real).max(initial=0.0)))
    reach_y = max(1.0, 1.25 * float(np.abs(every.imag).max(initial=0.0)))
    if result.region is not None:
        probe = np.linspace(-8, 8, 1601)
        for axis, unit in ((0, 1), (1, 1j)):
            inside = probe[result.region.radius(unit * probe / result.region_scale) <= 1 + STABLE_TOLERANCE]
            if inside.size:
                reach = 1.15 * float(np.abs(inside).max())
                reach_x, reach_y = (
                    (max(reach_x, reach), reach_y) if axis == 0 else (reach_x, max(reach_y, reach))
                )
    if max(reach_x, reach_y) / min(reach_x, reach_y) < 4:
        reach_x = reach_y = max(reach_x, reach_y)
    return reach_x, reach_y


def draw_spectra(result: TrainedStability, ax: Any = None, resolution: int = 301) -> Any:
    """The region (at the middle layer's parameters) shaded, each layer's scaled eigenvalues as dots
    coloured by depth; eigenvalues outside their layer's region are ringed in red. Drawn on ``ax``
    (a new figure's axes when None); returns the axes."""
    matplotlib = require("matplotlib", "drawing a figure")
    ax = axes_or_new(ax, **SPECTRA_FIGURE)
    reach_x, reach_y = _reach(result)
    if result.region is not None:
        xs = np.linspace(-reach_x, reach_x, resolution)
        ys = np.linspace(-reach_y, reach_y, resolution)
        region = result.region

        def radius(z):
            return region.radius(z / result.region_scale)

        shade_region(ax, radius, xs, ys, "#c6dbef", real_axis="#6baed6")
    ax.axhline(0, color="0.6", lw=0.6, zorder=0)
    ax.axvline(0, color="0.6", lw=0.6, zorder=0)
    cmap = matplotlib.colormaps["viridis"]
    depth = max(1, len(result.layers) - 1)
    for layer in result.layers:
        z = layer.scale * layer.eigenvalues
        ax.scatter(z.real, z.imag, s=6, color=cmap(layer.layer / depth), alpha=0.6, lw=0, zorder=2)
        out = z[layer.outside]
        if out.size:
            ax.scatter(out.real, out.imag, s=16, facecolors="none", edgecolors="#cb181d", lw=0.6, zorder=3)
    mappable = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, depth))
    ax.figure.colorbar(mappable, ax=ax, label="layer")
    variable = result.variable.replace("lambda", "μ").replace("**2", "²").replace("*", "·")
    ax.set_xlabel(f"Re({variable})")
    ax.set_ylabel(f"Im({variable})")
    ax.set_xlim(-reach_x, reach_x)
    ax.set_ylim(-reach_y, reach_y)
    verdict = "stable" if result.stable else "unstable"
    ax.set_title(f"{result.scheme.name}: trained layers' Jacobian spectra ({verdict})")
    return ax


def spectra_html(result: TrainedStability) -> str:
    """A notebook's display of ``result``: the verdict, a row per layer, the spectra as an inline PNG
    (left out, with a note, where matplotlib is not installed)."""
    name = html.escape(result.scheme.name)
    out = [
        f"<div><strong>Trained-network stability of {name}</strong>",
        f"<p>{html.escape(result.verdict)}.</p>",
        "<table>",
        "<tr><th>layer</th><th>stage</th><th>eigenvalues</th><th>max abs scaled</th><th>outside</th>"
        "<th>joint spectral radius</th></tr>",
    ]
    for layer in result.layers:
        cells = [
            layer.layer,
            layer.stage,
            f"{layer.eigenvalues.size} ({layer.method})",
            f"{layer.scale * layer.max_abs_eigenvalue:.4g}",
            f"{100 * layer.outside_fraction:.1f}%",
            "–" if layer.max_amplification is None else f"{layer.max_amplification:.4g}",
        ]
        out.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    out.append("</table>")
    out.append(inline_picture(lambda: draw_spectra(result), "spectra", result.scheme.name, 480))
    out.append("</div>")
    return "\n".join(out)
