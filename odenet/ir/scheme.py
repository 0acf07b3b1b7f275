"""The symbolic intermediate representation: one immutable :class:`Scheme` per discretization.

A scheme advances a state ``s[n] -> s[n+1]`` by a list of equations, in order::

    k1     = f(x[n])                           # a stage: a named intermediate value
    x[n+1] = x[n] + h/2*(k1 + f(x[n] + h*k1))  # an update of a state

Values of a state at a time step are sympy symbols named as written, ``x[n]``, ``x[n-1]``,
``x[n+1]`` (see :func:`~odenet.ir.symbols.value`); parameters are real symbols; sub-networks are
undefined sympy functions ``f(...)``. The object checks its invariants when built and fills the
defaults of the language (input and output are the first state; a state that is not an input starts
at 0; history starts as a copy, ``x[n-1] = x[n]``), so two schemes that mean the same step compare
equal. Everything else (history depth, explicitness, the dependency graph, LaTeX) is derived, never
stored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import cast

import networkx as nx
import sympy

from odenet.errors import ConfigError, SchemeValueError
from odenet.ir.graph import dependency_graph
from odenet.ir.printing import format_equation, format_scheme
from odenet.ir.symbols import (
    MAX_LAG,
    check_name,
    function_calls,
    history_depths,
    parse_value,
    split_value,
    value,
)

__all__ = ["REPR_EQUATION", "Equation", "FunctionSymbol", "Param", "Scheme"]

REPR_EQUATION = 120  # the longest update a Scheme's repr shows whole (characters)


@dataclass(frozen=True)
class Param:
    """A scalar parameter: fixed (a buffer) or learnable (one value per layer), optionally kept in
    the open interval ``(low, high)``, whose ends may be ``-oo``/``oo``."""

    name: str
    default: sympy.Expr
    learnable: bool = False
    interval: tuple[sympy.Expr, sympy.Expr] | None = None

    def __post_init__(self):
        object.__setattr__(self, "default", sympy.sympify(self.default))
        if self.interval is not None:
            object.__setattr__(self, "interval", tuple(sympy.sympify(b) for b in self.interval))
        check_name(self.name, "parameter")
        if not (self.default.is_number and self.default.is_real and self.default.is_finite):
            raise SchemeValueError(f"parameter {self.name}: default {self.default} is not a real number")
        if self.interval is not None:
            if not self.learnable:
                raise SchemeValueError(f"parameter {self.name}: an interval needs 'learnable'")
            low, high = self.interval
            if not bool(low < high):
                raise SchemeValueError(f"parameter {self.name}: empty interval ({low}, {high})")
            if not bool(low < self.default < high):
                raise SchemeValueError(
                    f"parameter {self.name}: default {self.default} outside ({low}, {high})"
                )

    @property
    def symbol(self) -> sympy.Symbol:
        return sympy.Symbol(self.name, real=True)


@dataclass(frozen=True)
class FunctionSymbol:
    """A function symbol of the scheme (``f``, ``g``): a sub-network when compiled."""

    name: str
    arity: int = 1

    def __post_init__(self):
        check_name(self.name, "function")
        if self.arity < 1:
            raise SchemeValueError(f"function {self.name}: needs at least one argument")


@dataclass(frozen=True)
class Equation:
    """``target = expr``: a stage (target ``k1``), an update (``x[n+1]``) or an init (``x[n-1]``)."""

    target: sympy.Symbol
    expr: sympy.Expr

    @property
    def state(self) -> str | None:
        """The state this equation sets, or None for a stage."""
        parsed = parse_value(self.target)
        return parsed[0] if parsed else None

    @property
    def is_stage(self) -> bool:
        return parse_value(self.target) is None

    def __str__(self) -> str:
        return format_equation(self)


@dataclass(frozen=True, repr=False)
class Scheme:
    """One step of a discretization scheme, symbolically. Immutable; checks itself when built.
    ``repr`` is one short line (name, states, updates); ``str`` is the scheme in the language.

    Build one with :func:`odenet.parse` or :func:`odenet.load`; constructing it directly is fine
    too (defaults are filled in as the language fills them).
    """

    name: str
    states: tuple[str, ...]
    steps: tuple[Equation, ...]
    params: tuple[Param, ...] = ()
    functions: tuple[FunctionSymbol, ...] = ()
    init: tuple[Equation, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    doc: str = field(default="", compare=True)
    step: str = "h"  # the name of the step-size parameter (``step dt = 0.1``; h by default)

    # -- construction ---------------------------------------------------------------------------
    def __post_init__(self):
        for name in ("states", "steps", "params", "functions", "init", "inputs", "outputs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_name(self.name, "scheme")
        if not self.states:
            raise SchemeValueError(f"scheme {self.name}: no state")
        if not self.inputs:
            object.__setattr__(self, "inputs", self.states[:1])
        if self.step != "h" and self.step not in {p.name for p in self.params}:
            raise SchemeValueError(f"scheme {self.name}: the step {self.step} is not a parameter")
        if not self.outputs:
            object.__setattr__(self, "outputs", self.states[:1])
        self._check_names()
        self._check_steps()
        object.__setattr__(self, "init", self._complete_init())

    def _check_names(self) -> None:
        seen: dict[str, str] = {}
        stages = [eq.target.name for eq in self.steps if eq.is_stage]
        for kind, names in (
            ("state", self.states),
            ("parameter", [p.name for p in self.params]),
            ("function", [f.name for f in self.functions]),
            ("stage", stages),
        ):
            for name in names:
                check_name(name, kind)
                if name in seen:
                    raise SchemeValueError(
                        f"scheme {self.name}: {name!r} is both a {seen[name]} and a {kind}"
                    )
                seen[name] = kind
        for kind, names in (("input", self.inputs), ("output", self.outputs)):
            if len(set(names)) != len(names):
                raise SchemeValueError(f"scheme {self.name}: {kind} lists a state twice")
            for name in names:
                if name not in self.states:
                    raise SchemeValueError(f"scheme {self.name}: {kind} {name!r} is not a state")

    def _check_steps(self) -> None:
        params = {p.symbol for p in self.params}
        functions = {f.name: f.arity for f in self.functions}
        # Stages may be read anywhere in the step: before their own line, or in it, they make the
        # step implicit (the coupled stages of Gauss-Legendre), as a new value read early does.
        stages = [eq.target for eq in self.steps if eq.is_stage]
        if len(set(stages)) != len(stages):
            raise SchemeValueError(f"scheme {self.name}: a stage is defined twice")
        known: set[sympy.Symbol] = set(params) | set(stages)
        updated: set[str] = set()
        for eq in self.steps:
            self._check_expr(eq.expr, known, functions, where=f"{eq.target.name} = ...")
            state = eq.state
            if state is None:
                continue
            if split_value(eq.target)[1] != 1 or state not in self.states:
                raise SchemeValueError(
                    f"scheme {self.name}: {eq.target.name} is neither a stage nor an update"
                )
            if state in updated:
                raise SchemeValueError(f"scheme {self.name}: state {state} is updated twice")
            updated.add(state)
        missing = [s for s in self.states if s not in updated]
        if missing:
            raise SchemeValueError(f"scheme {self.name}: state {missing[0]} is never updated")
        used = {call.func.__name__ for eq in self.steps for call in function_calls(eq.expr)}
        unused = [f for f in functions if f not in used]
        if unused:
            raise SchemeValueError(f"scheme {self.name}: function {unused[0]} is never called")

    def _check_expr(self, expr, known, functions, where) -> None:
        for symbol in expr.free_symbols:
            if symbol in known:
                continue
            parsed = parse_value(symbol)
            if parsed is None or parsed[0] not in self.states:
                raise SchemeValueError(f"scheme {self.name}: unknown symbol {symbol} in {where}")
            if not -MAX_LAG <= parsed[1] <= 1:
                raise SchemeValueError(f"scheme {self.name}: {symbol} is out of range in {where}")
        for call in function_calls(expr):
            name = call.func.__name__
            if name not in functions:
                raise SchemeValueError(f"scheme {self.name}: undeclared function {name} in {where}")
            if len(call.args) != functions[name]:
                raise SchemeValueError(
                    f"scheme {self.name}: {name} takes {functions[name]} argument(s) in {where}"
                )
        if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo, sympy.I):
            raise SchemeValueError(f"scheme {self.name}: {where} is not a finite real expression")

    def _complete_init(self) -> tuple[Equation, ...]:
        """Explicit inits plus the defaults, in an order in which each can be evaluated."""
        history = self.history
        slots = [value(s, -lag) for s in self.states for lag in range(history[s] + 1)]
        given = {value(s) for s in self.inputs}
        explicit: dict[sympy.Symbol, sympy.Expr] = {}
        for eq in self.init:
            if eq.target in explicit:
                raise SchemeValueError(f"scheme {self.name}: init of {eq.target} given twice")
            if eq.target in given:
                raise SchemeValueError(f"scheme {self.name}: {eq.target} is an input; it has no init")
            if eq.target not in slots:
                raise SchemeValueError(f"scheme {self.name}: init of {eq.target}, which the step never uses")
            explicit[eq.target] = eq.expr
        functions = {f.name: f.arity for f in self.functions}
        exprs: dict[sympy.Symbol, sympy.Expr] = {}
        for slot in slots:
            if slot in given:
                continue
            state, offset = split_value(slot)
            default = sympy.Integer(0) if offset == 0 else value(state)
            exprs[slot] = explicit.get(slot, default)
            self._check_expr(
                exprs[slot], set(slots) | {p.symbol for p in self.params}, functions, f"init {slot}"
            )
            if any(p[1] > 0 for p in map(parse_value, exprs[slot].free_symbols) if p is not None):
                raise SchemeValueError(f"scheme {self.name}: init {slot} uses a value of step n+1")
        # Order: each init after the inits it reads; ties in the order of the slots.
        graph = nx.DiGraph()
        graph.add_nodes_from(exprs)
        for slot, expr in exprs.items():
            graph.add_edges_from((s, slot) for s in expr.free_symbols if s in exprs)
        rank = {slot: i for i, slot in enumerate(slots)}
        try:
            order = list(nx.lexicographical_topological_sort(graph, key=rank.__getitem__))
        except nx.NetworkXUnfeasible:
            cycle = [a for a, _ in nx.find_cycle(graph)]
            names = " -> ".join(map(str, [*cycle, cycle[0]]))
            defaulted = [slot for slot in cycle if slot not in explicit]
            if defaulted:
                slot = defaulted[0]
                raise SchemeValueError(
                    f"scheme {self.name}: {slot} has no init and its default ({slot} = {exprs[slot]}) "
                    f"cannot be used: it closes the cycle {names}; give {slot} an init"
                ) from None
            raise SchemeValueError(
                f"scheme {self.name}: the inits depend on each other in a cycle: {names}"
            ) from None
        return tuple(Equation(slot, exprs[slot]) for slot in order)

    # -- derived facts --------------------------------------------------------------------------
    @property
    def stages(self) -> tuple[Equation, ...]:
        return tuple(eq for eq in self.steps if eq.is_stage)

    @property
    def updates(self) -> tuple[Equation, ...]:
        return tuple(eq for eq in self.steps if not eq.is_stage)

    @property
    def step_param(self) -> Param | None:
        """The step-size parameter (``h``, or the one declared with ``step``), or None."""
        try:
            return self.param(self.step)
        except KeyError:
            return None

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @functools.cached_property
    def history(self) -> dict[str, int]:
        """How many past values of each state one step reads: 1 when ``x[n-1]`` is the oldest."""
        return history_depths(self.states, self.steps)

    @functools.cached_property
    def update_residuals(self) -> dict[str, sympy.Expr]:
        """``x[n+1] - rhs`` for each updated state, in update order, with the stages substituted
        (coupled stages, see :attr:`coupled_stages`, stay symbols): the step as equations, for
        solving (the inverse) and expanding (the order)."""
        return {eq.state: r for eq, r in self._residuals if eq.state is not None}

    @functools.cached_property
    def coupled_residuals(self) -> dict[sympy.Symbol, sympy.Expr]:
        """``k - rhs`` for each coupled stage, the other stages substituted: with
        :attr:`update_residuals`, the step's implicit system."""
        return {eq.target: r for eq, r in self._residuals if eq.target in self.coupled_stages}

    @functools.cached_property
    def _residuals(self) -> tuple[tuple[Equation, sympy.Expr], ...]:
        stages: dict[sympy.Symbol, sympy.Expr] = {}
        out = []
        for eq in self.steps:
            rhs = cast(sympy.Expr, eq.expr.xreplace(stages))
            if eq.is_stage and eq.target not in self.coupled_stages:
                stages[eq.target] = rhs
            else:
                out.append((eq, eq.target - rhs))
        return tuple(out)

    def check_param_names(self, names) -> None:
        """Raise :class:`~odenet.errors.ConfigError` for the first of ``names`` (parameter values
        given to analyze or compile) that is not a parameter of this scheme."""
        known = [p.name for p in self.params]
        for name in names:
            if name not in known:
                raise ConfigError(
                    f"scheme {self.name} has no parameter {name!r}: "
                    f"its parameters are {', '.join(known) or 'none'}"
                )

    @functools.cached_property
    def state_vector(self) -> tuple[sympy.Symbol, ...]:
        """All values one step carries: each state at n and its history, ``(x[n], x[n-1], v[n])``."""
        return tuple(value(s, -lag) for s in self.states for lag in range(self.history[s] + 1))

    @functools.cached_property
    def implicit_references(self) -> tuple[tuple[Equation, sympy.Symbol], ...]:
        """``(equation, x[n+1])`` wherever a new value is read before or in its own update, and
        ``(equation, k2)`` wherever a stage is read before or in its own line."""
        stages = {eq.target for eq in self.steps if eq.is_stage}
        updated: set[str] = set()
        computed: set[sympy.Symbol] = set()
        found = []
        for eq in self.steps:
            for symbol in sorted(eq.expr.free_symbols, key=str):
                parsed = parse_value(symbol)
                if parsed and parsed[1] == 1 and parsed[0] not in updated:
                    found.append((eq, symbol))
                elif symbol in stages and symbol not in computed:
                    found.append((eq, symbol))
            if eq.state is not None:
                updated.add(eq.state)
            else:
                computed.add(eq.target)
        return tuple(found)

    @functools.cached_property
    def coupled_stages(self) -> frozenset[sympy.Symbol]:
        """The stages read before or in their own line: unknowns of the step's implicit system."""
        return frozenset(s for _, s in self.implicit_references if parse_value(s) is None)

    @property
    def implicit_unknowns(self) -> tuple[sympy.Symbol, ...]:
        """The unknowns of an implicit step, in the order its fixed-point map takes and returns
        them: the coupled stages in the order of their lines, then every state's new value."""
        stages = tuple(eq.target for eq in self.steps if eq.target in self.coupled_stages)
        return stages + tuple(value(s, 1) for s in self.states)

    @property
    def is_explicit(self) -> bool:
        """True when every new value is computed from values known at that point of the step."""
        return not self.implicit_references

    def dependency_graph(self) -> nx.DiGraph:
        """One step's data flow (see :func:`odenet.ir.graph.dependency_graph`)."""
        return dependency_graph(self)

    # -- presentation ---------------------------------------------------------------------------
    def latex_names(self) -> dict[sympy.Symbol, str]:
        """LaTeX for every symbol of the scheme: ``y[n-1]`` becomes ``y_{n-1}``."""
        names = {}
        for state in self.states:
            base = sympy.latex(sympy.Symbol(state))
            if "_" in base or "^" in base:
                base = "{" + base + "}"
            for offset in range(-MAX_LAG, 2):
                index = "n" if offset == 0 else f"n{offset:+d}"
                names[value(state, offset)] = f"{base}_{{{index}}}"
        return names

    def latex(self, expr: sympy.Basic) -> str:
        return sympy.latex(expr, symbol_names=self.latex_names())

    def latex_equations(self) -> list[str]:
        """Each equation of the step as LaTeX, ``y_{n+1} = 2 y_{n} - ...``."""
        return [f"{self.latex(eq.target)} = {self.latex(eq.expr)}" for eq in self.steps]

    def __repr__(self) -> str:
        """``Scheme(leapfrog: state y; y[n+1] = ...)``: the name, the states and each update (stages
        left out), an update longer than :data:`REPR_EQUATION` characters cut with ``...``."""
        updates = [str(eq) for eq in self.updates]
        shown = [u if len(u) <= REPR_EQUATION else u[: REPR_EQUATION - 3] + "..." for u in updates]
        states = f"state{'s' if len(self.states) > 1 else ''} {', '.join(self.states)}"
        return f"Scheme({self.name}: {'; '.join([states, *shown])})"

    def _repr_latex_(self) -> str:
        """A notebook's display: the step's equations (:meth:`latex_equations`), aligned at ``=``."""
        rows = " \\\\ ".join(eq.replace(" = ", " &= ", 1) for eq in self.latex_equations())
        return f"$$\\begin{{aligned}} {rows} \\end{{aligned}}$$"

    def __str__(self) -> str:
        """The scheme in the scheme language (:func:`~odenet.ir.printing.format_scheme`)."""
        return format_scheme(self)
