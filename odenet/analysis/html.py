"""An analysis as HTML, for a notebook's rich display (``Analysis._repr_html_``): the verdict, the
facts as a small table and the stability region as an inline PNG (left out, with a note, where
matplotlib is not installed). Built when displayed, never at import."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from odenet.analysis.picture import draw_stability
from odenet.analysis.verdict import at_text, interval_text, variable_text, verdict
from odenet.figures import inline_picture

if TYPE_CHECKING:
    from odenet.analysis.analyze import Analysis

__all__ = ["analysis_facts", "analysis_html"]


def analysis_facts(analysis: Analysis) -> list[tuple[str, str]]:
    """``(fact, value)`` in plain text: the table of the HTML (:mod:`odenet.analysis.latex` sets the
    same facts, and ``det M``, as mathematics)."""
    s, r, a = analysis.stability, analysis.reversibility, analysis.accuracy
    var = variable_text(analysis)
    order = "none" if a.order is None else f"{'>= ' if a.lower_bound else ''}{a.order}"
    amplification = r.backward_amplification
    return [
        ("explicit step", "yes" if analysis.explicit else "no (implicit)"),
        (f"order in {analysis.scheme.step}", order),
        ("consistent ODE", "; ".join(a.ode) or "none"),
        ("zero-stable", "yes" if s.zero_stable else "no"),
        (f"real interval of {var}", interval_text(analysis, False) + at_text(analysis)),
        (f"imaginary interval of {var}", interval_text(analysis, True) + at_text(analysis)),
        ("reversibility", r.kind),
        ("volume-preserving", "yes" if r.volume_preserving else "no"),
        (
            "backward amplification",
            "none (M(0) is singular)" if amplification is None else f"{amplification:.6g}",
        ),
    ]


def analysis_html(analysis: Analysis) -> str:
    """The verdict as a list, the facts as a table, the region as ``<img src="data:image/png...">``."""
    name = html.escape(analysis.scheme.name)
    out = [f"<div><strong>Analysis of {name}</strong>", "<ul>"]
    out += [f"<li>{html.escape(line)}.</li>" for line in verdict(analysis)]
    out += ["</ul>", "<table>", "<tr><th>fact</th><th>value</th></tr>"]
    out += [
        f"<tr><td>{html.escape(fact)}</td><td>{html.escape(value)}</td></tr>"
        for fact, value in analysis_facts(analysis)
    ]
    out.append("</table>")
    out.append(
        inline_picture(lambda: draw_stability(analysis), "stability region", analysis.scheme.name, 400)
    )
    out.append("</div>")
    return "\n".join(out)
