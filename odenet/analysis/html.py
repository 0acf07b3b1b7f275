"""An analysis as HTML, for a notebook's rich display (``Analysis._repr_html_``): the verdict, the
facts as a small table and the stability region as an inline PNG (left out, with a note, where
matplotlib is not installed). Built when displayed, never at import."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from odenet.analysis.picture import draw_stability
from odenet.analysis.verdict import analysis_facts, verdict
from odenet.figures import inline_picture

if TYPE_CHECKING:
    from odenet.analysis.analyze import Analysis

__all__ = ["analysis_html"]


def analysis_html(analysis: Analysis) -> str:
    """The verdict as a list, the facts as a table, the region as ``<img src="data:image/png...">``."""
    name = html.escape(analysis.scheme.name)
    out = [f"<div><strong>Analysis of {name}</strong>", "<ul>"]
    out += [f"<li>{html.escape(line)}.</li>" for line in verdict(analysis)]
    out += ["</ul>", "<table>", "<tr><th>fact</th><th>value</th></tr>"]
    out += [
        f"<tr><td>{html.escape(fact)}</td><td>{html.escape(value)}</td></tr>"
        for fact, value, *_ in analysis_facts(analysis)
    ]
    out.append("</table>")
    out.append(
        inline_picture(lambda: draw_stability(analysis), "stability region", analysis.scheme.name, 400)
    )
    out.append("</div>")
    return "\n".join(out)
