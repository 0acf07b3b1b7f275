"""Syntax tree to :class:`~odenet.ir.Scheme`: names, rules and exact numbers.

Every rule of the language is checked here with the place it is broken, so the user sees the line
and a caret; the Scheme then checks its own invariants once more (for schemes built in Python).
Problems are collected, not stopped at: ``check`` reports each of them. A statement with an error is
still recorded as well as possible (a stage with a bad right-hand side is still a stage) so that one
mistake does not cause a cascade of others.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import sympy

from odenet.errors import Location, SchemeSyntaxError, SchemeValueError
from odenet.ir import (
    MAX_LAG,
    RESERVED_NAMES,
    SCALAR_FUNCTIONS,
    Equation,
    FunctionSymbol,
    Param,
    Scheme,
    history_depths,
    parse_value,
    value,
)
from odenet.language import syntax as ast

__all__ = ["resolve"]

MAX_EXPONENT = 1000  # |p| in x**p for a symbolic x
MAX_DIGITS = 1000  # digits of a number computed from literals (10**10**10 is refused)


class _StatementError(Exception):
    """Internal: one problem at one span; turned into SchemeValueError/SchemeSyntaxError."""

    def __init__(self, message: str, span: ast.Span, syntax: bool = False):
        super().__init__(message)
        self.message = message
        self.span = span
        self.syntax = syntax


@dataclass
class _Context:
    """What names mean while one expression is read, and which kinds of value it may use."""

    what: str  # "a parameter's default", "an init value", "the step"
    allow_states: bool = True
    allow_params: bool = True
    allow_stages: bool = True
    allow_calls: bool = True
    allow_new_values: bool = True  # x[n+1]
    allow_inf: bool = False


class _Resolver:
    def __init__(self, statements: list[ast.Statement], source: str, lines: list[str]):
        self.statements = statements
        self.source = source
        self.lines = lines
        self.errors: list[SchemeValueError | SchemeSyntaxError] = []
        self.name: str | None = None
        self.doc = ""
        self.states: dict[str, ast.Span] = {}
        self.params: dict[str, Param] = {}
        self.step_name: str | None = None  # declared with 'step'
        self.param_spans: dict[str, ast.Span] = {}
        self.declared_functions: dict[str, ast.Span] | None = None
        self.arity: dict[str, tuple[int, ast.Span]] = {}
        self.inputs: tuple[str, ...] = ()
        self.outputs: tuple[str, ...] = ()
        self.io_spans: dict[str, ast.Span] = {}
        self.stages: dict[str, ast.Span] = {}
        self.later_stages: dict[str, ast.Span] = {}
        self.updated: dict[str, ast.Span] = {}
        self.steps: list[Equation] = []
        self.init: list[Equation] = []
        self.init_spans: dict[sympy.Symbol, ast.Span] = {}
        self.history: dict[str, int] = {}

    # -- errors ---------------------------------------------------------------------------------
    def location(self, span: ast.Span) -> Location:
        text = self.lines[span.line - 1] if 0 < span.line <= len(self.lines) else ""
        end = span.end_column if span.end_line == span.line else None
        return Location(self.source, span.line, span.column, text, end)

    def report(self, message: str, span: ast.Span, syntax: bool = False) -> None:
        cls = SchemeSyntaxError if syntax else SchemeValueError
        self.errors.append(cls(message, self.location(span)))

    def attempt(self, action: Callable[[], object]) -> None:
        try:
            action()
        except _StatementError as exc:
            self.report(exc.message, exc.span, exc.syntax)

    # -- the passes -----------------------------------------------------------------------------
    def run(self) -> Scheme | None:
        if not self.statements:
            self.report(
                "empty file: expected 'scheme NAME' as the first statement", ast.Span(1, 1, 1, 1), True
            )
            return None
        self.header()
        for statement in self.statements:  # declarations may stand anywhere
            if isinstance(statement, ast.Declaration):
                self.attempt(lambda s=statement: self.declaration(s))
            elif isinstance(statement, ast.ParamDecl):
                self.attempt(lambda s=statement: self.param(s))
        if not self.states:
            self.report("no state declared: expected a line such as 'state y'", self.statements[0].span)
            return None
        self.default_io()
        equations = [s for s in self.statements if isinstance(s, ast.Assignment)]
        for statement in equations:  # stages may only be used after their line: remember them all
            if statement.target.offset is None and statement.target.name not in self.states:
                self.later_stages.setdefault(statement.target.name, statement.target.span)
        for statement in equations:
            self.attempt(lambda s=statement: self.assignment(s))
        self.compute_history()
        for statement in self.statements:
            if isinstance(statement, ast.Init):
                self.attempt(lambda s=statement: self.init_statement(s))
        self.final_checks()
        if self.errors:
            return None
        try:
            return Scheme(
                name=self.name,
                doc=self.doc,
                states=tuple(self.states),
                params=tuple(self.params.values()),
                functions=self.function_symbols(),
                steps=tuple(self.steps),
                init=tuple(self.init),
                inputs=self.inputs,
                outputs=self.outputs,
                step=self.step_name or "h",
            )
        except SchemeValueError as exc:
            # The inits' order is a property of the whole block: a cycle is found only here.
            message = exc.message.split(": ", 1)[1]
            if message.startswith("the inits depend"):
                message += ": expected inits that can be computed one after another"
            self.report(message, next(iter(self.init_spans.values()), self.statements[0].span))
            return None

    def function_symbols(self) -> tuple[FunctionSymbol, ...]:
        """In the order of the ``function`` line if there is one, else in the order of first use."""
        names = list(self.declared_functions or self.arity)
        return tuple(FunctionSymbol(name, self.arity[name][0]) for name in names)

    def header(self) -> None:
        first = self.statements[0]
        if isinstance(first, ast.SchemeDecl):
            self.name = first.name
            self.attempt(lambda: self.check_new_name(first.name, first.span, "scheme"))
        else:
            self.report("expected 'scheme NAME' as the first statement", first.span, True)
            self.name = "unnamed"
        for index, statement in enumerate(self.statements):
            if isinstance(statement, ast.SchemeDecl) and index > 0:
                self.report(
                    "a file holds one scheme: 'scheme' may appear only once, first", statement.span, True
                )
            if isinstance(statement, ast.Doc):
                if index == 1 and isinstance(first, ast.SchemeDecl):
                    self.doc = statement.text.strip()
                else:
                    self.report("a doc string goes right after the 'scheme NAME' line", statement.span, True)

    # -- declarations ---------------------------------------------------------------------------
    def declared_as(self, name: str) -> tuple[str, ast.Span] | None:
        if name in self.states:
            return "state", self.states[name]
        if name in self.param_spans:
            return "parameter", self.param_spans[name]
        if self.declared_functions and name in self.declared_functions:
            return "function", self.declared_functions[name]
        return None

    def check_new_name(self, name: str, span: ast.Span, kind: str) -> None:
        if name in RESERVED_NAMES:
            raise _StatementError(f"'{name}' is reserved and cannot name a {kind}", span)
        previous = self.declared_as(name) if kind != "scheme" else None
        if previous is not None:
            what, where = previous
            raise _StatementError(
                f"'{name}' is already declared as a {what} on line {where.line}: expected a new name", span
            )

    def declaration(self, statement: ast.Declaration) -> None:
        keyword = statement.keyword
        if keyword == "state":
            for name, span in statement.names:
                self.attempt(lambda n=name, s=span: self.check_new_name(n, s, "state"))
                self.states.setdefault(name, span)
        elif keyword == "function":
            if self.declared_functions is None:
                self.declared_functions = {}
            for name, span in statement.names:
                self.attempt(lambda n=name, s=span: self.check_new_name(n, s, "function"))
                self.declared_functions.setdefault(name, span)
        else:  # input / output: checked once all states are known
            if keyword in self.io_spans:
                raise _StatementError(
                    f"'{keyword}' is given twice (first on line {self.io_spans[keyword].line}): "
                    f"list all {keyword} states on one line",
                    statement.span,
                )
            self.io_spans[keyword] = statement.span
            setattr(self, keyword + "s", statement.names)

    def default_io(self) -> None:
        for keyword in ("input", "output"):
            names = getattr(self, keyword + "s")
            if not names:
                setattr(self, keyword + "s", (next(iter(self.states)),))
                continue
            checked = []
            for name, span in names:
                if name not in self.states:
                    self.report(
                        f"{keyword} '{name}' is not a state: expected one of {_listing(self.states)}", span
                    )
                elif name in checked:
                    self.report(f"{keyword} lists '{name}' twice", span)
                else:
                    checked.append(name)
            setattr(self, keyword + "s", tuple(checked) or (next(iter(self.states)),))

    def param(self, statement: ast.ParamDecl) -> None:
        name = statement.name
        self.check_new_name(name, statement.name_span, "parameter")
        self.param_spans[name] = statement.name_span
        if statement.is_step:
            if self.step_name is not None:
                raise _StatementError(
                    f"a second step declaration: the step is already '{self.step_name}'; "
                    "expected one 'step' line (other parameters are declared with 'param')",
                    statement.span,
                )
            self.step_name = name
        constant = _Context(
            "a parameter's default",
            allow_states=False,
            allow_params=False,
            allow_stages=False,
            allow_calls=False,
            allow_new_values=False,
        )
        default = self.expression(statement.default, constant)
        if not default.is_real:
            raise _StatementError(f"the default of '{name}' must be a real number", statement.default.span)
        interval = None
        if statement.interval is not None:
            bounds = _Context(**{**constant.__dict__, "what": "an interval bound", "allow_inf": True})
            low, high = (self.expression(b, bounds) for b in statement.interval)
            interval = (low, high)
            if not bool(low < high):
                raise _StatementError(
                    f"empty interval ({low}, {high}): expected the lower bound first",
                    statement.interval[0].span,
                )
            if not bool(low < default < high):
                raise _StatementError(
                    f"the default {default} of '{name}' lies outside the open interval ({low}, {high})",
                    statement.default.span,
                )
        self.params[name] = Param(name, default, statement.learnable, interval)

    # -- equations ------------------------------------------------------------------------------
    def assignment(self, statement: ast.Assignment) -> None:
        target = statement.target
        name, span = target.name, target.span
        if target.offset is None:  # a stage
            if name in self.states:
                self.updated.setdefault(name, span)  # do not also report "never updated"
                raise _StatementError(f"'{name}' is a state: its update is written {name}[n+1] = ...", span)
            kind = self.declared_as(name)
            if kind is not None:
                raise _StatementError(
                    f"'{name}' is already a {kind[0]} (line {kind[1].line}): a stage needs a new name", span
                )
            if name in RESERVED_NAMES:
                raise _StatementError(f"'{name}' is reserved and cannot name a stage", span)
            if name in self.stages:
                raise _StatementError(
                    f"stage '{name}' is defined twice (first on line {self.stages[name].line}): "
                    "expected a new name",
                    span,
                )
            self.stages[name] = span  # defined even if its right-hand side fails: no cascade
            self.steps.append(
                Equation(sympy.Symbol(name), self.expression(statement.expr, _Context("the step")))
            )
            return
        if name not in self.states:
            raise _StatementError(self.unknown_state_message(name), span)
        if target.offset != 1:
            self.updated.setdefault(name, span)
            raise _StatementError(
                "an update sets the new value: "
                f"expected {name}[n+1] = ..., not {_indexed(name, target.offset)}",
                span,
            )
        if name in self.updated:
            raise _StatementError(
                f"state '{name}' is updated twice (first on line {self.updated[name].line}): "
                "a step sets each state once",
                span,
            )
        self.updated[name] = span
        self.steps.append(Equation(value(name, 1), self.expression(statement.expr, _Context("the step"))))

    def compute_history(self) -> None:
        self.history = history_depths(self.states, self.steps)

    def init_statement(self, statement: ast.Init) -> None:
        target = statement.target
        name, span = target.name, target.span
        if name not in self.states:
            raise _StatementError(
                f"init sets the start value of a state; '{name}' is not a state "
                f"(expected one of {_listing(self.states)})",
                span,
            )
        offset = target.offset or 0
        if offset > 0:
            raise _StatementError(
                "init sets a start value or history: "
                f"expected {name} or {name}[n-1], not {_indexed(name, offset)}",
                span,
            )
        if offset == 0 and name in self.inputs:
            raise _StatementError(
                f"'{name}' is an input: its start value is the input tensor, so it takes no init", span
            )
        if -offset > self.history[name]:
            used = self.history[name]
            oldest = f"{_indexed(name, -used)}" if used else f"{name}[n] alone"
            raise _StatementError(
                f"init of {_indexed(name, offset)}, which the step never reads (it reads back to {oldest})",
                span,
            )
        symbol = value(name, offset)
        if symbol in self.init_spans:
            raise _StatementError(
                f"init of {_indexed(name, offset)} is given twice "
                f"(first on line {self.init_spans[symbol].line})",
                span,
            )
        self.init_spans[symbol] = span
        context = _Context("an init value", allow_stages=False, allow_new_values=False)
        expr = self.expression(statement.expr, context)
        for free in expr.free_symbols:
            parsed = parse_value(free)
            if parsed:
                state, lag = parsed
                if -lag > self.history[state]:
                    raise _StatementError(
                        f"init reads {free.name}, which the step never uses: an init may read "
                        "the states at n and the history the step reads",
                        statement.expr.span,
                    )
        self.init.append(Equation(symbol, expr))

    def final_checks(self) -> None:
        for name, span in self.states.items():
            if name not in self.updated:
                self.report(f"state '{name}' is never updated: expected a line '{name}[n+1] = ...'", span)
        if self.declared_functions:
            for name, span in self.declared_functions.items():
                if name not in self.arity:
                    self.report(f"function '{name}' is declared but never called", span)

    # -- expressions ----------------------------------------------------------------------------
    def expression(self, node: ast.Expr, ctx: _Context) -> sympy.Expr:
        expr = self.convert(node, ctx)
        if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo) and not ctx.allow_inf:
            raise _StatementError("division by zero: the expression is not finite", node.span)
        if expr.has(sympy.I):
            raise _StatementError("the expression is not real (square root of a negative number?)", node.span)
        return expr

    def convert(self, node: ast.Expr, ctx: _Context) -> sympy.Expr:
        if isinstance(node, ast.Number):
            return sympy.Rational(node.value.numerator, node.value.denominator)
        if isinstance(node, ast.Name):
            return self.name_value(node, ctx)
        if isinstance(node, ast.Indexed):
            return self.indexed_value(node, ctx)
        if isinstance(node, ast.Call):
            return self.call_value(node, ctx)
        if isinstance(node, ast.Unary):
            operand = self.convert(node.operand, ctx)
            return -operand if node.op == "-" else operand
        left = self.convert(node.left, ctx)
        right = self.convert(node.right, ctx)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        if node.op == "/":
            if right.is_zero:
                raise _StatementError("division by zero: this divisor is 0", node.right.span)
            return left / right
        return self.power(left, right, node)

    def power(self, base: sympy.Expr, exponent: sympy.Expr, node: ast.Binary) -> sympy.Expr:
        if base.is_zero and exponent.is_number and exponent.is_negative:
            raise _StatementError("division by zero: 0 raised to a negative power", node.span)
        if exponent.is_number:
            if not exponent.is_real:
                raise _StatementError("the exponent is not real", node.right.span)
            if base.is_number and base.is_real and not base.is_zero:
                digits = (
                    abs(float(exponent)) * abs(math.log10(abs(float(base))))
                    if _fits_float(base, exponent)
                    else math.inf
                )
                if digits > MAX_DIGITS:
                    raise _StatementError(
                        f"number too large: this power has about {_magnitude(digits)} digits "
                        f"(at most {MAX_DIGITS})",
                        node.span,
                    )
            elif not _fits_float(exponent) or abs(float(exponent)) > MAX_EXPONENT:
                raise _StatementError(
                    f"exponent too large: at most {MAX_EXPONENT} in absolute value", node.right.span
                )
        return base**exponent

    def name_value(self, node: ast.Name, ctx: _Context) -> sympy.Expr:
        name = node.name
        if name == "inf" and ctx.allow_inf:
            return sympy.oo
        if name == "pi":
            return sympy.pi
        if name == "n":
            raise _StatementError(
                "'n' is the step index: it stands only inside brackets, as in y[n-1]", node.span
            )
        if name in self.params:
            if not ctx.allow_params:
                raise _StatementError(f"{ctx.what} must be a constant: '{name}' is a parameter", node.span)
            return self.params[name].symbol
        if name in self.param_spans:  # a parameter whose own line failed
            return sympy.Symbol(name, real=True)
        if name in self.stages:
            if not ctx.allow_stages:
                raise _StatementError(f"{ctx.what} cannot use the stage '{name}'", node.span)
            return sympy.Symbol(name)
        if name in self.states:
            raise _StatementError(
                f"state '{name}' needs a time index: expected {name}[n], {name}[n-1] or {name}[n+1]",
                node.span,
            )
        if name in SCALAR_FUNCTIONS or (self.declared_functions and name in self.declared_functions):
            raise _StatementError(f"'{name}' is a function: expected a call such as {name}(...)", node.span)
        if name in self.later_stages and ctx.allow_stages:
            # A stage read before (or in) its own line: the stages are coupled, the step implicit.
            return sympy.Symbol(name)
        raise _StatementError(self.unknown_name_message(name, ctx), node.span)

    def indexed_value(self, node: ast.Indexed, ctx: _Context) -> sympy.Expr:
        name, offset = node.name, node.offset
        if name not in self.states:
            kind = self.declared_as(name) or (("stage", self.stages[name]) if name in self.stages else None)
            if kind is not None:
                raise _StatementError(
                    f"'{name}' is a {kind[0]}, not a state: only states have time indices", node.span
                )
            raise _StatementError(self.unknown_state_message(name), node.span)
        if not ctx.allow_states:
            raise _StatementError(
                f"{ctx.what} must be a constant: {_indexed(name, offset)} is a state", node.span
            )
        if offset > 1:
            raise _StatementError(
                f"{_indexed(name, offset)} reaches {offset} steps ahead: a step computes {name}[n+1] "
                f"from {name}[n], {name}[n-1], ...",
                node.span,
            )
        if offset < -MAX_LAG:
            raise _StatementError(
                f"{_indexed(name, offset)} reaches too far back: at most {_indexed(name, -MAX_LAG)}",
                node.span,
            )
        if offset == 1:
            if not ctx.allow_new_values:
                raise _StatementError(f"{ctx.what} cannot use the new value {name}[n+1]", node.span)
        return value(name, offset)

    def call_value(self, node: ast.Call, ctx: _Context) -> sympy.Expr:
        name = node.name
        if not node.args:
            raise _StatementError(f"'{name}()' has no argument: expected at least one", node.span)
        if name in SCALAR_FUNCTIONS:
            if len(node.args) != 1:
                raise _StatementError(f"{name}() takes one argument, got {len(node.args)}", node.span)
            argument = self.convert(node.args[0], ctx)
            if not _is_parametric(argument):
                raise _StatementError(
                    f"{name}() applies to parameters and numbers only: a nonlinearity of a state "
                    "belongs in a function symbol such as f(...), which becomes a sub-network",
                    node.args[0].span,
                )
            return SCALAR_FUNCTIONS[name](argument)
        if name in self.states or name in self.param_spans or name in self.stages:
            what = "state" if name in self.states else ("parameter" if name in self.param_spans else "stage")
            raise _StatementError(f"'{name}' is a {what}, not a function: it cannot be called", node.span)
        if self.declared_functions is not None and name not in self.declared_functions:
            raise _StatementError(
                f"unknown function '{name}': the declared functions are {_listing(self.declared_functions)}"
                + _suggest(name, self.declared_functions),
                node.span,
            )
        if name in RESERVED_NAMES:
            raise _StatementError(f"'{name}' is reserved and cannot name a function", node.span)
        if not ctx.allow_calls:
            raise _StatementError(f"{ctx.what} cannot call a function: expected a constant", node.span)
        arity = len(node.args)
        if name in self.arity and self.arity[name][0] != arity:
            first, where = self.arity[name]
            raise _StatementError(
                f"'{name}' is called with {_count(arity, 'argument')} here "
                f"but with {_count(first, 'argument')} "
                f"on line {where.line}: a function always takes the same number of arguments",
                node.span,
            )
        self.arity.setdefault(name, (arity, node.span))
        args = [self.convert(arg, ctx) for arg in node.args]
        return sympy.Function(name)(*args)

    # -- messages -------------------------------------------------------------------------------
    def unknown_name_message(self, name: str, ctx: _Context) -> str:
        options = []
        if ctx.allow_params and self.params:
            options.append(f"a parameter ({', '.join(self.params)})")
        if ctx.allow_stages and self.stages:
            options.append(f"a stage ({', '.join(self.stages)})")
        if ctx.allow_states:
            first = next(iter(self.states))
            options.append(f"a state with a time index such as {first}[n]")
        if not options:
            options.append("a number")
        known = [*self.params, *self.stages, *self.states]
        message = f"unknown name '{name}': expected " + _or(options)
        if name in ("e", "E", "I"):
            message += f" ('{name}' is not a constant of the language: write the number or use exp(1))"
        return message + _suggest(name, known)

    def unknown_state_message(self, name: str) -> str:
        return f"unknown state '{name}': the states are {_listing(self.states)}" + _suggest(name, self.states)


# ---------------------------------------------------------------------------------------------------


def _indexed(name: str, offset: int) -> str:
    return f"{name}[n{'' if offset == 0 else f'{offset:+d}'}]"


def _listing(names) -> str:
    return ", ".join(names)


def _or(options: list[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" + ("" if k == 1 else "s")


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _is_parametric(expr: sympy.Expr) -> bool:
    """True when expr involves only numbers and parameters (no state, stage or function call)."""
    if expr.atoms(sympy.core.function.AppliedUndef):
        return False
    return all(s.is_real for s in expr.free_symbols)  # params are the only real symbols


def _fits_float(*numbers: sympy.Expr) -> bool:
    try:
        return all(math.isfinite(float(x)) for x in numbers)
    except (TypeError, OverflowError, ValueError):
        return False


def _magnitude(digits: float) -> str:
    return "infinitely many" if not math.isfinite(digits) else f"{digits:.3g}"


def resolve(statements: list[ast.Statement], source: str, lines: list[str]) -> Scheme:
    """Check the statements and build the Scheme, or raise the first error (all in ``.errors``)."""
    resolver = _Resolver(statements, source, lines)
    scheme = resolver.run()
    if resolver.errors:
        first = resolver.errors[0]
        first.errors = list(resolver.errors)
        raise first
    assert scheme is not None
    return scheme
