"""Writing files so that a failure never leaves half of one: every file odenet writes goes through
:func:`atomic_path` (reports, figures, metrics, checkpoints)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from odenet.errors import ConfigError

__all__ = ["atomic_path", "finite_json", "output_lock", "write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; when the block ends normally the temporary
    replaces ``path`` in one rename, and when it raises the temporary is removed and ``path`` is left
    as it was. Works for anything that writes to a path (text, ``savefig``, ``torch.save``)."""
    path = Path(path)
    # unique per process and per call: two writers never share a temporary
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def finite_json(value, **kwargs) -> str:
    """``json.dumps`` of ``value`` with every NaN or infinity written as ``null`` (JSON has neither;
    Python's ``NaN`` and ``Infinity`` make a file other readers reject)."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), allow_nan=False, **kwargs)


@contextlib.contextmanager
def output_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold an advisory lock on ``directory`` (``.odenet.lock`` inside it) for the block: a second
    writer to the same folder gets a :class:`~odenet.errors.ConfigError` at once instead of
    interleaving its files with the first one's. Where the platform has no ``fcntl`` the block runs
    unlocked."""
    directory = Path(directory)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield directory
        return
    handle = open(directory / ".odenet.lock", "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ConfigError(
                f"--out {directory}: another odenet run is writing there ({holder}); "
                "wait for it to finish or choose another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield directory
    finally:
        handle.close()
