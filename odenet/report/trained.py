"""Reports on a trained network's stability: a Markdown table per layer and a picture of the
layers' scaled Jacobian eigenvalues over the scheme's stability region."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from odenet.extras import require
from odenet.files import write_text
from odenet.report.plotting import STABLE_TOLERANCE, new_figure, save_figure, shade_region

if TYPE_CHECKING:
    from odenet.models.spectra import TrainedStability

__all__ = ["plot_trained_spectra", "trained_markdown", "verdict", "write_trained_report"]


def verdict(result: TrainedStability) -> str:
    """One sentence: stable, or which layers leave the region and how far (the result's verdict)."""
    return result.verdict


def trained_markdown(result: TrainedStability, image: str | None = "spectra.png") -> str:
    name = result.scheme.name
    lines = [
        f"# Trained-network stability: {name}",
        "",
        f"**Verdict.** {verdict(result)}.",
        "",
        f"Each eigenvalue μ of a layer's Jacobian (at {result.samples} test inputs) is placed at "
        f"`{result.variable.replace('lambda', 'μ')}` with the layer's own parameters and tested against the "
        "scheme's stability region there (spectral radius of the amplification matrix ≤ 1). This is the "
        "frozen-coefficient linearization: a diagnostic, not a proof of nonlinear stability. Where the "
        "scheme has several functions the layers are judged by their joint linearization instead: the "
        "step's Jacobian with every function replaced by its own Jacobian (the analysis' amplification "
        "matrix at those Jacobians), stable when its spectral radius is at most 1 (last column).",
        "",
    ]
    if image:
        lines += [f"![scaled eigenvalues over the stability region]({image})", ""]
    lines += [
        "| layer | stage | parameters | eigenvalues | method | max abs eigenvalue | max abs scaled "
        "| outside | joint spectral radius |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for layer in result.layers:
        params = ", ".join(f"{k}={v:.4g}" for k, v in layer.params.items()) or "–"
        lines.append(
            f"| {layer.layer} | {layer.stage} | {params} | {layer.eigenvalues.size} | {layer.method} "
            f"| {layer.max_abs_eigenvalue:.4g} | {layer.scale * layer.max_abs_eigenvalue:.4g} "
            f"| {100 * layer.outside.mean() if layer.outside.size else 0.0:.1f}% "
            f"| {'–' if layer.max_amplification is None else f'{layer.max_amplification:.4g}'} |"
        )
    return "\n".join(lines) + "\n"


def plot_trained_spectra(result: TrainedStability, path: str | os.PathLike, resolution: int = 301) -> None:
    """The region (at the middle layer's parameters) shaded, each layer's scaled eigenvalues as dots
    coloured by depth; eigenvalues outside their layer's region are ringed in red."""
    matplotlib = require("matplotlib", "drawing a figure")

    points = [layer.scale * layer.eigenvalues for layer in result.layers]
    every = np.concatenate(points) if points else np.zeros(0, complex)
    reach_x = max(1.0, 1.25 * float(np.abs(every.real).max(initial=0.0)))
    reach_y = max(1.0, 1.25 * float(np.abs(every.imag).max(initial=0.0)))
    if result.region is not None:  # show the region's extent along both axes (probed up to +-8)
        probe = np.linspace(-8, 8, 1601)
        for axis, unit in ((0, 1), (1, 1j)):
            inside = probe[result.region.radius(unit * probe / result.region_scale) <= 1 + STABLE_TOLERANCE]
            if inside.size:
                reach = 1.15 * float(np.abs(inside).max())
                reach_x, reach_y = (
                    (max(reach_x, reach), reach_y) if axis == 0 else (reach_x, max(reach_y, reach))
                )
    reach_x = reach_y = (
        max(reach_x, reach_y) if max(reach_x, reach_y) / min(reach_x, reach_y) < 4 else reach_x
    )
    fig, ax = new_figure(figsize=(6.0, 5.0), dpi=110)
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
    for layer, z in zip(result.layers, points, strict=True):
        ax.scatter(z.real, z.imag, s=6, color=cmap(layer.layer / depth), alpha=0.6, lw=0, zorder=2)
        out = z[layer.outside]
        if out.size:
            ax.scatter(out.real, out.imag, s=16, facecolors="none", edgecolors="#cb181d", lw=0.6, zorder=3)
    mappable = matplotlib.cm.ScalarMappable(cmap=cmap, norm=matplotlib.colors.Normalize(0, depth))
    fig.colorbar(mappable, ax=ax, label="layer")
    variable = result.variable.replace("lambda", "μ").replace("**2", "²").replace("*", "·")
    ax.set_xlabel(f"Re({variable})")
    ax.set_ylabel(f"Im({variable})")
    ax.set_xlim(-reach_x, reach_x)
    ax.set_ylim(-reach_y, reach_y)
    ax.set_title(
        f"{result.scheme.name}: trained layers' Jacobian spectra "
        f"({'stable' if result.stable else 'unstable'})"
    )
    save_figure(fig, path)


def write_trained_report(result: TrainedStability, folder: str | os.PathLike) -> Path:
    """``report.md`` and ``spectra.png`` in ``folder``; returns the report's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_trained_spectra(result, folder / "spectra.png")
    write_text(folder / "report.md", trained_markdown(result))
    return folder / "report.md"
