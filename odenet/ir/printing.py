"""Scheme to text: the inverse of the parser, and the one way odenet prints a scheme or an expression.

Expressions go through sympy's own ``StrPrinter``, whose output (``-h**2*f(y[n]) + 2*y[n] - y[n-1]``)
is already in the language; the subclass only spells the few constants sympy writes otherwise.
``parse(format_scheme(s)) == s`` for every scheme (tested on the library and on random schemes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sympy
from sympy.printing.str import StrPrinter

from odenet.ir.symbols import split_value, value

if TYPE_CHECKING:  # annotations only: the scheme module imports this one
    from odenet.ir.scheme import Equation, Param, Scheme

__all__ = ["format_equation", "format_expr", "format_number", "format_param", "format_scheme"]


class _SchemePrinter(StrPrinter):
    """sympy's string printer, with constants spelled the way the language reads them."""

    def _print_Exp1(self, expr):  # sympy writes E
        return "exp(1)"

    def _print_Infinity(self, expr):
        return "inf"

    def _print_NegativeInfinity(self, expr):
        return "-inf"


_PRINTER = _SchemePrinter()


def format_expr(expr: sympy.Basic) -> str:
    return _PRINTER.doprint(expr)


def format_number(number: sympy.Expr) -> str:
    """A constant as a person would write it: ``0.1`` rather than ``1/10`` when the decimal is exact."""
    if isinstance(number, sympy.Rational) and not isinstance(number, sympy.Integer):
        p, q = int(number.p), int(number.q)
        for digits in range(1, 31):  # a terminating decimal: q divides some power of ten
            if 10**digits % q == 0:
                whole, frac = divmod(abs(p) * (10**digits // q), 10**digits)
                sign = "-" if p < 0 else ""
                return f"{sign}{whole}.{frac:0{digits}d}".rstrip("0")
    return format_expr(number)


def format_equation(eq: Equation) -> str:
    """``target = expr`` as the language writes it."""
    return f"{eq.target.name} = {format_expr(eq.expr)}"


def format_param(param: Param, keyword: str = "param") -> str:
    """The ``param`` (or ``step``) statement that declares ``param``."""
    text = f"{keyword} {param.name} = {format_number(param.default)}"
    if param.learnable:
        text += " learnable"
    if param.interval is not None:
        low, high = (format_number(b) for b in param.interval)
        text += f" in ({low}, {high})"
    return text


def format_scheme(scheme: Scheme) -> str:
    """The scheme in the scheme language. Defaults (input and output are the first state, history
    copies ``x[n]``, other states start at 0) are left out, as a person would leave them out."""
    lines = [f"scheme {scheme.name}"]
    if scheme.doc:
        lines.append(f'"""{scheme.doc}"""')
    lines.append("state " + ", ".join(scheme.states))
    lines += [format_param(p, "step" if p.name == scheme.step != "h" else "param") for p in scheme.params]
    if scheme.functions:
        lines.append("function " + ", ".join(f.name for f in scheme.functions))
    if scheme.inputs != scheme.states[:1]:
        lines.append("input " + ", ".join(scheme.inputs))
    if scheme.outputs != scheme.states[:1]:
        lines.append("output " + ", ".join(scheme.outputs))
    for eq in scheme.init:
        state, offset = split_value(eq.target)
        default = sympy.Integer(0) if offset == 0 else value(state)
        if eq.expr != default:
            target = state if offset == 0 else eq.target.name
            lines.append(f"init {target} = {format_expr(eq.expr)}")
    lines += [format_equation(eq) for eq in scheme.steps]
    return "\n".join(lines) + "\n"
