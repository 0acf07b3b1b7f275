"""The library of schemes that ships with odenet, and loading a scheme by name or path.

The ``.scheme`` files live in the repository's ``schemes/`` folder; a built wheel carries them as
``odenet/_schemes`` (see ``pyproject.toml``), so an installed odenet finds them without the source.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from odenet.errors import Location, SchemeNotFoundError, SchemeSyntaxError
from odenet.ir import Scheme
from odenet.language import parse

__all__ = ["describe", "library_dir", "library_names", "load", "read_scheme_file"]

SUFFIX = ".scheme"


def library_dir() -> Path:
    """The folder of library schemes: inside the installed package, else the source checkout's."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_schemes", here.parent / "schemes"):
        if candidate.is_dir():
            return candidate
    raise SchemeNotFoundError(f"the scheme library is missing: looked in {here / '_schemes'}")


def library_names() -> list[str]:
    """Names of the library schemes, sorted."""
    return sorted(p.stem for p in library_dir().glob("*" + SUFFIX))


def read_scheme_file(path: str | os.PathLike) -> Scheme:
    """Parse one ``.scheme`` file; its bytes must be UTF-8 (errors point at the offending byte)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        text_line = data.split(b"\n")[line - 1].decode("utf-8", "replace")
        raise SchemeSyntaxError(
            f"invalid UTF-8: byte 0x{data[exc.start]:02x} cannot start or continue a character; "
            "expected a UTF-8 text file",
            Location(str(path), line, column, text_line),
        ) from None
    return parse(text, source=str(path))


def load(name_or_path: str | os.PathLike) -> Scheme:
    """A library scheme by name (``load("leapfrog")``) or a scheme file by path; a name that is
    neither is tried as ``NAME.scheme`` (``load("t4")`` reads ``t4.scheme``)."""
    text = os.fspath(name_or_path)
    path = Path(text)
    if path.suffix == SUFFIX or os.sep in text or path.is_file():
        if not path.is_file():
            raise SchemeNotFoundError(f"no scheme file {text!r}")
        return read_scheme_file(path)
    names = library_names()
    if text in names:
        return read_scheme_file(library_dir() / (text + SUFFIX))
    if Path(text + SUFFIX).is_file():  # load("t4") reads t4.scheme in the working folder
        return read_scheme_file(text + SUFFIX)
    close = difflib.get_close_matches(text, names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else "."
    raise SchemeNotFoundError(
        f"no library scheme or file named {text!r} (nor {text + SUFFIX!r}){hint} "
        f"The library has: {', '.join(names)}"
    )


def describe(scheme: Scheme) -> str:
    """The one-line description: the first line of the doc string."""
    return scheme.doc.strip().splitlines()[0] if scheme.doc.strip() else ""
