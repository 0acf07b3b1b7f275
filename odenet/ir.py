"""The symbolic intermediate representation: one immutable :class:`Scheme` per discretization.

A scheme advances a state ``s[n] -> s[n+1]`` by a list of equations, in order::

    k1     = f(x[n])                           # a stage: a named intermediate value
    x[n+1] = x[n] + h/2*(k1 + f(x[n] + h*k1))  # an update of a state

Values of a state at a time step are sympy symbols named as written, ``x[n]``, ``x[n-1]``,
``x[n+1]`` (see :func:`value`); parameters are real symbols; sub-networks are undefined sympy
functions ``f(...)``. The object checks its invariants when built and fills the defaults of the
language (input and output are the first state; a state that is not an input starts at 0; history
starts as a copy, ``x[n-1] = x[n]``), so two schemes that mean the same step compare equal.
Everything else (history depth, explicitness, the dependency graph, LaTeX) is derived, never stored.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import networkx as nx
import sympy

from odenet.errors import SchemeValueError

__all__ = [
    "MAX_LAG",
    "RESERVED_NAMES",
    "SCALAR_FUNCTIONS",
    "Equation",
    "FunctionSymbol",
    "Param",
    "Scheme",
    "parse_value",
    "value",
]

MAX_LAG = 16  # x[n-16] is the oldest value a scheme may use

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_VALUE = re.compile(r"(?P<state>[A-Za-z][A-Za-z0-9_]*)\[n(?P<offset>[+-][0-9]+)?\]\Z")


def _sigmoid(x: sympy.Expr) -> sympy.Expr:
    return 1 / (1 + sympy.exp(-x))


# Scalar functions a scheme may apply to parameters and numbers (never to states: a nonlinearity of
# the state belongs in a function symbol, which becomes a sub-network).
SCALAR_FUNCTIONS: Mapping[str, object] = {
    "exp": sympy.exp,
    "log": sympy.log,
    "sqrt": sympy.sqrt,
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tanh": sympy.tanh,
    "sigmoid": _sigmoid,
}

_KEYWORDS = ("scheme", "state", "param", "function", "input", "output", "init", "learnable", "in")
_PYTHON_KEYWORDS = (
    "False None True and as assert async await break class continue def del elif else except "
    "finally for from global if import is lambda nonlocal not or pass raise return try while with "
    "yield"
).split()
# Names a user may not give to a state, parameter, function or stage: the language's keywords, the
# step index n, the scalar functions, `inf`, the symbols of the analysis (lambda, zeta) and Python's
# keywords (generated code uses the scheme's names).
RESERVED_NAMES = frozenset((*_KEYWORDS, "n", "inf", "zeta", *SCALAR_FUNCTIONS, *_PYTHON_KEYWORDS))


@functools.cache
def value(state: str, offset: int = 0) -> sympy.Symbol:
    """The symbol of ``state`` at step ``n + offset``: ``value("y", -1)`` is ``y[n-1]``."""
    suffix = "" if offset == 0 else f"{offset:+d}"
    return sympy.Symbol(f"{state}[n{suffix}]")


def parse_value(symbol: sympy.Basic) -> tuple[str, int] | None:
    """``(state, offset)`` for a symbol made by :func:`value`, else ``None``."""
    if not isinstance(symbol, sympy.Symbol):
        return None
    match = _VALUE.match(symbol.name)
    if match is None:
        return None
    return match["state"], int(match["offset"] or 0)


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
        _check_name(self.name, "parameter")
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
        _check_name(self.name, "function")
        if self.arity < 1:
            raise SchemeValueError(f"function {self.name}: needs at least one argument")

    @property
    def sympy_function(self) -> sympy.FunctionClass:
        return sympy.Function(self.name)


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
        from odenet.language.printer import format_expr

        return f"{self.target.name} = {format_expr(self.expr)}"


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise SchemeValueError(f"{what} name {name!r} is not an identifier")
    if name in RESERVED_NAMES:
        raise SchemeValueError(f"{what} name {name!r} is reserved")


def history_depths(states, steps) -> dict[str, int]:
    """For each state, the oldest lag the equations ``steps`` read (``x[n-2]`` gives 2)."""
    depth = {s: 0 for s in states}
    for eq in steps:
        for symbol in eq.expr.free_symbols:
            parsed = parse_value(symbol)
            if parsed and parsed[1] < 0:
                depth[parsed[0]] = max(depth[parsed[0]], -parsed[1])
    return depth


def function_calls(expr: sympy.Basic) -> list[sympy.Expr]:
    """Calls of function symbols in ``expr`` (undefined sympy functions), each once, in a stable
    order: inner calls before the calls that contain them."""
    calls = []
    for node in sympy.postorder_traversal(expr):
        if isinstance(node, sympy.core.function.AppliedUndef) and node not in calls:
            calls.append(node)
    return calls


@dataclass(frozen=True)
class Scheme:
    """One step of a discretization scheme, symbolically. Immutable; checks itself when built.

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

    # -- construction ---------------------------------------------------------------------------
    def __post_init__(self):
        for name in ("states", "steps", "params", "functions", "init", "inputs", "outputs"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_name(self.name, "scheme")
        if not self.states:
            raise SchemeValueError(f"scheme {self.name}: no state")
        if not self.inputs:
            object.__setattr__(self, "inputs", self.states[:1])
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
                _check_name(name, kind)
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
        known: set[sympy.Symbol] = set(params)
        updated: set[str] = set()
        for eq in self.steps:
            self._check_expr(eq.expr, known, functions, where=f"{eq.target.name} = ...")
            state = eq.state
            if state is None:
                known.add(eq.target)
                continue
            if parse_value(eq.target)[1] != 1 or state not in self.states:
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
            state, offset = parse_value(slot)
            default = sympy.Integer(0) if offset == 0 else value(state)
            exprs[slot] = explicit.get(slot, default)
            self._check_expr(
                exprs[slot], set(slots) | {p.symbol for p in self.params}, functions, f"init {slot}"
            )
            if any(parse_value(s)[1] > 0 for s in exprs[slot].free_symbols if parse_value(s)):
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
        """``x[n+1] - rhs`` for each updated state, in update order, with the stages substituted:
        the step as equations, for solving (the inverse) and expanding (the order)."""
        stages: dict[sympy.Symbol, sympy.Expr] = {}
        residuals = {}
        for eq in self.steps:
            rhs = eq.expr.xreplace(stages)
            if eq.is_stage:
                stages[eq.target] = rhs
            else:
                residuals[eq.state] = eq.target - rhs
        return residuals

    def check_param_names(self, names) -> None:
        """Raise SchemeValueError for the first name that is not a parameter of this scheme."""
        known = [p.name for p in self.params]
        for name in names:
            if name not in known:
                raise SchemeValueError(
                    f"scheme {self.name} has no parameter {name!r}: "
                    f"its parameters are {', '.join(known) or 'none'}"
                )

    @functools.cached_property
    def state_vector(self) -> tuple[sympy.Symbol, ...]:
        """All values one step carries: each state at n and its history, ``(x[n], x[n-1], v[n])``."""
        return tuple(value(s, -lag) for s in self.states for lag in range(self.history[s] + 1))

    @functools.cached_property
    def implicit_references(self) -> tuple[tuple[Equation, sympy.Symbol], ...]:
        """``(equation, x[n+1])`` wherever a new value is read before or in its own update."""
        updated: set[str] = set()
        found = []
        for eq in self.steps:
            for symbol in sorted(eq.expr.free_symbols, key=str):
                parsed = parse_value(symbol)
                if parsed and parsed[1] == 1 and parsed[0] not in updated:
                    found.append((eq, symbol))
            if eq.state is not None:
                updated.add(eq.state)
        return tuple(found)

    @property
    def is_explicit(self) -> bool:
        """True when every new value is computed from values known at that point of the step."""
        return not self.implicit_references

    def dependency_graph(self) -> nx.DiGraph:
        """One step's data flow: old values, stages, function calls and new values as nodes
        (attribute ``kind``: "old", "stage", "call", "new"), an edge from each value to what is
        computed from it. Parameters are left out. An implicit scheme shows as a cycle."""
        graph = nx.DiGraph()

        def node(symbol_or_call) -> str:
            label = _label(symbol_or_call)
            if label not in graph:
                if isinstance(symbol_or_call, sympy.core.function.AppliedUndef):
                    kind = "call"
                    graph.add_node(label, kind=kind, function=symbol_or_call.func.__name__)
                    add_inputs(label, symbol_or_call.args)
                else:
                    parsed = parse_value(symbol_or_call)
                    kind = "stage" if parsed is None else ("new" if parsed[1] == 1 else "old")
                    graph.add_node(label, kind=kind)
            return label

        def add_inputs(label: str, exprs: Iterable[sympy.Expr]) -> None:
            for source in _direct_inputs(exprs, params):
                graph.add_edge(node(source), label)

        params = {p.symbol for p in self.params}
        for eq in self.steps:
            add_inputs(node(eq.target), [eq.expr])
        return graph

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

    def to_text(self) -> str:
        """The scheme in the scheme language; parsing it gives an equal Scheme."""
        from odenet.language.printer import format_scheme

        return format_scheme(self)

    def __str__(self) -> str:
        return self.to_text()


def _label(item: sympy.Basic) -> str:
    from odenet.language.printer import format_expr

    return format_expr(item)


def _direct_inputs(exprs: Iterable[sympy.Expr], skip: set) -> list[sympy.Basic]:
    """Symbols and outermost function calls that ``exprs`` read directly (not through a call)."""
    found: list[sympy.Basic] = []
    stack = list(exprs)
    while stack:
        expr = stack.pop()
        if isinstance(expr, sympy.core.function.AppliedUndef) or isinstance(expr, sympy.Symbol):
            if expr not in skip and expr not in found:
                found.append(expr)
        else:
            stack.extend(expr.args)
    return sorted(found, key=_label)
