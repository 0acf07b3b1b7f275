"""What ``compile`` accepts besides a Scheme and modules: a scheme by name, path or text, and the
check that a function spec is a module or a factory (layer index -> module)."""

from __future__ import annotations

import os
from collections.abc import Callable

from torch import nn

from odenet.errors import ConfigError
from odenet.ir import Scheme
from odenet.language import parse
from odenet.library import load

__all__ = ["as_scheme", "call_factory"]


def as_scheme(scheme) -> Scheme:
    """A Scheme from a Scheme, a library name, a path to a ``.scheme`` file, or scheme text."""
    if isinstance(scheme, Scheme):
        return scheme
    if isinstance(scheme, (str, os.PathLike)):
        if isinstance(scheme, str) and "\n" in scheme.strip():
            return parse(scheme)
        return load(scheme)
    raise ConfigError(
        f"scheme: expected a Scheme (odenet.load, odenet.parse), a library name, a path or scheme text, "
        f"not {type(scheme).__name__}"
    )


def call_factory(name: str, factory: Callable, layer: int) -> nn.Module:
    """``factory(layer)``, or a refusal that says what a function spec is (``torch.tanh`` is not
    a factory: called with the layer index it raised torch's own TypeError)."""
    try:
        return factory(layer)
    except TypeError as error:
        raise ConfigError(
            f"function {name}: {getattr(factory, '__name__', factory)!s} is not a factory (called with the "
            f"layer index {layer}, it raised TypeError: {error}). Give an nn.Module shared by all layers "
            "(for a plain function such as torch.tanh, nn.Tanh() or a small nn.Module that calls it) or "
            "a factory, layer index -> nn.Module"
        ) from error
