"""Text to syntax tree: the grammar in ``grammar.lark``, parsed by lark's LALR parser.

The parser reduces bottom-up and calls :class:`_Builder`'s methods as it goes (lark's inline
transformer), so the tree is built without recursion: deep nesting is measured and refused with a
clear error instead of overflowing the stack. Nothing here evaluates user text; numbers are read
with :class:`fractions.Fraction` after the grammar has checked their form.

The tree is deliberately small: expressions (:class:`Number`, :class:`Name`, :class:`Indexed`,
:class:`Call`, :class:`Unary`, :class:`Binary`) and one class per statement. Every node knows its
:class:`Span` so that later checks (unknown names, ...) can point at it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources

import lark

from odenet.errors import Location, SchemeSyntaxError

__all__ = ["MAX_EXPRESSION_SIZE", "MAX_NESTING", "MAX_SOURCE_BYTES", "Span", "parse_syntax"]

# Limits that keep a hostile or mistaken file from taking the parser or sympy down.
MAX_SOURCE_BYTES = 1 << 20  # 1 MiB of scheme text
MAX_NESTING = 64  # parentheses, calls and operators nested inside one another
MAX_EXPRESSION_SIZE = 2000  # nodes in one expression
MAX_NUMBER_DIGITS = 100  # digits in one numeric literal
MAX_NUMBER_EXPONENT = 100  # |e| in 1.5e-3


# ---------------------------------------------------------------------------------------------------
# The syntax tree


@dataclass(frozen=True)
class Span:
    """1-based line and column of a node's first character; end_column is exclusive (same line)."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def of(token: lark.Token) -> Span:
        return Span(token.line, token.column, token.end_line, token.end_column)

    def to(self, other: Span) -> Span:
        return Span(self.line, self.column, other.end_line, other.end_column)


@dataclass(frozen=True)
class Expr:
    span: Span

    @property
    def depth(self) -> int:
        return 1

    @property
    def size(self) -> int:
        return 1


@dataclass(frozen=True)
class Number(Expr):
    value: Fraction


@dataclass(frozen=True)
class Name(Expr):
    name: str


@dataclass(frozen=True)
class Indexed(Expr):
    """``x[n+offset]``."""

    name: str
    offset: int


@dataclass(frozen=True)
class _Compound(Expr):
    # depth and size are computed once at construction (the parser checks them node by node).
    depth_: int
    size_: int

    @property
    def depth(self) -> int:
        return self.depth_

    @property
    def size(self) -> int:
        return self.size_


@dataclass(frozen=True)
class Call(_Compound):
    name: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Unary(_Compound):
    op: str  # "-" or "()" (parentheses are kept only to measure nesting and spans)
    operand: Expr


@dataclass(frozen=True)
class Binary(_Compound):
    op: str  # "+", "-", "*", "/", "**"
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Target:
    """The left-hand side of ``init`` or an equation: ``k1`` (offset None) or ``x[n+1]``."""

    name: str
    offset: int | None
    span: Span


@dataclass(frozen=True)
class Statement:
    span: Span


@dataclass(frozen=True)
class SchemeDecl(Statement):
    name: str


@dataclass(frozen=True)
class Doc(Statement):
    text: str


@dataclass(frozen=True)
class Declaration(Statement):
    """``state``, ``function``, ``input`` or ``output`` with its names and their spans."""

    keyword: str
    names: tuple[tuple[str, Span], ...]


@dataclass(frozen=True)
class ParamDecl(Statement):
    name: str
    name_span: Span
    default: Expr
    learnable: bool
    interval: tuple[Expr, Expr] | None
    is_step: bool = False  # declared with 'step': the step-size parameter


@dataclass(frozen=True)
class Init(Statement):
    target: Target
    expr: Expr


@dataclass(frozen=True)
class Assignment(Statement):
    target: Target
    expr: Expr


# ---------------------------------------------------------------------------------------------------
# Building the tree while parsing


class _LimitExceededError(Exception):
    """Raised inside the parser's callbacks; turned into a SchemeSyntaxError with a location."""

    def __init__(self, message: str, span: Span):
        super().__init__(message)
        self.message = message
        self.span = span


def _compound(cls, span: Span, *children: Expr, **fields):
    depth = 1 + max(child.depth for child in children) if children else 1
    size = 1 + sum(child.size for child in children)
    if depth > MAX_NESTING:
        raise _LimitExceededError(
            f"expression nested too deeply: more than {MAX_NESTING} levels of parentheses, calls or "
            "operators; split it into stages",
            span,
        )
    if size > MAX_EXPRESSION_SIZE:
        raise _LimitExceededError(
            f"expression too large: more than {MAX_EXPRESSION_SIZE} terms; split it into stages", span
        )
    return cls(span=span, depth_=depth, size_=size, **fields)


def _read_number(token: lark.Token) -> Fraction:
    text = str(token)
    mantissa, _, exponent = text.lower().partition("e")
    if sum(c.isdigit() for c in mantissa) > MAX_NUMBER_DIGITS:
        raise _LimitExceededError(f"number too long: more than {MAX_NUMBER_DIGITS} digits", Span.of(token))
    if exponent and abs(int(exponent)) > MAX_NUMBER_EXPONENT:
        raise _LimitExceededError(
            f"number out of range: the exponent must lie within ±{MAX_NUMBER_EXPONENT}", Span.of(token)
        )
    return Fraction(text)  # exact: "0.1" is 1/10


class _Builder(lark.Transformer):
    """Callbacks of the LALR parser: one method per named rule of the grammar."""

    # statements ------------------------------------------------------------------------------
    def start(self, statements):
        return [s for s in statements if s is not None]

    def scheme_decl(self, children):
        (name,) = children
        return SchemeDecl(Span.of(name), str(name))

    def doc(self, children):
        (token,) = children
        return Doc(Span.of(token), str(token)[3:-3])

    def _declaration(keyword):  # noqa: N805 - a factory used while the class is built
        def build(self, names):
            return Declaration(Span.of(names[0]), keyword, tuple((str(n), Span.of(n)) for n in names))

        return build

    state_decl = _declaration("state")
    function_decl = _declaration("function")
    input_decl = _declaration("input")
    output_decl = _declaration("output")
    del _declaration

    def param_decl(self, children, is_step=False):
        name, default, *rest = children
        learnable = bool(rest)
        interval = rest[0] if rest else None
        return ParamDecl(Span.of(name), str(name), Span.of(name), default, learnable, interval, is_step)

    def step_decl(self, children):
        return self.param_decl(children, is_step=True)

    def learnable(self, children):
        return children[0] if children else None

    def interval(self, children):
        low, high = children
        return (low, high)

    def init(self, children):
        target, expr = children
        return Init(target.span, target, expr)

    def assignment(self, children):
        target, expr = children
        return Assignment(target.span, target, expr)

    def plain_target(self, children):
        (name,) = children
        return Target(str(name), None, Span.of(name))

    def indexed_target(self, children):
        name, offset = children
        return Target(str(name), offset, Span.of(name))

    # indices ---------------------------------------------------------------------------------
    def index_now(self, children):
        return 0

    def index_ahead(self, children):
        return _small_int(children[0])

    def index_back(self, children):
        return -_small_int(children[0])

    # expressions -----------------------------------------------------------------------------
    def number(self, children):
        (token,) = children
        return Number(Span.of(token), _read_number(token))

    def name(self, children):
        (token,) = children
        return Name(Span.of(token), str(token))

    def indexed(self, children):
        token, offset = children
        return Indexed(Span.of(token), str(token), offset)

    def call(self, children):
        token, *args = children
        args = tuple(a for a in args if a is not None)
        return _compound(Call, Span.of(token), *args, name=str(token), args=args)

    def paren(self, children):
        (inner,) = children
        return _compound(Unary, inner.span, inner, op="()", operand=inner)

    def neg(self, children):
        (operand,) = children
        return _compound(Unary, operand.span, operand, op="-", operand=operand)

    def pos(self, children):
        (operand,) = children
        return operand

    def _binary(op):  # noqa: N805 - a factory used while the class is built
        def build(self, children):
            left, right = children
            return _compound(Binary, left.span.to(right.span), left, right, op=op, left=left, right=right)

        return build

    add = _binary("+")
    sub = _binary("-")
    mul = _binary("*")
    div = _binary("/")
    pow = _binary("**")
    del _binary


def _small_int(token: lark.Token) -> int:
    if len(token) > 6:
        raise _LimitExceededError("time offset too large", Span.of(token))
    return int(token)


@functools.cache
def _parser() -> lark.Lark:
    grammar = resources.files("odenet.language").joinpath("grammar.lark").read_text(encoding="utf-8")
    return lark.Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        transformer=_Builder(),
        maybe_placeholders=True,
    )


# ---------------------------------------------------------------------------------------------------
# Errors in human words

# What a terminal of the grammar is called in a message.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "NUMBER": "a number",
    "INT": "a whole number",
    "DOCSTRING": 'a """doc string"""',
    "_NL": "the end of the line",
    "$END": "the end of the file",
}
_EXPRESSION_START = {"NAME", "NUMBER", "LPAR", "MINUS", "PLUS"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH", "POWER"}
_STATEMENT_KEYWORDS = {"SCHEME", "STATE", "PARAM", "STEP", "FUNCTION", "INPUT", "OUTPUT", "INIT"}


def _describe_terminal(name: str) -> str:
    if name in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:
        return name.lower()
    return f"'{pattern.value}'"


def _describe_expected(expected: set[str]) -> str:
    expected = set(expected)
    if _STATEMENT_KEYWORDS <= expected:
        return (
            "a statement (scheme, state, param, step, function, input, output, init, "
            "a stage 'k1 = ...' or an update 'x[n+1] = ...')"
        )
    words = []
    if _EXPRESSION_START <= expected:
        expected -= _EXPRESSION_START
        words.append("an expression (a number, a name, '(' or '-')")
    if _OPERATORS <= expected:
        expected -= _OPERATORS
        words.append("an operator (+ - * / **)")
    words += sorted(_describe_terminal(t) for t in expected)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def _describe_token(token: lark.Token) -> str:
    if token.type == "$END":
        return "end of file"
    if token.type == "_NL":
        return "end of line"
    if token.type == "DOCSTRING":
        return "doc string"
    if token.type in ("NAME", "NUMBER", "INT"):
        return f"{_TERMINAL_WORDS[token.type][2:]} '{token}'"
    return f"'{token}'"


def _location(source: str, lines: list[str], line: int, column: int, end_column: int | None = None):
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    return Location(source, line, column, text, end_column)


def _acceptable(err: lark.UnexpectedInput) -> set[str]:
    """The terminals the parser would accept at the error: exact, where lark's own set is the
    LALR state's (which merges contexts and would offer 'learnable' inside an update)."""
    interactive = getattr(err, "interactive_parser", None)
    if interactive is not None:
        try:
            return set(interactive.accepts())
        except lark.exceptions.LarkError:  # a state lark cannot probe: fall back to its own set
            pass
    return set(getattr(err, "expected", None) or getattr(err, "allowed", None) or ())


def _character_error(source, lines, text, err: lark.UnexpectedCharacters) -> SchemeSyntaxError:
    char = text[err.pos_in_stream]
    where = _location(source, lines, err.line, err.column)
    if char == '"':
        if text.startswith('"""', err.pos_in_stream):
            message = 'unterminated doc string: expected a closing """'
        else:
            message = 'unexpected \'"\': the only strings are doc strings in triple quotes """..."""'
    elif char == "\x00":
        message = "unexpected NUL byte: a scheme file is text"
    elif char == "_":
        message = "unexpected '_': names start with a letter (names starting with '_' are not allowed)"
    elif not char.isprintable() and not char.isspace():
        message = f"unexpected control character {char!r}"
    else:
        allowed = {t for t in _acceptable(err) if not t.startswith("__IGNORE")}
        message = f"unexpected character {char!r}"
        if allowed:
            message += f": expected {_describe_expected(allowed)}"
    return SchemeSyntaxError(message, where)


def _token_error(source, lines, err: lark.UnexpectedToken) -> SchemeSyntaxError:
    token = err.token
    if token.type == "$END":
        where = _location(source, lines, len(lines) or 1, len(lines[-1]) + 1 if lines else 1)
    else:
        where = _location(source, lines, token.line, token.column, token.end_column)
    message = f"unexpected {_describe_token(token)}: expected {_describe_expected(_acceptable(err))}"
    return SchemeSyntaxError(message, where)


def source_lines(text: str) -> list[str]:
    return text.split("\n")


def parse_syntax(text: str, source: str = "<string>") -> list[Statement]:
    """Parse scheme text into a list of statements, or raise :class:`SchemeSyntaxError`."""
    lines = source_lines(text)
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise SchemeSyntaxError(
            f"file too large: a scheme is at most {MAX_SOURCE_BYTES // 1024} KiB of text",
            _location(source, lines, 1, 1),
        )
    for number, line in enumerate(lines, start=1):
        for column, char in enumerate(line, start=1):
            if "\ud800" <= char <= "\udfff":
                raise SchemeSyntaxError(
                    "invalid character: a lone surrogate is not text",
                    _location(source, lines, number, column),
                )
    try:
        return _parser().parse(text + "\n")
    except _LimitExceededError as exc:
        raise SchemeSyntaxError(
            exc.message, _location(source, lines, exc.span.line, exc.span.column)
        ) from None
    except lark.UnexpectedCharacters as exc:
        raise _character_error(source, lines, text + "\n", exc) from None
    except lark.UnexpectedToken as exc:
        raise _token_error(source, lines, exc) from None
    except lark.UnexpectedEOF as exc:  # not reached with the trailing newline, kept for safety
        raise SchemeSyntaxError(
            f"unexpected end of file: expected {_describe_expected(set(exc.expected))}",
            _location(source, lines, len(lines), len(lines[-1]) + 1),
        ) from None
