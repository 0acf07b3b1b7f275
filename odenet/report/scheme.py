"""A scheme presented for reading: what ``odenet show`` prints."""

from __future__ import annotations

import networkx as nx

from odenet.analysis import structure_of
from odenet.ir import Scheme
from odenet.ir.printing import format_expr, format_number
from odenet.library import library_names, load
from odenet.training.defaults import MEMORY_SAVING, scheme_defaults
from odenet.training.settings import DATA_DEFAULTS

__all__ = ["show_text"]


def show_text(scheme: Scheme) -> str:
    """What ``odenet show`` prints: the equations and the facts a reader needs to follow them."""
    out = [f"scheme {scheme.name}"]
    if scheme.doc:
        out += ["  " + line for line in scheme.doc.splitlines()]
    kind = "explicit" if scheme.is_explicit else "implicit"
    out += ["", f"step ({kind}):"]
    out += [f"  {eq}" for eq in scheme.steps]
    if not scheme.is_explicit:
        for eq, symbol in scheme.implicit_references:
            out.append(
                f"  implicit: the equation of {eq.target.name} reads {symbol}, not known yet at that point"
            )
    out += ["", "states:"]
    width = max(map(len, scheme.states))
    for state in scheme.states:
        depth = scheme.history[state]
        reads = ", ".join(f"{state}[n{'' if j == 0 else f'-{j}'}]" for j in range(depth + 1))
        roles = [r for r, names in (("input", scheme.inputs), ("output", scheme.outputs)) if state in names]
        out.append(
            f"  {state:<{width}}  history {depth} (reads {reads})"
            + (f"  {', '.join(roles)}" if roles else "")
        )
    if scheme.params:
        out += ["", "params:"]
        for p in scheme.params:
            how = "learnable, one value per layer" if p.learnable else "fixed"
            if p.interval is not None:
                low, high = (format_number(b) for b in p.interval)
                how += f", kept in ({low}, {high})"
            out.append(f"  {p.name} = {format_number(p.default)}  ({how})")
    out += ["", "functions (one sub-network per layer each):"]
    for f in scheme.functions:
        out.append(f"  {f.name}  ({f.arity} argument{'s' if f.arity > 1 else ''})")
    if scheme.init:
        out += [
            "",
            "init (start values; the input sets " + ", ".join(f"{s}[n]" for s in scheme.inputs) + "):",
        ]
        out += [f"  {eq.target.name} = {format_expr(eq.expr)}" for eq in scheme.init]
    out += ["", "dependency graph (each value <- what it is computed from):"]
    graph = scheme.dependency_graph()
    order = list(nx.topological_sort(graph)) if nx.is_directed_acyclic_graph(graph) else list(graph)
    computed = [node for node in order if graph.in_degree(node)]
    width = max(map(len, computed)) if computed else 0
    for node in computed:
        sources = ", ".join(sorted(graph.predecessors(node)))
        out.append(f"  {node:<{width}}  <- {sources}")
    out += ["", "structure (the proofs: odenet analyze):"]
    st = structure_of(scheme)
    for prop in ("symplectic", "symmetric"):
        answer = st.answer(prop)
        out.append(f"  {prop:<10}  {'n/a' if answer == 'does not apply' else answer}: {st.why(prop)}")
    out += ["", "training defaults (odenet train):"]
    if scheme.name in MEMORY_SAVING and scheme.name in library_names() and load(scheme.name) == scheme:
        for data in ("mnist1d", "digits"):
            chosen = scheme_defaults(scheme, data, DATA_DEFAULTS[data].layout)
            step = chosen.step_value(scheme)
            origin = chosen.origin(data)
            if chosen.tuned_on is not None:
                origin += ": docs/experiments.md (o)"
            out.append(
                f"  --data {data}: --family {chosen.family} --lr {chosen.lr:g}"
                + ("" if step is None else f" --step {step:g}")
                + f"; memory-saving mode {chosen.memory_saving} ({origin})"
            )
    else:
        out.append(f"  derived from its analysis: odenet train {scheme.name}.scheme --explain-defaults")
    return "\n".join(out)
