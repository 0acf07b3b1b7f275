"""The one error hierarchy of odenet.

Every error is an :class:`OdenetError`; each subclass also inherits the built-in exception a Python
user would catch for that kind of problem (``SyntaxError``, ``ValueError``, ``LookupError``,
``NotImplementedError``), so ``except ValueError`` keeps working around odenet calls.

Errors about scheme text carry a :class:`Location` and print like a compiler's::

    leapfrog.scheme:5:28: unknown name 'q': expected a parameter (h) or a state ... such as y[n]
        5 | y[n+1] = 2*y[n] - y[n-1] - q
          |                            ^
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "DoubleBackwardError",
    "FunctionOutputError",
    "Location",
    "MissingDependencyError",
    "NotReversibleError",
    "OdenetError",
    "ReconstructionError",
    "SchemeNotFoundError",
    "SchemeSyntaxError",
    "SchemeValueError",
    "Solve",
    "TrainingDivergedError",
    "UnsupportedSchemeError",
    "plain_message",
]

# How much of a very long line is quoted around the column of an error.
_QUOTE_WIDTH = 100


@dataclass(frozen=True)
class Location:
    """Where in a scheme's text something is: 1-based line and column, as editors count them."""

    source: str  # a file name, or "<string>"
    line: int
    column: int
    line_text: str = ""
    end_column: int | None = None  # exclusive; the caret spans [column, end_column)

    def __str__(self) -> str:
        return f"{self.source}:{self.line}:{self.column}"

    def quote(self) -> str:
        """The offending line with a caret under the column (long lines are cut around it)."""
        text = self.line_text.expandtabs(1).rstrip("\r\n")
        start = 0
        if len(text) > _QUOTE_WIDTH:
            start = max(0, min(self.column - 1 - _QUOTE_WIDTH // 2, len(text) - _QUOTE_WIDTH))
            text = text[start : start + _QUOTE_WIDTH]
        text = "".join(c if c.isprintable() else "?" for c in text)
        width = 1
        if self.end_column is not None and self.end_column > self.column:
            width = min(self.end_column - self.column, _QUOTE_WIDTH)
        gutter = str(self.line)
        pad = " " * len(gutter)
        caret = " " * max(0, self.column - 1 - start) + "^" * width
        return f"    {gutter} | {text}\n    {pad} | {caret}"


class OdenetError(Exception):
    """Base class of every error odenet raises on purpose."""


class _LocatedError(OdenetError):
    """An error about a place in scheme text.

    ``message`` says what is wrong and what was expected; ``location`` says where. ``errors`` holds
    every problem found in the same text (this one first), so a checker can report them all.
    """

    def __init__(self, message: str, location: Location | None = None):
        self.message = message
        self.location = location
        self.errors: list[_LocatedError] = [self]
        super().__init__(message)

    def __str__(self) -> str:
        if self.location is None:
            return self.message
        return f"{self.location}: {self.message}\n{self.location.quote()}"


class SchemeSyntaxError(_LocatedError, SyntaxError):
    """The text is not a well-formed scheme: a token or statement is not where the grammar allows it,
    the bytes are not UTF-8, or a size limit is exceeded."""

    def __init__(self, message: str, location: Location | None = None):
        _LocatedError.__init__(self, message, location)
        # SyntaxError's own attributes, so tools that know SyntaxError can point at the place.
        if location is not None:
            self.filename = location.source
            self.lineno = location.line
            self.offset = location.column
            self.text = location.line_text
        self.msg = message

    def __str__(self) -> str:  # SyntaxError defines its own __str__; keep ours
        return _LocatedError.__str__(self)


class SchemeValueError(_LocatedError, ValueError):
    """The text parses but breaks a rule of the language (an unknown name, a state updated twice, ...),
    or a :class:`~odenet.ir.Scheme` was built with inconsistent parts. Bad arguments given with a
    valid scheme are :class:`ConfigError`."""


class ConfigError(OdenetError, ValueError):
    """A bad argument or setting outside the scheme's text: an argument of ``compile`` or ``analyze``
    (functions, depth, memory mode, parameter values), a model configuration, training settings, or
    a data set that does not fit."""


class SchemeNotFoundError(OdenetError, LookupError):
    """``load`` was given a name that is neither a library scheme nor an existing file."""


class MissingDependencyError(OdenetError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


class NotReversibleError(OdenetError, ValueError):
    """The scheme's step has no explicit inverse."""


class UnsupportedSchemeError(OdenetError, NotImplementedError):
    """The scheme is valid but this operation does not support it (e.g. compiling an implicit step)."""


class CheckpointError(OdenetError, ValueError):
    """A file given as an odenet checkpoint is missing, unreadable, or not one of ours."""


class TrainingDivergedError(OdenetError, FloatingPointError):
    """The training loss became infinite or NaN; the message says where and what to lower."""


class ReconstructionError(OdenetError, FloatingPointError):
    """A memory-saving mode rebuilt a layer's input inaccurately (non-finite, or off by more than the
    tolerance): the gradient would be wrong, so none is returned."""


class DoubleBackwardError(OdenetError, RuntimeError):
    """A second-order gradient (``create_graph=True``) was asked of a memory mode that cannot give it."""


class FunctionOutputError(ConfigError, TypeError):
    """A function of a compiled scheme returned something the step cannot use: not a tensor, or a
    tensor not shaped like the state it updates (a broadcast would silently train another network).
    Names the function, the layer and both shapes. A :class:`ConfigError`: the functions given to
    ``compile`` do not fit the scheme's state."""


Solve = Literal["step", "adjoint", "rebuild", "eigenvalues"]


class ConvergenceError(OdenetError, ArithmeticError):
    """An iterative solve did not reach its tolerance: its result would be wrong, so none is
    returned. ``solve`` says which: an implicit layer's ``"step"``, its ``"adjoint"`` (backward
    pass), the reversible mode's fixed-point ``"rebuild"`` of a layer's input, or a trained network's
    ``"eigenvalues"``; ``layer``, ``residual`` and ``iterations`` say where and how far it got."""

    def __init__(
        self,
        message: str,
        layer: int | None = None,
        residual: float | None = None,
        iterations: int | None = None,
        solve: Solve | None = None,
    ):
        super().__init__(message)
        self.layer, self.residual, self.iterations = layer, residual, iterations
        self.solve: Solve | None = solve


def plain_message(text: str) -> str:
    """``text`` without terminal control sequences (torch's messages bold their warnings), stripped."""
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).strip()
