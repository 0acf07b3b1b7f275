"""Argument types and helpers shared by the subcommands: choices from :mod:`odenet.options`, defaults
read from the configuration dataclasses, so that the command line restates neither."""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any

from odenet.options import choices

__all__ = ["add_choice", "add_field", "default_of", "param_argument", "positive"]


def default_of(config: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``config``."""
    for f in dataclasses.fields(config):
        if f.name == name:
            if f.default is dataclasses.MISSING:
                raise LookupError(f"{config.__name__}.{name} has no default")
            return f.default
    raise LookupError(f"{config.__name__} has no field {name}")


def add_field(
    parser: argparse.ArgumentParser, flag: str, config: type, name: str, help: str, type: Any = None
) -> None:
    """``--flag`` for field ``name`` of the dataclass ``config``, with that field's default."""
    default = default_of(config, name)
    parser.add_argument(flag, type=type, default=default, help=f"{help} (default {default})")


def add_choice(
    parser: argparse.ArgumentParser, flag: str, option: Any, help: str, default: Any = None
) -> None:
    """``--flag`` taking one of the values of the ``Literal`` type ``option``."""
    values = choices(option)
    if default is not None:
        help = f"{help} (default {default})"
    parser.add_argument(flag, choices=values, default=default, help=help)


def param_argument(text: str) -> tuple[str, float]:
    """``NAME=NUMBER``, as in ``--param h=0.05``."""
    name, sep, number = text.partition("=")
    try:
        if not sep:
            raise ValueError
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, such as h=0.05, not {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number in NAME=NUMBER, not {text!r}")
    return name.strip(), value


def finite(text: str) -> float:
    """A finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, not {text!r}")
    return value


def add_step(parser: argparse.ArgumentParser) -> None:
    """``--step VALUE``: the value of the scheme's step parameter, whatever it is called."""
    parser.add_argument(
        "--step",
        type=finite,
        metavar="VALUE",
        help="the step size: the scheme's step parameter (h, or the one its 'step' line declares)",
    )


def params_with_step(scheme, params: dict[str, float], step: float | None) -> dict[str, float]:
    """``params`` with the step's value from ``--step`` under the scheme's own name for it."""
    if step is None:
        return params
    from odenet.errors import ConfigError

    if scheme.step_param is None:
        raise ConfigError(
            f"--step: scheme {scheme.name} has no step parameter {scheme.step} "
            "(declare one with a line such as 'step h = 0.1')"
        )
    if scheme.step in params and params[scheme.step] != step:
        raise ConfigError(f"--step {step:g} and --param {scheme.step}={params[scheme.step]:g} disagree")
    return {**params, scheme.step: step}


def data_argument(text: str) -> str:
    """A bundled data set's name, or a path ending in .npz or .pt (read when the command runs)."""
    from odenet.options import DataName
    from odenet.training.settings import is_data_file

    if text in choices(DataName) or is_data_file(text):
        return text
    raise argparse.ArgumentTypeError(
        f"expected one of {', '.join(choices(DataName))}, or a file PATH.npz or PATH.pt, not {text!r}"
    )


def positive(text: str) -> int:
    """A whole number >= 1."""
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return number
