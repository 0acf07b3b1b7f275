"""Blocks of the docs that the program writes: the usage of `odenet train` (docs/training.md) and the
code `odenet compile leapfrog --emit` prints (docs/compile.md), between markers
``<!-- generated: NAME -->`` and ``<!-- end generated -->``. ``tests/test_docs.py`` fails when a
block has drifted; ``python tests/docs_blocks.py`` rewrites them from the program's output."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTH = "100"  # argparse wraps usage at the terminal's width: fixed here


def train_usage() -> str:
    from odenet.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        (commands,) = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        usage = commands.choices["train"].format_usage()
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "```console\n$ odenet train --help\n" + usage.rstrip() + "\n```"


def emit_listing() -> str:
    from odenet.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["compile", "leapfrog", "--emit"])
    return "```python\n" + out.getvalue().rstrip() + "\n```"


BLOCKS = {
    "docs/training.md": ("train-usage", train_usage),
    "docs/compile.md": ("emit-leapfrog", emit_listing),
}


def _pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(\n<!-- end generated -->)", re.S)


def drifted() -> list[str]:
    """The blocks whose text differs from the program's output (file: name)."""
    out = []
    for file, (name, make) in BLOCKS.items():
        match = _pattern(name).search((ROOT / file).read_text(encoding="utf-8"))
        if match is None or match.group(2) != make():
            out.append(f"{file}: {name}")
    return out


def rewrite() -> None:
    for file, (name, make) in BLOCKS.items():
        path = ROOT / file
        text = path.read_text(encoding="utf-8")
        new, count = _pattern(name).subn(lambda m, make=make: m.group(1) + make() + m.group(3), text)
        if count != 1:
            raise SystemExit(f"{file}: expected one block <!-- generated: {name} -->")
        path.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    rewrite()
    print("rewrote", ", ".join(BLOCKS))
