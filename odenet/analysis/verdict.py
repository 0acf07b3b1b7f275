"""An analysis in words: the verdict, one sentence per fact, and the short line a ``repr`` shows.

Plain text only (no figure, no Markdown): the reports (:mod:`odenet.report.analysis`), the command
line and :class:`~odenet.analysis.Analysis`'s own ``repr`` and ``str`` say the same sentences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

import sympy

from odenet.analysis.inverse import round_down
from odenet.ir import Scheme
from odenet.ir.printing import format_expr, format_number

if TYPE_CHECKING:
    from odenet.analysis.analyze import Analysis, Stability

__all__ = [
    "Fact",
    "analysis_facts",
    "at_text",
    "axis_text",
    "format_interval",
    "format_real",
    "interval_text",
    "lipschitz_condition",
    "rescaled_text",
    "short_verdict",
    "split_lines",
    "structure_lines",
    "variable_text",
    "verdict",
]

Interval = tuple[float | None, float | None]


def format_real(x: float) -> str:
    """A number as a reader wants it: 400 rather than 400.0, 2.785 rather than 2.78529356341."""
    if x == int(x) and abs(x) < 1e12:
        return str(int(x))
    return f"{x:.4g}"


def variable_text(analysis: Analysis) -> str:
    """The region's variable for a reader: ``h**2*λ``."""
    return analysis.stability.variable_label


def at_text(analysis: Analysis) -> str:
    """`` (at gamma = 0.9)``: the parameter values the intervals depend on, if any."""
    s = analysis.stability
    return f" (at {s.at_text})" if s.at else ""


def format_interval(interval: Interval, imaginary: bool = False, closed=(True, True)) -> str:
    """``[-2, 0]``, ``(-4, 0]`` (an end that is not stable itself), ``(-∞, 0]``, ``i·[-1, 1]``, or
    ``{0}`` for the single point."""
    lo, hi = interval
    if lo == 0 and hi == 0:
        return "{0}"
    left = "(-∞" if lo is None else f"{'[' if closed[0] else '('}{format_real(lo)}"
    right = "∞)" if hi is None else f"{format_real(hi)}{']' if closed[1] else ')'}"
    return ("i·" if imaginary else "") + f"{left}, {right}"


def interval_text(analysis: Analysis, imaginary: bool, unstable: str = "unstable at 0") -> str:
    """The stable interval along one axis, or ``unstable`` when not even 0 is stable."""
    return axis_text(analysis.stability, imaginary, unstable)


def axis_text(s: Stability, imaginary: bool, unstable: str = "unstable at 0") -> str:
    """:func:`interval_text` of any :class:`~odenet.analysis.Stability` (a function's alone)."""
    interval = s.imag_interval if imaginary else s.real_interval
    if interval is None:
        return unstable
    closed = s.imag_interval_closed if imaginary else s.real_interval_closed
    return format_interval(interval, imaginary, closed)


def split_lines(analysis: Analysis) -> list[str]:
    """For a scheme of several functions: that the test equation above gives them one λ, and each
    function's intervals with a λ of its own (the others' 0)."""
    split = analysis.split
    if split is None:
        return []
    names = list(split.variables)
    shared = " = ".join(f"{name}(u)" for name in names) + " = λu"
    parts = []
    for name, s in split.alone.items():
        var = s.variable_label
        real, imag = axis_text(s, False), axis_text(s, True)
        if real == imag == "{0}":
            parts.append(f"{name} only at {var} = 0")
        else:
            parts.append(f"{name} for {var} in {real} on the real axis and {imag} on the imaginary axis")
    return [
        f"the test equation above gives {' and '.join(names)} one λ ({shared}); with a λ each, "
        f"stable with the others' 0: {'; '.join(parts)} (reports draw the plane of two real λs)"
    ]


def rescaled_text(analysis: Analysis) -> str:
    """The time rescaling when the limit ODE is ``x' = c*f(x)``: the scheme is consistent, with
    an effective step ``c*h`` (heavy ball and Nesterov: ``h/(1 - gamma)``)."""
    c = analysis.accuracy.time_scale
    if c is None:
        return ""
    step = sympy.Symbol(analysis.scheme.step, real=True)
    return (
        f" (that is {analysis.accuracy.unscaled_ode} in rescaled time: "
        f"a step advances it by {format_expr(c * step)})"
    )


def lipschitz_condition(scheme: Scheme, limit: float | None, values: Mapping[str, sympy.Expr]) -> str:
    """The condition under which a fixed-point inverse's iteration converges, in words."""
    if limit is None:
        return f"the functions' Lipschitz constant is small enough ({scheme.step}*Lip(f) < 1 or less)"
    if math.isinf(limit):
        return "always (the iteration reads no unknown through a function)"
    step = values.get(scheme.step)
    scaled = ""
    if step is not None and step != 0:
        scaled = f" ({scheme.step}*Lip(f) < {round_down(abs(float(step)) * limit, 3):.3g})"
    return f"every function's Lipschitz constant is below {round_down(limit, 3):.3g}{scaled}"


def verdict(analysis: Analysis) -> list[str]:
    """The plain-language conclusions, one sentence each."""
    s, r, a = analysis.stability, analysis.reversibility, analysis.accuracy
    var = variable_text(analysis)
    out = []
    if s.real_interval is None:
        out.append(f"unstable even at {var} = 0: the step amplifies its own state without any input from f")
    else:
        parts = []
        axes = ((s.real_interval, False, "real"), (s.imag_interval, True, "imaginary"))
        for interval, imaginary, axis in axes:
            text = interval_text(analysis, imaginary)
            if interval == (0.0, 0.0):
                parts.append(f"on the {axis} axis only at {var} = 0")
            elif interval is not None and None in interval:
                parts.append(f"for {var} in {text} on the {axis} axis (unbounded)")
            else:
                parts.append(f"for {var} in {text} on the {axis} axis")
        out.append("stable " + " and ".join(parts) + at_text(analysis))
    out.append("zero-stable" if s.zero_stable else "not zero-stable: the homogeneous recurrence grows")
    if a.order is None:
        out.append(f"no order of accuracy: {a.reason}")
    else:
        bound = "at least " if a.lower_bound else ""
        out.append(f"order {bound}{a.order} for {'; '.join(a.ode)}{rescaled_text(analysis)}")
    if r.kind == "explicit":
        needs = (
            f" (valid while {', '.join(format_expr(c) + ' != 0' for c in r.conditions)})"
            if r.conditions
            else ""
        )
        text = f"reversible without storing activations{needs}"
        if r.backward_amplification is not None:
            text += f"; the inverse multiplies rounding error by {r.backward_amplification:.3g} per layer"
        out.append(text)
    elif r.kind == "fixed-point":
        if analysis.explicit:
            condition = lipschitz_condition(analysis.scheme, r.lipschitz_limit, analysis.params)
            out.append(
                f"invertible by fixed-point iteration when {condition}: reversible training solves for "
                "each input (contractive functions), else store or recompute activations"
            )
        else:
            out.append(
                "implicit, and so is its inverse: each layer solves its step; train with stored activations "
                "and implicit differentiation"
            )
    else:
        out.append("not invertible: the step loses information, so activations must be stored")
    if r.volume_preserving:
        out.append("volume-preserving: |det M| = 1 for every λ")
    out += split_lines(analysis)
    out += structure_lines(analysis)
    return out


def structure_lines(analysis: Analysis) -> list[str]:
    """The symplectic and symmetric verdicts, each with its reason."""
    st = analysis.structure
    if st.symplectic is None:
        symplectic = f"symplecticity {st.answer('symplectic')}: {st.why('symplectic')}"
    else:
        symplectic = st.symplectic_reason  # "symplectic ..." or "not symplectic ..."
    if st.symmetric is None:
        symmetric = f"symmetry {st.answer('symmetric')}: {st.why('symmetric')}"
    elif st.symmetric:
        symmetric = f"symmetric (time-reversible): {st.symmetric_reason}"
    else:
        symmetric = f"not symmetric: {st.symmetric_reason}"
    return [symplectic, symmetric]


class Fact(NamedTuple):
    """A row of the facts table: plain text (HTML, Markdown), and LaTeX where it differs from the
    escaped text (mathematics)."""

    label: str
    value: str
    label_latex: str | None = None
    value_latex: str | None = None


def analysis_facts(analysis: Analysis) -> list[Fact]:
    """The facts of an analysis, in the order the HTML table and the LaTeX tabular show them."""
    s, r, a = analysis.stability, analysis.reversibility, analysis.accuracy
    scheme = analysis.scheme
    var = variable_text(analysis)
    var_latex = f"${scheme.latex(s.variable)}$"
    at = at_text(analysis)
    at_latex = ", ".join(f"${sympy.latex(sympy.Symbol(k))} = {format_number(v)}$" for k, v in s.at.items())
    at_latex = f" (at {at_latex})" if at_latex else ""
    order = "none" if a.order is None else f"{'>= ' if a.lower_bound else ''}{a.order}"
    geq = r"$\geq$ " if a.lower_bound else ""
    order_latex = "none" if a.order is None else f"{geq}{a.order}"
    amplification = r.backward_amplification
    step_latex = sympy.latex(sympy.Symbol(scheme.step))
    st = analysis.structure
    return [
        Fact("explicit step", "yes" if analysis.explicit else "no (implicit)"),
        Fact(f"order in {scheme.step}", order, f"order in ${step_latex}$", order_latex),
        Fact("consistent ODE", "; ".join(a.ode) or "none"),
        Fact("zero-stable", "yes" if s.zero_stable else "no"),
        Fact(
            f"real interval of {var}",
            interval_text(analysis, False) + at,
            f"real interval of {var_latex}",
            _latex_interval(s.real_interval, False, s.real_interval_closed) + at_latex,
        ),
        Fact(
            f"imaginary interval of {var}",
            interval_text(analysis, True) + at,
            f"imaginary interval of {var_latex}",
            _latex_interval(s.imag_interval, True, s.imag_interval_closed) + at_latex,
        ),
        Fact("det M", format_expr(s.det), r"$\det M$", f"${scheme.latex(s.det)}$"),
        Fact("reversibility", r.kind),
        Fact("volume-preserving", "yes" if r.volume_preserving else "no"),
        Fact(
            "backward amplification",
            "none (M(0) is singular)" if amplification is None else f"{amplification:.6g}",
            None,
            "none ($M(0)$ is singular)" if amplification is None else None,
        ),
        Fact("symplectic", st.answer("symplectic")),
        Fact("symmetric", st.answer("symmetric")),
    ]


def _latex_interval(interval: Interval | None, imaginary: bool, closed: tuple[bool, bool]) -> str:
    """``$[-2, 0]$``, ``$i\\cdot(-1, 1)$``, ``$(-\\infty, 0]$``, ``$\\{0\\}$``, or ``unstable at 0``."""
    if interval is None:
        return "unstable at 0"
    text = format_interval(interval, imaginary, closed)
    return "$" + text.replace("∞", r"\infty").replace("i·", r"i\cdot").replace("{0}", r"\{0\}") + "$"


def short_verdict(analysis: Analysis) -> str:
    """The verdict in one line of a few facts: ``explicit; order 2; zero-stable; stable for h**2*λ
    in (-4, 0]; inverse: explicit; symplectic; symmetric`` (an axis on which only 0 is stable is
    left out, and so are the structure words not proved)."""
    s, r, a, st = analysis.stability, analysis.reversibility, analysis.accuracy, analysis.structure
    order = "no order" if a.order is None else f"order {'>= ' if a.lower_bound else ''}{a.order}"
    if s.real_interval is None:
        stable = "unstable at 0"
    else:
        axes = [
            text
            for text in (interval_text(analysis, False), interval_text(analysis, True))
            if text not in ("{0}", "i·{0}")
        ]
        stable = f"stable for {variable_text(analysis)} in {' and '.join(axes) or '{0}'}{at_text(analysis)}"
    inverse = {"explicit": "explicit", "fixed-point": "by fixed-point iteration", "none": "none"}[r.kind]
    proved = [name for name, v in (("symplectic", st.symplectic), ("symmetric", st.symmetric)) if v]
    return "; ".join(
        [
            "explicit" if analysis.explicit else "implicit",
            order,
            "zero-stable" if s.zero_stable else "not zero-stable",
            stable,
            f"inverse: {inverse}",
            *proved,  # only what is proved: a reader of one line takes a word for a fact
        ]
    )
