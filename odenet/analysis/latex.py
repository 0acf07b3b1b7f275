"""An analysis as a LaTeX ``tabular`` (``Analysis.to_latex()``, ``odenet analyze --latex``): the
facts of :func:`~odenet.analysis.verdict.analysis_facts`, the variable, the intervals and ``det M``
set as mathematics and every other text escaped."""

from __future__ import annotations

from typing import TYPE_CHECKING

from odenet.analysis.verdict import analysis_facts

if TYPE_CHECKING:
    from odenet.analysis.analyze import Analysis

__all__ = ["analysis_latex", "escape_latex"]

_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "λ": r"$\lambda$",
    "≥": r"$\geq$",
}


def escape_latex(text: str) -> str:
    """``text`` set as LaTeX text: its special characters escaped."""
    return "".join(_SPECIAL.get(c, c) for c in text)


def analysis_latex(analysis: Analysis) -> str:
    """``\\begin{tabular}{ll} ... \\end{tabular}``: a row per fact, ``fact & value \\\\``."""
    lines = [r"\begin{tabular}{ll}", r"\hline", r"fact & value \\", r"\hline"]
    for fact in analysis_facts(analysis):
        label = fact.label_latex if fact.label_latex is not None else escape_latex(fact.label)
        value = fact.value_latex if fact.value_latex is not None else escape_latex(fact.value)
        lines.append(f"{label} & {value} \\\\")
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines)
