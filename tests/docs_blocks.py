"""Blocks of the docs that the program writes.

- Named blocks between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``: the usage of
  `odenet train` (docs/training.md) and the code `odenet compile leapfrog --emit` prints
  (docs/compile.md).
- Console sessions between ``<!-- console -->`` and ``<!-- end console -->`` (the tutorial): the
  ``$ odenet ...`` lines are the source, everything else in the block is their output, produced by
  running them in order, in one scratch folder holding the files of ``docs/tutorial/``, each in a
  fresh ``python -m odenet`` process (stdout and stderr as a terminal interleaves them; progress
  bars are off without one). A session that trains is rebuilt only by the rewrite (minutes); the
  others are compared exactly by ``tests/test_docs.py``, and the slow test replays the whole
  tutorial and compares it with every number masked.

``python tests/docs_blocks.py`` rewrites all of them from the program's output (and copies the
stability picture the tutorial shows); ``tests/test_docs.py`` fails when a block has drifted.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
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
    return re.compile(rf"(<!-- generated: {name} -->\n)(.*?)(<!-- end generated -->)", re.S)


def drifted() -> list[str]:
    """The blocks whose text differs from the program's output (file: name)."""
    out = []
    for file, (name, make) in BLOCKS.items():
        match = _pattern(name).search((ROOT / file).read_text(encoding="utf-8"))
        if match is None or match.group(2) != make() + "\n":
            out.append(f"{file}: {name}")
    return out


# --- console sessions -----------------------------------------------------------------------------

SESSIONS = {"docs/tutorial.md": ROOT / "docs" / "tutorial"}
CONSOLE = re.compile(r"(<!-- console -->\n```console\n)(.*?)(```\n<!-- end console -->)", re.S)
TRAINING = {"train", "evaluate", "stability"}  # commands that need a trained network (slow)
PICTURES = {"docs/tutorial.md": [("runs/damped/stability/spectra.png", "damped-spectra.png")]}


def commands(block: str) -> list[str]:
    return [line[2:] for line in block.splitlines() if line.startswith("$ ")]


def trains(block: str) -> bool:
    words = [shlex.split(c) for c in commands(block)]
    return any(w[1] in TRAINING and "--explain-defaults" not in w for w in words)


def run_command(command: str, folder: Path) -> str:
    """The console text of one ``odenet ...`` command run in ``folder``: the command line, then what
    it printed."""
    words = shlex.split(command)
    if words[0] != "odenet":
        raise ValueError(f"a console block runs odenet commands only, not {command!r}")
    env = {**os.environ, "COLUMNS": WIDTH, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "odenet", *words[1:]],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"$ {command} exited with {done.returncode}:\n{done.stdout}")
    output = done.stdout.rstrip()
    return f"$ {command}\n" + (output + "\n" if output else "")


def session_blocks(file: str) -> list[str]:
    return [m.group(2) for m in CONSOLE.finditer((ROOT / file).read_text(encoding="utf-8"))]


def replay(file: str, folder: Path, only_quick: bool = False) -> list[str | None]:
    """Each console block of ``file`` as the program prints it now (None for a training block
    skipped with ``only_quick``), run in ``folder`` after copying the session's files into it."""
    for source in SESSIONS[file].iterdir():
        if source.suffix != ".png":
            shutil.copy(source, folder / source.name)
    out: list[str | None] = []
    for block in session_blocks(file):
        if only_quick and trains(block):
            out.append(None)
            continue
        out.append("".join(run_command(c, folder) for c in commands(block)))
    return out


def masked(text: str) -> str:
    """``text`` with every number replaced by ``#``: what stays when timings and accuracies vary."""
    return re.sub(r"\d+(\.\d+)?(e[-+]?\d+)?", "#", text)


def console_drifted(only_quick: bool = True) -> list[str]:
    """The console blocks whose text differs from the program's output: exactly for the quick ones;
    with ``only_quick=False`` also the training ones, numbers masked."""
    out = []
    for file in SESSIONS:
        with tempfile.TemporaryDirectory() as folder:
            fresh = replay(file, Path(folder), only_quick)
        for index, (old, new) in enumerate(zip(session_blocks(file), fresh, strict=True)):
            if new is None:
                continue
            same = old == new if not trains(old) else masked(old) == masked(new)
            if not same:
                out.append(f"{file}: console block {index + 1} ($ {commands(old)[0]})")
    return out


def rewrite_sessions() -> None:
    for file in SESSIONS:
        path = ROOT / file
        with tempfile.TemporaryDirectory() as folder:
            fresh = iter(replay(file, Path(folder)))

            def fill(match: re.Match, fresh=fresh) -> str:
                return match.group(1) + next(fresh) + match.group(3)

            text = CONSOLE.sub(fill, path.read_text("utf-8"))
            for made, shown in PICTURES.get(file, []):
                shutil.copy(Path(folder) / made, SESSIONS[file] / shown)
        path.write_text(text, encoding="utf-8")


def rewrite() -> None:
    for file, (name, make) in BLOCKS.items():
        path = ROOT / file
        text = path.read_text(encoding="utf-8")
        new, count = _pattern(name).subn(lambda m, make=make: m.group(1) + make() + "\n" + m.group(3), text)
        if count != 1:
            raise SystemExit(f"{file}: expected one block <!-- generated: {name} -->")
        path.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    rewrite()
    print("rewrote", ", ".join(BLOCKS))
    if "--no-sessions" not in sys.argv:
        rewrite_sessions()  # trains networks: minutes
        print("replayed", ", ".join(SESSIONS))
