"""Fuzzing the language: whatever the text, only OdenetError comes out, quickly, and nothing runs.

Three sources of text: arbitrary strings, mutations of the library files, and hand-picked hostile
inputs. A fourth property generates random *valid* schemes and checks print -> parse gives them back.
"""

from __future__ import annotations

import builtins

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import random_scheme

import odenet
from odenet.library import library_dir

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_only_odenet_errors(text: str) -> None:
    try:
        odenet.parse(text, source="fuzz.scheme")
    except odenet.OdenetError as exc:
        str(exc)  # the message itself must render
        for error in exc.errors:
            assert error.location is None or error.location.line >= 1


LIBRARY_TEXTS = [path.read_text(encoding="utf-8") for path in sorted(library_dir().glob("*.scheme"))]
VOCABULARY = [
    "scheme",
    "state",
    "param",
    "function",
    "input",
    "output",
    "init",
    "learnable",
    "in",
    "n",
    "x[n]",
    "y[n-1]",
    "y[n+1]",
    "f(",
    ")",
    "(",
    "**",
    "*",
    "/",
    "+",
    "-",
    "=",
    ",",
    "[",
    "]",
    "0.5",
    "1e3",
    "10**10**10",
    '"""',
    "#",
    "\n",
    "\\\n",
    "__import__",
    "lambda",
    "exp(",
    "inf",
    "\x00",
]


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_text(text):
    _parse_only_odenet_errors(text)


@FUZZ
@given(st.lists(st.sampled_from(VOCABULARY), max_size=40).map("".join))
def test_token_soup(text):
    _parse_only_odenet_errors("scheme s\nstate x, y\n" + text)


@st.composite
def mutated_library_text(draw):
    text = draw(st.sampled_from(LIBRARY_TEXTS))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["delete", "insert", "duplicate_line", "swap_lines", "replace"]))
        i = draw(st.integers(0, len(text)))
        if kind == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 10)) :]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(VOCABULARY)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.characters()) + text[i + 1 :]
        else:
            lines = text.split("\n")
            a, b = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if kind == "duplicate_line":
                lines.insert(b, lines[a])
            else:
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
    return text


@FUZZ
@given(mutated_library_text())
def test_mutated_library_files(text):
    _parse_only_odenet_errors(text)


HOSTILE = {
    "os.system": "scheme s\nstate y\ny[n+1] = __import__('os').system('touch {marker}')",
    "dunder attribute": "scheme s\nstate y\ny[n+1] = y[n].__class__.__bases__",
    "attribute": "scheme s\nstate y\ny[n+1] = y[n].real",
    "lambda": "scheme s\nstate y\ny[n+1] = (lambda: 0)()",
    "sympify bait": "scheme s\nstate y\ny[n+1] = Symbol('x')",
    "power tower": "scheme s\nstate y\ny[n+1] = 10**10**10*y[n]",
    "exponent of power tower": "scheme s\nstate y\ny[n+1] = y[n]**(10**10**10)",
    "nested parentheses": "scheme s\nstate y\ny[n+1] = " + "(" * 10_000 + "y[n]" + ")" * 10_000,
    "nested calls": "scheme s\nstate y\ny[n+1] = " + "f(" * 10_000 + "y[n]" + ")" * 10_000,
    "long sum": "scheme s\nstate y\ny[n+1] = " + " + ".join(["y[n]"] * 5000),
    "nested unary minus": "scheme s\nstate y\ny[n+1] = " + "-" * 10_000 + "y[n]",
    "NUL bytes": "scheme s\x00\nstate y\x00",
    "empty": "",
    "only a BOM": "\ufeff",
    "lone surrogate": "scheme s\nstate y\ny[n+1] = y[n] + \ud800",
    "many lines": "scheme s\nstate y\n" + "k = 1\n" * 20_000,
    "huge lag": "scheme s\nstate y\ny[n+1] = y[n-99999999999]",
}


@pytest.mark.parametrize("text", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_input(text, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    called = []

    def forbidden(*args, **kwargs):
        called.append(args)
        raise AssertionError("eval/exec called while parsing")

    # Nothing in the parser may evaluate text: make eval and exec fail loudly while it runs.
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(odenet.OdenetError):
        odenet.parse(text.format(marker=marker))
    assert not marker.exists()
    assert not called


def test_library_parses_without_eval(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec called while parsing")

    texts = list(LIBRARY_TEXTS)
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    assert [odenet.parse(t).name for t in texts] == odenet.library_names()


# -- random valid schemes: print -> parse is the identity ---------------------------------------------


@settings(max_examples=200, deadline=None)
@given(random_scheme())
def test_random_schemes_round_trip(scheme):
    text = odenet.format_scheme(scheme)
    assert odenet.parse(text) == scheme, text
