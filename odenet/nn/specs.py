"""What ``compile`` accepts besides a Scheme and modules: a scheme by name, path or text, and the
functions: each a module shared by all layers or a factory (layer index -> module)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from torch import nn

from odenet.errors import ConfigError
from odenet.ir import Scheme
from odenet.language import parse
from odenet.library import load

__all__ = ["as_scheme", "build_functions", "call_factory"]


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


def build_functions(scheme: Scheme, functions: Mapping, depth: int) -> tuple[nn.ModuleDict, dict[str, bool]]:
    """The block's modules for ``functions`` (name -> shared module or factory) and which of them are
    shared; refuses missing or unexpected names and specs that are neither."""
    expected = [f.name for f in scheme.functions]
    given = list(functions)
    if sorted(given) != sorted(expected):
        missing = [n for n in expected if n not in functions]
        extra = [n for n in given if n not in expected]
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if extra:
            problems.append(f"unexpected {', '.join(extra)}")
        raise ConfigError(
            f"scheme {scheme.name} needs functions {', '.join(expected)}: {'; '.join(problems)}. "
            "Give each a factory (layer index -> nn.Module) or one shared nn.Module"
        )
    modules, shared = nn.ModuleDict(), {}
    for name in expected:
        spec = functions[name]
        if isinstance(spec, nn.Module):
            modules[name], shared[name] = spec, True
        elif callable(spec):
            per_layer = [call_factory(name, spec, i) for i in range(depth)]
            for i, module in enumerate(per_layer):
                if not isinstance(module, nn.Module):
                    raise ConfigError(
                        f"the factory for {name} returned {type(module).__name__} for layer {i}, "
                        "expected an nn.Module"
                    )
            modules[name], shared[name] = nn.ModuleList(per_layer), False
        else:
            raise ConfigError(
                f"function {name}: expected an nn.Module or a factory (layer index -> nn.Module), "
                f"not {type(spec).__name__}"
            )
    return modules, shared
