"""Reports of an analysis for people: a verdict in words, a Markdown page, the stability-region plot.

Matplotlib is imported only when a plot is drawn (``import odenet`` stays light), with the
non-interactive Agg backend so reports work on machines without a display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import sympy

from odenet.analysis import Analysis, Structure
from odenet.analysis.picture import draw_split
from odenet.analysis.verdict import at_text, interval_text, rescaled_text, variable_text, verdict
from odenet.figures import REGION_FIGURE, new_figure
from odenet.files import write_text
from odenet.ir.printing import format_number
from odenet.report.plotting import plot_stability, save_figure

__all__ = ["plot_stability_region", "verdict", "write_index", "write_report"]

SPLIT_IMAGE = "stability_split.png"


def _latex_block(lines: Sequence[str]) -> str:
    return "\n".join(f"$$ {line} $$" for line in lines)


def _row(name: str, value: str) -> str:
    return f"| {name} | {value} |"


_CELL = {"does not apply": "n/a"}  # the reports' word for it
_INDEX = {"yes": "yes", "no": "no", "not decided": "?", "does not apply": "–"}


def _verdict_cell(st: Structure, prop: str) -> str:
    """``yes: <why>``, ``no: <why>``, ``not decided: ...`` or ``n/a: <why>``."""
    answer = st.answer(prop)
    return f"{_CELL.get(answer, answer)}: {st.why(prop)}"


def report_markdown(analysis: Analysis, image: str | None = "stability.png") -> str:
    scheme, s, r, a = analysis.scheme, analysis.stability, analysis.reversibility, analysis.accuracy
    st = analysis.structure
    latex = scheme.latex
    out = [f"# {scheme.name}", ""]
    if scheme.doc:
        out += ["> " + line for line in scheme.doc.splitlines()] + [""]
    out += ["## Step", "", _latex_block(scheme.latex_equations()), ""]
    if r.kind == "explicit":
        out += [
            "## Inverse (derived)",
            "",
            "Old values from new ones, with function evaluations only forward, in order (each line "
            "reads the new values and the values above it):",
            "",
        ]
        out += [_latex_block([f"{latex(old)} = {latex(expr)}" for old, expr in r.steps]), ""]
    params = ", ".join(f"{k} = {format_number(v)}" for k, v in analysis.params.items()) or "none"
    eigen = "no closed form" if s.eigenvalues is None else ", ".join(f"${latex(e)}$" for e in s.eigenvalues)
    real, imag = interval_text(analysis, False), interval_text(analysis, True)
    var = variable_text(analysis)
    order = "none" if a.order is None else f"{'≥ ' if a.lower_bound else ''}{a.order}"
    rows = [
        _row("explicit step", "yes" if analysis.explicit else "no (implicit)"),
        _row("parameters used for numbers", params),
        _row(f"order in {scheme.step}", f"{order} ({a.reason})"),
        _row("consistent ODE", ("; ".join(f"`{x}`" for x in a.ode) or "none") + rescaled_text(analysis)),
        _row("leading local error", "none" if a.leading_error is None else f"`{a.leading_error_text}`"),
        _row("modified equation", "none" if a.modified_equation is None else f"`{a.modified_equation}`"),
        _row("amplification matrix M(λ)", f"${latex(s.amplification_matrix)}$"),
        _row("characteristic polynomial", f"${latex(s.characteristic_polynomial)}$"),
        _row("det M", f"${latex(s.det)}$"),
        _row("eigenvalues", eigen),
        _row("region depends on", f"${latex(s.variable)}$"),
        _row("zero-stable", "yes" if s.zero_stable else "no"),
        _row(f"real interval of {var}", real + at_text(analysis)),
        _row(f"imaginary interval of {var}", imag + at_text(analysis)),
        _row("reversibility", r.kind),
        _row("inverse needs", ", ".join(f"${latex(c)} \\neq 0$" for c in r.conditions) or "nothing"),
        _row("volume-preserving", "yes" if r.volume_preserving else "no"),
        _row(
            "backward amplification",
            "none (M(0) is singular)"
            if r.backward_amplification is None
            else f"{r.backward_amplification:.6g}",
        ),
        _row("symplectic", _verdict_cell(st, "symplectic")),
        _row("symmetric", _verdict_cell(st, "symmetric")),
    ]
    out += ["## Facts", "", "| fact | value |", "|---|---|", *rows, ""]
    out += ["## Verdict", ""] + [f"- {line}." for line in verdict(analysis)] + [""]
    if image:
        out += [
            "## Stability region",
            "",
            f"![stability region of {scheme.name}]({image})",
            "",
            f"Shaded: spectral radius of M at most 1, in the complex ${latex(s.variable)}$ plane at the "
            "parameters above; thick lines: the stable intervals on the axes (a region of zero area, "
            "such as leapfrog's segment, shows only as its line).",
            "",
        ]
        if analysis.split is not None:
            first, second = list(analysis.split.variables)[:2]
            out += [
                "## A λ for each function",
                "",
                f"The region above gives every function one λ. Here {first} and {second} each have a real "
                f"one (`{first}(u) = λ_{first}*u`, `{second}(u) = λ_{second}*u`, any others 0); shaded: "
                "spectral radius of M at most 1.",
                "",
                f"![stability with a λ for each function]({SPLIT_IMAGE})",
                "",
            ]
    return "\n".join(out)


def plot_stability_region(analysis: Analysis, path: str | os.PathLike, **style) -> Path:
    """Write ``analysis``'s stability region (:func:`~odenet.report.plotting.plot_stability`) to
    ``path`` as PNG."""
    return save_figure(plot_stability(analysis, new_figure(**REGION_FIGURE)[1], **style).figure, path)


def write_report(analysis: Analysis, folder: str | os.PathLike) -> Path:
    """Write ``report.md`` and ``stability.png`` into ``folder`` (and ``stability_split.png`` for a
    scheme of several functions: a real λ for each); returns the report's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "report.md", report_markdown(analysis))
    plot_stability_region(analysis, folder / "stability.png")
    if analysis.split is not None:
        save_figure(draw_split(analysis, new_figure(**REGION_FIGURE)[1]).figure, folder / SPLIT_IMAGE)
    return folder / "report.md"


def write_index(analyses: Sequence[Analysis], folder: str | os.PathLike) -> Path:
    """``index.md``: one table comparing every analyzed scheme, linking each report."""
    lines = [
        "# Scheme gallery",
        "",
        "Every scheme analyzed by `odenet analyze`; numbers at the parameters' defaults.",
        "Intervals are in the variable the region depends on (h·λ, h²·λ or λ, its column), at the",
        "parameter values of the column 'at' where the region depends on more than that variable.",
        "",
        "Symplectic and symmetric: yes or no where proved (the reasons in each report), – where the",
        "notion does not apply (history, no Hamiltonian reading, no step h), ? where not decided.",
        "",
        "| scheme | explicit | order | zero-stable | variable | real interval | imaginary interval | at "
        "| det M | reversible | backward amplification | symplectic | symmetric |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in analyses:
        s, r, st = a.stability, a.reversibility, a.structure
        var = variable_text(a)
        real, imag = interval_text(a, False, "unstable"), interval_text(a, True, "unstable")
        at = ", ".join(f"{k} = {format_number(v)}" for k, v in s.at.items()) or "–"
        amplification = "–" if r.backward_amplification is None else f"{r.backward_amplification:.3g}"
        lines.append(
            f"| [{a.scheme.name}]({a.scheme.name}/report.md) | {'yes' if a.explicit else 'no'} "
            f"| {'–' if a.order is None else a.order} | {'yes' if s.zero_stable else 'no'} | {var} "
            f"| {real} | {imag} | {at} | ${sympy.latex(s.det)}$ | {r.kind} | {amplification} "
            f"| {_INDEX[st.answer('symplectic')]} | {_INDEX[st.answer('symmetric')]} |"
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "index.md", "\n".join(lines) + "\n")
    return folder / "index.md"
