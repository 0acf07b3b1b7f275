"""The scheme language: text to :class:`~odenet.ir.Scheme` (``parse``; the way back is
:func:`odenet.ir.format_scheme`)."""

from __future__ import annotations

from odenet.errors import Location, SchemeSyntaxError
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
    name = text.strip()
    if "\n" not in name and name.endswith(".scheme"):
        raise SchemeSyntaxError(
            f"parse reads a scheme's text, and {name!r} is a file name: read the file with "
            f"odenet.load({name!r})",
            Location(source, 1, 1, text.splitlines()[0], len(text.splitlines()[0]) + 1),
        )
    statements = parse_syntax(text, source)
    return resolve(statements, source, source_lines(text))
