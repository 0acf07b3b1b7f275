"""One step's data flow as a graph: which values, stages and calls each value is computed from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import networkx as nx
import sympy
from sympy.core.function import AppliedUndef

from odenet.ir.printing import format_expr
from odenet.ir.symbols import parse_value

if TYPE_CHECKING:
    from odenet.ir.scheme import Scheme

__all__ = ["dependency_graph"]


def dependency_graph(scheme: Scheme) -> nx.DiGraph:
    """One step's data flow: old values, stages, function calls and new values as nodes
    (attribute ``kind``: "old", "stage", "call", "new"), an edge from each value to what is
    computed from it. Parameters are left out. An implicit scheme shows as a cycle."""
    graph = nx.DiGraph()
    params = {p.symbol for p in scheme.params}

    def node(symbol_or_call: sympy.Basic) -> str:
        label = format_expr(symbol_or_call)
        if label not in graph:
            if isinstance(symbol_or_call, AppliedUndef):
                graph.add_node(label, kind="call", function=symbol_or_call.func.__name__)
                add_inputs(label, symbol_or_call.args)
            else:
                parsed = parse_value(symbol_or_call)
                kind = "stage" if parsed is None else ("new" if parsed[1] == 1 else "old")
                graph.add_node(label, kind=kind)
        return label

    def add_inputs(label: str, exprs: Iterable[sympy.Basic]) -> None:
        for source in _direct_inputs(exprs, params):
            graph.add_edge(node(source), label)

    for eq in scheme.steps:
        add_inputs(node(eq.target), [eq.expr])
    return graph


def _direct_inputs(exprs: Iterable[sympy.Basic], skip: set) -> list[sympy.Basic]:
    """Symbols and outermost function calls that ``exprs`` read directly (not through a call)."""
    found: list[sympy.Basic] = []
    stack = list(exprs)
    while stack:
        expr = stack.pop()
        if isinstance(expr, (AppliedUndef, sympy.Symbol)):
            if expr not in skip and expr not in found:
                found.append(expr)
        else:
            stack.extend(expr.args)
    return sorted(found, key=format_expr)
