"""The scheme language: text to :class:`~odenet.ir.Scheme` (``parse``; the way back is
:func:`odenet.ir.format_scheme`)."""

from __future__ import annotations

from odenet.ir import Scheme
from odenet.language.resolve import resolve
from odenet.language.syntax import parse_syntax, source_lines

__all__ = ["parse"]


def parse(text: str, source: str | None = None) -> Scheme:
    """Read a scheme from its text.

    ``source`` names the text in error messages (a file name); errors are
    :class:`~odenet.errors.SchemeSyntaxError` or :class:`~odenet.errors.SchemeValueError`, each with
    the line and column of the problem, and ``.errors`` listing every problem found.
    """
    source = source or "<string>"
    if text.startswith("\ufeff"):  # a byte-order mark is not part of the text
        text = text[1:]
    statements = parse_syntax(text, source)
    return resolve(statements, source, source_lines(text))
