"""An analysis as a LaTeX ``tabular`` (``Analysis.to_latex()``, ``odenet analyze --latex``): the
facts of :func:`~odenet.analysis.html.analysis_facts`, and ``det M``, with the variable, the
intervals and ``det M`` set as mathematics and every other text escaped."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy

from odenet.analysis.verdict import format_interval
from odenet.ir.printing import format_number

if TYPE_CHECKING:
    from odenet.analysis.analyze import Analysis, Interval

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


def _interval(interval: Interval | None, imaginary: bool, closed: tuple[bool, bool]) -> str:
    """``$[-2, 0]$``, ``$i\\cdot(-1, 1)$``, ``$(-\\infty, 0]$``, ``$\\{0\\}$``, or ``unstable at 0``."""
    if interval is None:
        return "unstable at 0"
    text = format_interval(interval, imaginary, closed)
    return "$" + text.replace("∞", r"\infty").replace("i·", r"i\cdot").replace("{0}", r"\{0\}") + "$"


def analysis_latex(analysis: Analysis) -> str:
    """``\\begin{tabular}{ll} ... \\end{tabular}``: a row per fact, ``fact & value \\\\``."""
    s, r, a = analysis.stability, analysis.reversibility, analysis.accuracy
    var = f"${analysis.scheme.latex(s.variable)}$"
    at = ", ".join(f"${sympy.latex(sympy.Symbol(k))} = {format_number(v)}$" for k, v in s.at.items())
    at = f" (at {at})" if at else ""
    bound = r"$\geq$ " if a.lower_bound else ""
    order = "none" if a.order is None else f"{bound}{a.order}"
    amplification = r.backward_amplification
    rows = [
        ("explicit step", "yes" if analysis.explicit else "no (implicit)"),
        (f"order in ${sympy.latex(sympy.Symbol(analysis.scheme.step))}$", order),
        ("consistent ODE", escape_latex("; ".join(a.ode) or "none")),
        ("zero-stable", "yes" if s.zero_stable else "no"),
        (f"real interval of {var}", _interval(s.real_interval, False, s.real_interval_closed) + at),
        (f"imaginary interval of {var}", _interval(s.imag_interval, True, s.imag_interval_closed) + at),
        (r"$\det M$", f"${analysis.scheme.latex(s.det)}$"),
        ("reversibility", escape_latex(r.kind)),
        ("volume-preserving", "yes" if r.volume_preserving else "no"),
        (
            "backward amplification",
            "none ($M(0)$ is singular)" if amplification is None else f"{amplification:.6g}",
        ),
    ]
    lines = [r"\begin{tabular}{ll}", r"\hline", r"fact & value \\", r"\hline"]
    lines += [f"{fact} & {value} \\\\" for fact, value in rows]
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines)
