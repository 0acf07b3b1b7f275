"""Reports on a trained network's stability: a Markdown table per layer and a picture of the
layers' scaled Jacobian eigenvalues over the scheme's stability region."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from odenet.figures import SPECTRA_FIGURE, new_figure
from odenet.files import write_text
from odenet.report.plotting import plot_spectra, save_figure

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


def plot_trained_spectra(result: TrainedStability, path: str | os.PathLike) -> Path:
    """Write the layers' spectra over the region (:func:`~odenet.report.plotting.plot_spectra`) to
    ``path`` as PNG."""
    return save_figure(plot_spectra(result, new_figure(**SPECTRA_FIGURE)[1]).figure, path)


def write_trained_report(result: TrainedStability, folder: str | os.PathLike) -> Path:
    """``report.md`` and ``spectra.png`` in ``folder``; returns the report's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_trained_spectra(result, folder / "spectra.png")
    write_text(folder / "report.md", trained_markdown(result))
    return folder / "report.md"
