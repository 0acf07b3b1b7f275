"""Python source for one step of a scheme, printed by sympy's ``TorchPrinter`` after ``cse``.

The generated function reads like the scheme::

    def step(state, p, call):
        # y[n+1] = -h**2*f(y[n]) - y[n-1] + 2*y[n]
        y_n, y_nm1 = state
        h = p["h"]
        c0 = call(0, "f", y_n)
        y_np1 = -h**2*c0 - y_nm1 + 2*y_n
        return (y_np1, y_n)

``state`` holds the state vector (each state at n, then its history), ``p`` the parameter values of
this layer, and ``call(key, name, *args)`` evaluates function symbol ``name``; ``key`` numbers the
distinct calls of the forward step, so that the reversible backward pass can share one evaluation
between the inverse and the re-run (the inverse uses the forward step's keys for the same calls).

Nothing of the user's text is executed: the source is made of identifiers derived from validated
names and of sympy's printing of the IR (the fuzz tests parse and compile with ``eval`` and
``exec`` forbidden). This module does not import torch; :func:`compile_source` needs it only in
the namespace it is given.
"""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import hashlib
import linecache
import os
import tempfile
import weakref
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import NamedTuple

import sympy
from sympy.printing.precedence import precedence
from sympy.printing.pytorch import TorchPrinter

from odenet.analysis.fields import is_zero
from odenet.ir import Scheme, format_expr, function_calls, parse_value, value

__all__ = [
    "EvaluationPoints",
    "StepCode",
    "called_keys",
    "compile_source",
    "evaluation_points",
    "generate_implicit",
    "generate_init",
    "generate_step",
    "generate_vjp",
    "generated_folder",
    "implicit_unknowns",
    "interleaved_vjp",
    "python_name",
    "release_dead",
]


def python_name(symbol: sympy.Symbol) -> str:
    """``y[n]`` -> ``y_n``, ``y[n-1]`` -> ``y_nm1``, ``y[n+1]`` -> ``y_np1``; other names unchanged."""
    parsed = parse_value(symbol)
    if parsed is None:
        return symbol.name
    state, offset = parsed
    suffix = "n" if offset == 0 else (f"np{offset}" if offset > 0 else f"nm{-offset}")
    return f"{state}_{suffix}"


def _constants_as_floats(expr: sympy.Expr) -> sympy.Expr:
    """Irrational constants (``sqrt(3)/6``, ``pi``, ``exp(1)``) evaluated now, to 17 digits: the
    generated code does arithmetic on tensors and Python floats, never ``torch.sqrt`` of a number."""
    return expr.replace(lambda e: e.is_number and not e.is_Rational, lambda e: e.evalf(17))


class _StepPrinter(TorchPrinter):
    """TorchPrinter with the scheme's symbols renamed and function symbols printed as ``call``s.

    A product of scalars (numbers and the scheme's parameters, 0-dimensional tensors) and tensors is
    printed with the scalars first, ``-h**2*c0``: Python, multiplying from the left, computes the
    scalar factor on 0-dimensional tensors and touches the whole tensor once, where sympy's order
    ``-c0*h**2`` touches it twice (negate, then multiply)."""

    def __init__(self, names: dict[sympy.Basic, str], scalars: frozenset = frozenset()):
        super().__init__({"strict": False})
        self.names = names
        self.scalars = scalars

    def linear_terms(self, expr) -> list[str]:
        """``expr`` as printed arguments ``t0, s0, t1, s1, ...`` of ``linear_combination`` (a term
        without a tensor factor is its own tensor, with coefficient 1)."""
        printed = []
        for term in sympy.Add.make_args(expr):
            factors = sympy.Mul.make_args(term)
            scalar = [a for a in factors if a.free_symbols <= self.scalars]
            tensor = [a for a in factors if not a.free_symbols <= self.scalars]
            if tensor:
                printed += [self._print(sympy.Mul(*tensor)), self._print(sympy.Mul(*scalar))]
            else:
                printed += [self._print(term), "1"]
        return printed

    def _print_Add(self, expr, order=None):
        """A sum of at least two terms, each a scalar factor times a tensor factor, is printed as
        ``linear_combination(t0, s0, t1, s1, ...)`` (one pass over memory per term; see
        ``odenet.nn.block.linear_combination``); any other sum as sympy prints it."""
        terms = []
        for term in sympy.Add.make_args(expr):
            factors = sympy.Mul.make_args(term)
            scalar = [a for a in factors if a.free_symbols <= self.scalars]
            tensor = [a for a in factors if not a.free_symbols <= self.scalars]
            if not tensor:
                return super()._print_Add(expr, order)
            terms.append((sympy.Mul(*scalar), sympy.Mul(*tensor)))
        if len(terms) < 2:
            return super()._print_Add(expr, order)
        printed = []
        for scalar, tensor in terms:
            printed += [self._print(tensor), self._print(scalar)]
        return f"linear_combination({', '.join(printed)})"

    def _print_Mul(self, expr):
        scalar = [a for a in expr.args if a.free_symbols <= self.scalars]
        tensor = [a for a in expr.args if not a.free_symbols <= self.scalars]
        if not tensor or all(a.is_number for a in scalar) or not scalar:
            return super()._print_Mul(expr)
        level = precedence(expr)
        factors = [sympy.Mul(*scalar), *tensor]
        return "*".join(self.parenthesize(a, level, strict=False) for a in factors)

    def doprint(self, expr, *args, **kwargs):
        return super().doprint(_constants_as_floats(sympy.sympify(expr)), *args, **kwargs)

    def _print_Symbol(self, expr):
        return self.names.get(expr, expr.name)

    def _print_Dummy(self, expr):
        return self.names.get(expr, expr.name)

    def _print_Pow(self, expr, rational=False):
        # Python's ** rather than torch.pow: a stage may hold a plain number (k = 16), and
        # torch.pow refuses two numbers; ** works on numbers and tensors alike.
        level = precedence(expr)
        base = self.parenthesize(expr.base, level, strict=True)
        exponent = self.parenthesize(expr.exp, level, strict=True)
        return f"{base}**{exponent}"


@dataclass(frozen=True, repr=False)
class StepCode:
    """Generated source of one step and what it needs to be called. ``repr`` is one line (the
    function, its inputs, outputs and calls counted); ``str`` is the source."""

    source: str
    function_name: str
    inputs: tuple[sympy.Symbol, ...]  # the state vector it reads, in order
    outputs: tuple[sympy.Expr, ...]  # what it returns, in order
    calls: tuple[sympy.Expr, ...]  # the forward calls by key (inlined canonical form)
    keys: tuple[int, ...] = ()  # the keys of ``calls`` where they are not 0, 1, ... (given call_keys)
    # the keys of the calls whose values enter the new state's arithmetic (outside another call's
    # arguments), which must be shaped like the state; None where not derived (check every call)
    shaped: frozenset[int] | None = None

    def __repr__(self) -> str:
        lines = len(self.source.splitlines())
        return (
            f"StepCode({self.function_name}: {len(self.inputs)} inputs, {len(self.outputs)} outputs, "
            f"{len(self.calls)} calls; {lines} lines of source)"
        )

    def __str__(self) -> str:
        return self.source


CONSTANT = sympy.Symbol("__constant__")  # stands for a constant new value, printed as torch.full_like


class Assign(NamedTuple):
    """A line of the step: ``target = expr`` (calls replaced by their symbols)."""

    target: sympy.Symbol
    expr: sympy.Expr

    def reads(self) -> set:
        return self.expr.free_symbols


class Call(NamedTuple):
    """An evaluation of the step: ``symbol = call(key, name, *arguments)``."""

    symbol: sympy.Dummy
    key: int
    name: str
    arguments: tuple

    def reads(self) -> set:
        return set().union(*(a.free_symbols for a in self.arguments))


class Grad(NamedTuple):
    """A line of the backward walk: ``variable`` = the sum of ``parts``, the gradient of ``source``."""

    variable: sympy.Dummy
    source: sympy.Basic
    parts: list


class Pull(NamedTuple):
    """A call's vector-Jacobian product: ``pulled`` (its arguments' gradients) = pull(key, gradient)."""

    key: int
    gradient: sympy.Dummy
    pulled: list


class _Emitter:
    """Writes the body of a generated function: names, calls, cse temporaries and assignments."""

    def __init__(self, scheme: Scheme, call_keys, translate, reuse_sums: bool = False):
        self.call_keys = dict(call_keys or {})
        # an explicit step's values have one meaning each, so an argument equal to a sum computed
        # on an earlier line can read it by name (an implicit step's names change from guess to
        # value at their own line, so it may not)
        self.reuse_sums = reuse_sums
        self.fresh = count(max(self.call_keys.values(), default=-1) + 1)
        self.translate = translate or {}
        # the generated functions' own names: arguments, and what their namespace provides
        self.used = {
            "state",
            "inputs",
            "p",
            "call",
            "torch",
            "grads",
            "pull",
            "linear_combination",
            "accumulate",
            "guess",
        }
        self.names: dict[sympy.Basic, str] = {}
        self.printer = _StepPrinter(self.names, frozenset(p.symbol for p in scheme.params))
        self.lines: list[str] = []
        self.stages: dict[sympy.Symbol, sympy.Expr] = {}
        self.canonical_calls: dict[int, sympy.Expr] = {}
        self.call_symbols: dict[sympy.Expr, sympy.Dummy] = {}
        self.evaluated: dict[int, sympy.Dummy] = {}  # key -> the variable of its evaluation
        self.computed: dict[sympy.Expr, sympy.Symbol] = {}  # sums assigned so far -> their target
        self.temporaries = (sympy.Symbol(f"t{i}") for i in count())
        # the step as a list of nodes, for the vector-Jacobian product: Call and Assign records,
        # calls replaced by their symbols
        self.nodes: list[Assign | Call] = []
        for p in scheme.params:
            self.name_for(p.symbol, p.name)

    def name_for(self, symbol: sympy.Basic, wanted: str) -> str:
        candidate, k = wanted, 1
        while candidate in self.used:
            candidate, k = f"{wanted}_{k}", k + 1
        self.used.add(candidate)
        self.names[symbol] = candidate
        return candidate

    def unpack(self, symbols, source: str) -> None:
        names = [self.name_for(s, python_name(s)) for s in symbols]
        self.lines.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = {source}")

    def equation(self, target: sympy.Symbol, expr: sympy.Expr, is_stage: bool) -> None:
        # Calls, innermost first, each once: c<key> = call(key, "f", argument). They are replaced by
        # their variables before cse, which would otherwise rewrite the arguments inside them.
        for call in function_calls(expr):
            if call in self.call_symbols:
                continue
            canonical = call.xreplace(self.stages).xreplace(self.translate)
            key = self.call_keys.get(canonical)
            if key is None:
                key = self.call_keys[canonical] = next(self.fresh)
            if key in self.evaluated:  # the same point spelled another way: evaluated once
                self.call_symbols[call] = self.evaluated[key]
                continue
            self.canonical_calls[key] = canonical
            # an argument that is a value computed on an earlier line is read by its name
            plain_args = tuple(a.xreplace(self.call_symbols).xreplace(self.computed) for a in call.args)
            arguments = ", ".join(self.printer.doprint(a) for a in plain_args)
            symbol = sympy.Dummy(f"c{key}")
            variable = self.name_for(symbol, f"c{key}")
            self.call_symbols[call] = self.evaluated[key] = symbol
            self.nodes.append(Call(symbol, key, call.func.__name__, plain_args))
            self.lines.append(f'    {variable} = call({key}, "{call.func.__name__}", {arguments})')
        plain = expr.xreplace(self.call_symbols)
        self.nodes.append(Assign(target, plain))
        replacements, (reduced,) = sympy.cse([plain], symbols=self.temporaries, optimizations="basic")
        for temporary, sub in replacements:
            self.lines.append(f"    {self.name_for(temporary, temporary.name)} = {self.printer.doprint(sub)}")
        # printed before the target is named: an implicit step's unknown read on its own right-hand
        # side (a fixed-point inverse's v[n+1] = v[n+1] + ...) is its guess, not the value being made
        printed = self.printer.doprint(reduced)
        name = self.name_for(target, python_name(target))
        self.lines.append(f"    {name} = {printed}")
        if self.reuse_sums and len(sympy.Add.make_args(plain)) > 1:
            self.computed.setdefault(plain, target)
        if is_stage:
            self.stages[target] = expr.xreplace(self.stages)

    def steps(self, scheme: Scheme) -> None:
        """The step's equations in order (after ``unpack`` of the state vector)."""
        first = self.names[scheme.state_vector[0]]
        for eq in scheme.steps:
            if eq.expr.is_number and not eq.is_stage:  # a constant new value: shaped like the state
                self.names[CONSTANT] = f"torch.full_like({first}, {float(eq.expr)!r})"
                self.equation(eq.target, CONSTANT, False)
            else:
                self.equation(eq.target, eq.expr, eq.is_stage)

    def read_params(self, scheme: Scheme) -> None:
        self.lines += [f'    {self.names[p.symbol]} = p["{p.name}"]' for p in scheme.params]

    def shaped(self, targets) -> frozenset[int]:
        """The keys of the calls whose values must be shaped like the state: those that reach
        ``targets`` through arithmetic, and those added to a state-shaped value inside another
        call's argument (``g(x[n] + k)``); a value read only whole, as another call's argument (an
        encoder ``k = f(x)`` read by ``g(k)``), may change shape, and a call of numbers only
        (``f(2)``) is a constant of the batch, which broadcasts."""
        params = set(self.printer.scalars)
        state_like = {s for node in self.nodes for s in node.reads() if parse_value(s)}
        for node in self.nodes:  # values made by adding to the state are state-shaped too
            if isinstance(node, Assign) and node.expr.free_symbols & state_like:
                state_like.add(node.target)
        reach = set(targets)
        for node in self.nodes:
            if not isinstance(node, Call):
                continue
            for argument in node.arguments:
                if not argument.is_Symbol and argument.free_symbols & state_like:
                    reach |= argument.free_symbols - params
        for node in reversed(self.nodes):
            if isinstance(node, Assign) and node.target in reach:
                reach |= node.expr.free_symbols
        return frozenset(
            node.key
            for node in self.nodes
            if isinstance(node, Call)
            and node.symbol in reach
            and any(parse_value(s) for s in self.canonical_calls[node.key].free_symbols)
        )

    def returns(self, symbols) -> None:
        self.lines.append(f"    return ({', '.join(self.names[s] for s in symbols)},)")


class EvaluationPoints:
    """Where one step evaluates its functions, each point once.

    Every value of the step is written in one basis: the step's old state vector and a symbol
    ``C_k`` per point (a call's value). Point ``k`` is a function name and its arguments in that
    basis; two calls are one point when their arguments are equal as values, however they are
    spelled (``f(s)`` with a stage ``s = 2*x[n]`` and ``f(2*x[n])``; an inverse's ``g(v[n+1] -
    h/2*f(x[n+1]))``, which is the forward's ``g(vh)`` once ``v[n+1] = vh + h/2*f(x[n+1])`` is put
    in). ``keys`` maps the step's calls (stages inlined, the form :func:`generate_step` keys them
    by) to their points; :meth:`match` keys the calls of another step on the same values, an
    inverse's, so that the reversible backward pass evaluates each point once (it keeps the
    inverse's evaluations for the vector-Jacobian product)."""

    def __init__(self, scheme: Scheme):
        self.names: list[str] = []
        self.arguments: list[tuple[sympy.Expr, ...]] = []
        self.symbols: list[sympy.Dummy] = []
        self._values: dict[sympy.Symbol, sympy.Expr] = {}  # stages and new values in the basis
        self._memo: dict[sympy.Expr, int] = {}
        self.keys: dict[sympy.Expr, int] = {}
        stages: dict[sympy.Symbol, sympy.Expr] = {}
        for eq in scheme.steps:
            for call in function_calls(eq.expr):
                self.keys.setdefault(call.xreplace(stages), self._key(call))
            self._values[eq.target] = self._express(eq.expr)
            if eq.is_stage:
                stages[eq.target] = eq.expr.xreplace(stages)
        self.count = len(self.names)

    def _express(self, expr: sympy.Expr) -> sympy.Expr:
        """``expr`` (old and new values, stages, calls) in the basis."""
        symbols = {call: self.symbols[self._key(call)] for call in function_calls(expr)}
        return sympy.expand(expr.xreplace(symbols).xreplace(self._values))

    def _key(self, call: sympy.Expr) -> int:
        found = self._memo.get(call)
        if found is not None:
            return found
        name = call.func.__name__
        arguments = tuple(self._express(a) for a in call.args)
        k = next((k for k in range(len(self.names)) if self._at(k, name, arguments)), None)
        if k is None:
            k = len(self.names)
            self.names.append(name)
            self.arguments.append(arguments)
            self.symbols.append(sympy.Dummy(f"C{k}"))
        self._memo[call] = k
        return k

    def _at(self, k: int, name: str, arguments: tuple[sympy.Expr, ...]) -> bool:
        """Whether point ``k`` is ``name`` at ``arguments``."""
        known = self.arguments[k]
        return (
            self.names[k] == name
            and len(known) == len(arguments)
            and all(_same_value(a, b) for a, b in zip(arguments, known, strict=True))
        )

    def match(self, calls) -> dict[sympy.Expr, int]:
        """The keys of another step's calls, given in this step's symbols (stages inlined, inner
        calls first; an inverse's old values are this step's old values): the calls at one of
        this step's points, by key; others are left out (they get keys of their own)."""
        other = copy.copy(self)  # the other step's own points are added to a copy
        other.names, other.arguments, other.symbols = [*self.names], [*self.arguments], [*self.symbols]
        other._memo = dict(self._memo)
        found = {call: other._key(call) for call in calls}
        return {call: k for call, k in found.items() if k < self.count}


@functools.lru_cache(maxsize=128)
def evaluation_points(scheme: Scheme) -> EvaluationPoints:
    """The evaluation points of an explicit step (cached: blocks and generators share them)."""
    return EvaluationPoints(scheme)


def _same_value(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Whether two expanded expressions are equal (:func:`~odenet.analysis.fields.is_zero` of their
    difference: at exact random points first, where most pairs differ, then exactly); an undecided
    pair counts as two values."""
    return is_zero(a - b) is True


def generate_step(
    scheme: Scheme,
    function_name: str = "step",
    call_keys: dict[sympy.Expr, int] | None = None,
    comment: str | None = None,
    translate: dict[sympy.Symbol, sympy.Symbol] | None = None,
) -> StepCode:
    """Source of a function computing one step of ``scheme``.

    ``call_keys`` maps canonical call expressions (stages inlined, then symbols renamed by
    ``translate``) to keys; calls not in it get fresh keys after the largest given. The inverse step
    passes the forward step's keys and the map from its reversed-time symbols to the forward ones,
    so a call such as ``f(z[n+1])`` has the same key in both (see :class:`EvaluationPoints`). By
    default an explicit step's calls are keyed by its evaluation points: one key, and one
    evaluation, per point. ``calls`` lists the canonical form of each call, by key.
    """
    if call_keys is None and translate is None and scheme.is_explicit:
        call_keys = evaluation_points(scheme).keys
    emit = _Emitter(scheme, call_keys, translate, reuse_sums=True)
    header = [f"def {function_name}(state, p, call):"]
    if comment:
        header.append(f"    # {comment}")
    header += [f"    # {eq}" for eq in scheme.steps]
    inputs = scheme.state_vector
    emit.unpack(inputs, "state")
    emit.read_params(scheme)
    emit.steps(scheme)
    outputs = []
    for symbol in inputs:  # the next state vector: x[n+1], then the history shifted
        state, offset = parse_value(symbol)
        outputs.append(value(state, offset + 1))
    emit.returns(outputs)
    source = "\n".join(header + emit.lines) + "\n"
    calls = tuple(emit.canonical_calls[k] for k in sorted(emit.canonical_calls))
    shaped = emit.shaped([value(s, 1) for s in scheme.states])
    return StepCode(source, function_name, inputs, tuple(outputs), calls, shaped=shaped)


def implicit_unknowns(scheme: Scheme) -> tuple[sympy.Symbol, ...]:
    """The unknowns of an implicit step, in the order :func:`generate_implicit` takes and returns
    them (:attr:`~odenet.ir.Scheme.implicit_unknowns`)."""
    return scheme.implicit_unknowns


def generate_implicit(
    scheme: Scheme,
    function_name: str = "implicit_step",
    call_keys: dict[sympy.Expr, int] | None = None,
    comment: str | None = None,
    translate: dict[sympy.Symbol, sympy.Symbol] | None = None,
) -> StepCode:
    """Source of the fixed-point map of an implicit step: ``implicit_step(state, guess, p, call)``.

    ``guess`` holds a value for each unknown (:func:`implicit_unknowns`); the function evaluates the
    step's equations in order, reading the guess wherever an unknown is read before its own line
    computes it (``x[n+1]`` in backward Euler's ``x[n] + h*f(x[n+1])``, a coupled stage), and the
    computed value after, and returns each unknown's computed value. The step's solution is the
    guess that comes back unchanged; the new state vector is then the new values among the
    unknowns and the history shifted. ``call_keys`` and ``translate`` as in :func:`generate_step`.
    """
    emit = _Emitter(scheme, call_keys, translate)
    header = [f"def {function_name}(state, guess, p, call):"]
    if comment:
        header.append(f"    # {comment}")
    header += [f"    # {eq}" for eq in scheme.steps]
    emit.unpack(scheme.state_vector, "state")
    unknowns = implicit_unknowns(scheme)
    names = [emit.name_for(u, f"{python_name(u)}_guess") for u in unknowns]
    emit.lines.append(f"    {', '.join(names)}{',' if len(names) == 1 else ''} = guess")
    emit.read_params(scheme)
    emit.steps(scheme)
    emit.returns(unknowns)
    source = "\n".join(header + emit.lines) + "\n"
    keys = tuple(sorted(emit.canonical_calls))
    calls = tuple(emit.canonical_calls[k] for k in keys)
    shaped = emit.shaped(unknowns)
    return StepCode(source, function_name, scheme.state_vector, unknowns, calls, keys, shaped)


def generate_vjp(
    scheme: Scheme, learnable: tuple[str, ...] = (), cached: bool = False, function_name: str = "vjp"
) -> StepCode:
    """Source of the vector-Jacobian product of one step, derived symbolically.

    ``vjp(state, grads, p, call, pull)`` walks the step backwards: the gradient of every value is the
    sum, over the expressions that read it, of the expression's gradient times its sympy derivative;
    the gradients of a call's arguments are ``pull(key, gradient)``, the function's own
    vector-Jacobian product (autograd's, which also takes care of the function's parameters). It
    returns the gradients of the state vector and, for each name in ``learnable``, the gradient of
    that parameter's value (a sum over elements: parameters are scalars). The step's arithmetic is
    elementwise, so its derivatives are too: autograd sees the functions, never the step's adds and
    multiplies. The code first computes the step's values that the derivatives read, and every
    call's value through ``call(key, name, *arguments)``; with ``cached=True`` the calls are known
    already (evaluated by the inverse) and are asked for as ``call(key, name)``, so their arguments
    are computed only where a derivative reads them.

    Four phases: the step as nodes (:func:`_vjp_nodes`), the backward walk (:class:`_Walk`), the
    values the walk reads (:func:`_vjp_needed`), and the emitted source (:func:`_emit_vjp`).
    """
    scratch = _Emitter(scheme, evaluation_points(scheme).keys, None)  # keyed as the step's calls
    inputs = scheme.state_vector
    scratch.unpack(inputs, "state")
    scratch.steps(scheme)
    nodes = _vjp_nodes(scratch.nodes)
    walk = _Walk(scheme, nodes, learnable)
    needed = _vjp_needed(scheme, nodes, walk, cached)
    source = _emit_vjp(scheme, nodes, walk, needed, cached, function_name)
    calls = tuple(scratch.canonical_calls[k] for k in sorted(scratch.canonical_calls))
    return StepCode(source, function_name, inputs, tuple(walk.outputs), calls)


def _vjp_nodes(nodes: list[Assign | Call]) -> list[Assign | Call]:
    """One node per call key: two spellings of one call (``f(s)`` with a stage ``s = 2*x[n]``, and
    ``f(2*x[n])``) share a key and an evaluation, whose gradient is pulled once, summed."""
    kept: list[Assign | Call] = []
    first_of: dict[int, sympy.Dummy] = {}
    alias: dict = {}
    for node in nodes:
        if isinstance(node, Call):
            node = node._replace(arguments=tuple(a.xreplace(alias) for a in node.arguments))
            if node.key in first_of:
                alias[node.symbol] = first_of[node.key]
                continue
            first_of[node.key] = node.symbol
        else:
            node = node._replace(expr=node.expr.xreplace(alias))
        kept.append(node)
    return kept


class _Walk:
    """The backward walk, symbolically: a list of :class:`Grad` and :class:`Pull` records from the
    outputs' gradients down to the inputs' (``returned``) and the learnable parameters'
    (``learnable_grads``)."""

    def __init__(self, scheme: Scheme, nodes: list[Assign | Call], learnable: tuple[str, ...] = ()):
        inputs = scheme.state_vector
        self.call_names = {node.symbol: f"c{node.key}" for node in nodes if isinstance(node, Call)}
        self.outputs = [value(parse_value(s)[0], parse_value(s)[1] + 1) for s in inputs]
        self.given = [sympy.Dummy(f"grad_{python_name(out)}") for out in self.outputs]
        self.contributions: dict[sympy.Basic, list[sympy.Expr]] = {}
        for out, grad in zip(self.outputs, self.given, strict=True):
            self.contributions.setdefault(out, []).append(grad)
        self.steps: list[Grad | Pull] = []
        for node in reversed(nodes):
            if isinstance(node, Assign):
                gradient = self.gradient_of(node.target)
                if gradient is not None:
                    self.spread(gradient, node.expr)
                continue
            gradient = self.gradient_of(node.symbol)
            if gradient is not None:
                pulled = [sympy.Dummy(f"g_c{node.key}_arg{i}") for i in range(len(node.arguments))]
                self.steps.append(Pull(node.key, gradient, pulled))
                for argument, gradient_arg in zip(node.arguments, pulled, strict=True):
                    self.spread(gradient_arg, argument)
        self.returned = [self.gradient_of(symbol) for symbol in inputs]
        params = {p.name: p.symbol for p in scheme.params}
        self.learnable_grads = [self.gradient_of(params[name]) for name in learnable]

    def spread(self, gradient: sympy.Expr, expr: sympy.Expr) -> None:
        for symbol in sorted(expr.free_symbols - {CONSTANT}, key=str):
            derivative = sympy.diff(expr, symbol)
            if derivative != 0:
                self.contributions.setdefault(symbol, []).append(gradient * derivative)

    def gradient_of(self, symbol: sympy.Basic) -> sympy.Dummy | None:
        parts = self.contributions.pop(symbol, [])
        if not parts:
            return None
        variable = sympy.Dummy(f"g_{self.call_names.get(symbol) or python_name(symbol)}")
        self.steps.append(Grad(variable, symbol, parts))
        return variable


def _vjp_needed(scheme: Scheme, nodes: list[Assign | Call], walk: _Walk, cached: bool) -> set[sympy.Basic]:
    """The values the walk reads, and what they need in turn.

    A value read in several places gets the sum of several gradients, which may differ in shape
    where the step broadcasts (h*x[n] and f(h) both read h): each is reduced to the value's own
    shape before the sum (``accumulate``), so a gradient is never counted once per broadcast
    element. The value's shape comes from the value (an input, a call), the output's gradient (a
    new value), or the value computed again (a stage); a parameter's gradients are summed whole."""
    params = {p.symbol for p in scheme.params}
    outputs = set(walk.outputs)
    needed: set[sympy.Basic] = set()
    for step in walk.steps:
        if isinstance(step, Grad):
            needed |= sympy.Add(*step.parts).free_symbols
            if len(step.parts) > 1 and step.source not in params and step.source not in outputs:
                needed.add(step.source)  # a stage (or input, call: always there)
    needed |= {node.symbol for node in nodes if isinstance(node, Call)}  # every call evaluated or looked up
    for node in reversed(nodes):
        if isinstance(node, Assign) and node.target in needed:
            needed |= node.expr.free_symbols
        elif isinstance(node, Call) and node.symbol in needed and not cached:
            needed |= node.reads()
    return needed


def _emit_vjp(
    scheme: Scheme,
    nodes: list[Assign | Call],
    walk: _Walk,
    needed: set[sympy.Basic],
    cached: bool,
    function_name: str,
) -> str:
    """The source: the values needed, the given gradients, the walk, the returned gradients."""
    inputs = scheme.state_vector
    emit = _Emitter(scheme, evaluation_points(scheme).keys, None)
    header = [f"def {function_name}(state, grads, p, call, pull):"]
    header += [f"    # {eq}" for eq in scheme.steps]
    emit.unpack(inputs, "state")
    emit.read_params(scheme)
    constants = {eq.target: float(eq.expr) for eq in scheme.steps if eq.expr.is_number and not eq.is_stage}
    for node in nodes:
        if isinstance(node, Assign):
            if node.target not in needed:
                continue
            if node.target in constants:
                emit.names[CONSTANT] = f"torch.full_like({emit.names[inputs[0]]}, {constants[node.target]!r})"
            emit.equation(node.target, node.expr, False)
            continue
        if node.symbol not in needed:
            continue
        variable = emit.name_for(node.symbol, walk.call_names[node.symbol])
        printed = "" if cached else "".join(f", {emit.printer.doprint(a)}" for a in node.arguments)
        emit.lines.append(f'    {variable} = call({node.key}, "{node.name}"{printed})')
    emit.unpack(walk.given, "grads")
    params = {p.symbol for p in scheme.params}
    given_of = dict(zip(walk.outputs, walk.given, strict=True))
    for step in walk.steps:
        if isinstance(step, Pull):
            emit.unpack(step.pulled, f"pull({step.key}, {emit.names[step.gradient]})")
            continue
        if len(step.parts) == 1:
            emit.equation(step.variable, step.parts[0], False)
            continue
        name = emit.name_for(step.variable, python_name(step.variable))
        if step.source in params:
            summed = " + ".join(f"({emit.printer.doprint(part)}).sum()" for part in step.parts)
            emit.lines.append(f"    {name} = {summed}")
            continue
        source = step.source
        like = (
            emit.names[given_of[source]]
            if source in given_of and source not in inputs
            else emit.names[source]
        )
        terms = ", ".join(emit.printer.linear_terms(sympy.Add(*step.parts)))
        emit.lines.append(f"    {name} = accumulate({like}, {terms})")
    state_grads = [
        emit.names[g] if g is not None else f"torch.zeros_like({emit.names[s]})"
        for g, s in zip(walk.returned, inputs, strict=True)
    ]
    param_grads = [f"({emit.names[g]}).sum()" if g is not None else "None" for g in walk.learnable_grads]
    emit.lines.append(
        f"    return ({', '.join(state_grads)},), ({', '.join(param_grads)}{',' if param_grads else ''})"
    )
    return release_dead("\n".join(header + emit.lines) + "\n")


def interleaved_vjp(code: StepCode) -> StepCode:
    """The cached vector-Jacobian product ``code`` (``generate_vjp(..., cached=True)``) as a generator
    ``vjp(grads, p, pull)`` that asks for each call's evaluation only where the walk first needs it
    (``ck = yield (k, name)``, before ``pull(k, ...)`` or a line reading ``ck``) and for the layer's
    input as late as it can (``x_n, ... = yield None``). The caller sends each evaluation as soon as
    the inverse has made it, so the walk pulls a call's gradient before the inverse evaluates the
    next call: one function's graph is alive at a time, not every call's of the layer (15 of a
    Llama coupling's 59 MiB peak, measured). An evaluation no line reads is asked for at the end."""
    lines = code.source.splitlines()
    function = ast.parse(code.source).body[0]
    assert isinstance(function, ast.FunctionDef)
    deferred: dict[int, tuple[set[str], int | None, str]] = {}  # line -> (names bound, key, new text)
    kept: list[ast.stmt] = []
    for statement in function.body:
        value = statement.value if isinstance(statement, ast.Assign) else None
        if isinstance(value, ast.Name) and value.id == "state":
            names = {n.id for n in ast.walk(statement.targets[0]) if isinstance(n, ast.Name)}
            text = lines[statement.lineno - 1].replace("= state", "= yield None")
            deferred[statement.lineno] = (names, None, text)
        elif value is not None and _keyed(value, "call"):
            assert isinstance(value, ast.Call)
            target = statement.targets[0]
            assert isinstance(target, ast.Name)
            key, name = value.args[0].value, value.args[1].value  # type: ignore[attr-defined]
            deferred[statement.lineno] = ({target.id}, key, f"    {target.id} = yield ({key}, {name!r})")
        elif not isinstance(statement, ast.Delete):  # the releases are placed anew below
            kept.append(statement)
    out = [lines[i] for i in range(function.body[0].lineno - 1)]  # the header and its comments
    waiting = dict(deferred)
    for statement in kept:
        reads = {n.id for n in ast.walk(statement) if isinstance(n, ast.Name)}
        pulled = {node.args[0].value for node in ast.walk(statement) if _keyed(node, "pull")}
        if isinstance(statement, ast.Return):  # whatever was not asked for yet, before the end
            pulled |= {key for _, key, _ in waiting.values() if key is not None}
        for number, (names, key, text) in sorted(waiting.items()):
            if names & reads or (key is not None and key in pulled):
                out.append(text)
                del waiting[number]
        out.extend(lines[statement.lineno - 1 : (statement.end_lineno or statement.lineno)])
    source = release_dead("\n".join(out).replace("(state, grads, p, call, pull)", "(grads, p, pull)") + "\n")
    return StepCode(source, code.function_name, code.inputs, code.outputs, code.calls)


def called_keys(source: str) -> set[int]:
    """The keys of the ``call(key, name, ...)`` evaluations in generated ``source``."""
    return {node.args[0].value for node in ast.walk(ast.parse(source)) if _keyed(node, "call")}


def _keyed(node: ast.AST, function: str) -> bool:
    """Whether ``node`` is generated code's ``function(key, ...)`` (``call`` or ``pull``) with a
    number as its key."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == function
        and bool(node.args)
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, int)
    )


def release_dead(source: str) -> str:
    """``source`` (one function of straight-line statements, one per line) with ``del`` after the
    last line that reads each of its values, and after the line that binds one nobody reads: a
    gradient is freed as soon as the walk is done with it, not when the function returns (two of a
    revnet layer's four state-sized gradients at its backward pass's peak, measured with
    ``odenet.profile``). The arguments ``state`` and ``grads`` are released after they are unpacked;
    the caller hands its gradients over (``vjp.layer_vjp``), so a given gradient is freed once read."""
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.FunctionDef)
    body = function.body
    releasable = {"state", "grads"}
    last: dict[str, int] = {}
    for i, statement in enumerate(body):
        scalar = isinstance(statement, ast.Assign) and isinstance(statement.value, ast.Subscript)
        for node in ast.walk(statement):
            if isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Store) and not scalar:  # p["h"]: a number, left alone
                    releasable.add(node.id)
                last[node.id] = i
    lines = source.splitlines()
    dead: dict[int, list[str]] = {}
    for name, i in last.items():
        if name in releasable and not isinstance(body[i], ast.Return):
            dead.setdefault(body[i].end_lineno or body[i].lineno, []).append(name)
    out = []
    for number, line in enumerate(lines, 1):
        out.append(line)
        if number in dead:
            out.append(f"    del {', '.join(sorted(dead[number]))}")
    return "\n".join(out) + "\n"


def generate_exact(
    scheme: Scheme,
    parts: tuple[tuple[sympy.Symbol, sympy.Symbol, sympy.Expr, sympy.Expr], ...],
    call_keys: dict[sympy.Expr, int],
    inverse: bool,
) -> StepCode:
    """Source of one step in fixed-point arithmetic, or of its inverse (``memory="fixed_point"``).

    ``parts`` are the updates in order as ``(new value, value it replaces, c, remainder)``: the new
    value is ``c * replaced + remainder``, the remainder reading only values still held. The
    generated code computes each remainder in floating point (calls keyed as the forward step's)
    and hands it to ``update(i, remainder)``, which multiplies the held integer by ``c`` and adds
    the remainder, exactly, and returns the new value's floating-point view. The inverse walks the
    parts backwards with ``undo(i, remainder)``: the remainders read the same values, so they are
    the same numbers, and the subtraction and the division by ``c`` undo the update bit for bit.
    """
    emit = _Emitter(scheme, call_keys, None)
    name = "exact_inverse" if inverse else "exact_step"
    hook = "undo" if inverse else "update"
    header = [f"def {name}(state, p, call, {hook}):"]
    header += [f"    # {new} = ({format_expr(c)})*{old} + {format_expr(rest)}" for new, old, c, rest in parts]
    old_vector = scheme.state_vector
    new_vector = tuple(value(parse_value(s)[0], parse_value(s)[1] + 1) for s in old_vector)
    emit.used.add(hook)
    emit.unpack(new_vector if inverse else old_vector, "state")
    emit.read_params(scheme)
    order = reversed(list(enumerate(parts))) if inverse else enumerate(parts)
    for i, (new, old, _, rest) in order:
        remainder = sympy.Symbol(f"r{i}")
        emit.equation(remainder, rest, False)
        target = old if inverse else new
        emit.lines.append(
            f"    {emit.name_for(target, python_name(target))} = {hook}({i}, {emit.names[remainder]})"
        )
    outputs = old_vector if inverse else new_vector
    emit.returns(outputs)
    source = "\n".join(header + emit.lines) + "\n"
    calls = tuple(emit.canonical_calls[k] for k in sorted(emit.canonical_calls))
    return StepCode(source, name, new_vector if inverse else old_vector, outputs, calls)


def generate_init(scheme: Scheme, function_name: str = "init") -> StepCode:
    """Source of the function that builds the starting state vector from the input states' values
    (``init`` statements and the language's defaults; calls use the first layer's functions)."""
    emit = _Emitter(scheme, None, None)
    header = [f"def {function_name}(inputs, p, call):"]
    header += [f"    # {eq}" for eq in scheme.init]
    given = tuple(value(s) for s in scheme.inputs)
    emit.unpack(given, "inputs")
    emit.read_params(scheme)
    for eq in scheme.init:
        if eq.expr.is_number:  # a constant start value: shaped like the first input
            expr = sympy.Symbol("__zero__")
            emit.names[expr] = f"torch.full_like({emit.names[given[0]]}, {float(eq.expr)!r})"
            emit.equation(eq.target, expr, False)
        else:
            emit.equation(eq.target, eq.expr, False)
    emit.returns(scheme.state_vector)
    source = "\n".join(header + emit.lines) + "\n"
    return StepCode(source, function_name, given, scheme.state_vector, ())


_counter = count()


def generated_folder() -> Path:
    """Where generated source is written, so that every traceback shows its lines: the folder
    ``$ODENET_CACHE_DIR/generated``, by default ``$XDG_CACHE_HOME/odenet/generated`` (or
    ``~/.cache/odenet/generated``). Files are named by their content, written once."""
    root = os.environ.get("ODENET_CACHE_DIR")
    if root is None:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "odenet")
    return Path(root) / "generated"


def _source_file(code: StepCode, label: str) -> str | None:
    """A file holding the source (named by its hash), or None where none can be written."""
    digest = hashlib.sha256(code.source.encode()).hexdigest()[:16]
    name = "".join(c if c.isalnum() else "_" for c in label).strip("_")[:60]
    path = generated_folder() / f"{name}-{digest}.py"
    try:
        if not path.is_file() or path.read_text() != code.source:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".py")
            with os.fdopen(fd, "w") as handle:
                handle.write(code.source)
            os.replace(temporary, path)  # whole or not at all, also with several processes
    except OSError:
        return None
    return str(path)


def compile_source(code: StepCode, namespace: dict, label: str):
    """Compile generated source into a function whose tracebacks show the generated lines, in
    every traceback printer: the source is written to a file named by its content
    (:func:`generated_folder`; the interpreter's own printer reads files only) and registered
    with linecache for as long as the function lives (debuggers, IPython, pytest). Where no file
    can be written, the name is ``<odenet-generated ...>`` and linecache alone holds the lines.
    ``namespace`` supplies ``torch``."""
    filename = _source_file(code, label) or f"<odenet-generated {label} #{next(_counter)}>"
    entry = (len(code.source), None, code.source.splitlines(True), filename)
    linecache.cache[filename] = entry
    # The builtins module itself: torch.compile's guards and resume functions look builtins up in
    # the calling frame (a dict with __import__ alone, as before, fails there once the code calls a
    # helper such as linear_combination). The source is still made from the IR only (see above).
    scope = {"__builtins__": builtins, **namespace}
    # Generated from the IR (see the module doc), never from user text.
    exec(compile(code.source, filename, "exec"), scope)
    function = scope[code.function_name]
    _live[filename] = _live.get(filename, 0) + 1
    weakref.finalize(function, _forget, filename)
    return function


_live: dict[str, int] = {}  # functions alive per file name: linecache keeps the lines while any is


def _forget(filename: str) -> None:
    _live[filename] -= 1
    if not _live[filename]:
        del _live[filename]
        linecache.cache.pop(filename, None)
