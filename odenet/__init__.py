"""odenet: numerical ODE discretization schemes as neural-network architectures.

Write a scheme in the scheme language, ``parse`` or ``load`` it into a symbolic
:class:`Scheme`, analyze it and compile it into a trainable PyTorch module. Importing odenet does
not import torch: only the parts that need it do, when they are first used.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from odenet.analysis import Analysis, analyze, derive_inverse
from odenet.errors import (
    CheckpointError,
    ConfigError,
    ConvergenceError,
    DoubleBackwardError,
    FunctionOutputError,
    MissingDependencyError,
    NotReversibleError,
    OdenetError,
    ReconstructionError,
    SchemeNotFoundError,
    SchemeSyntaxError,
    SchemeValueError,
    TrainingDivergedError,
    UnsupportedSchemeError,
)
from odenet.ir import Equation, FunctionSymbol, Param, Scheme, format_scheme
from odenet.language import parse
from odenet.library import library_names, load
from odenet.report.plotting import plot_spectra, plot_stability

if TYPE_CHECKING:
    from odenet.nn import MEMORY_MODES, SchemeBlock, Solver, compile, profile, residual_functions


def __dir__() -> list[str]:
    """The public names (``__all__``) and the subpackages, not the imports this file needs
    (``TYPE_CHECKING``, ``annotations``, ...)."""
    modules = [name for name, v in globals().items() if getattr(v, "__name__", "") == f"odenet.{name}"]
    return sorted({*__all__, *modules})


def __getattr__(name: str):
    """``odenet.compile`` and ``odenet.SchemeBlock`` load torch on first use, not at import."""
    if name in ("compile", "SchemeBlock", "MEMORY_MODES", "Solver", "residual_functions", "profile"):
        from odenet import nn

        return getattr(nn, name)
    raise AttributeError(f"module 'odenet' has no attribute {name!r}")


try:
    __version__ = version("odenet-schemes")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [  # noqa: RUF022 - the first six come from __getattr__
    "compile",
    "SchemeBlock",
    "MEMORY_MODES",
    "Solver",
    "residual_functions",
    "profile",
    "Analysis",
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "FunctionOutputError",
    "DoubleBackwardError",
    "Equation",
    "FunctionSymbol",
    "MissingDependencyError",
    "NotReversibleError",
    "OdenetError",
    "Param",
    "ReconstructionError",
    "Scheme",
    "SchemeNotFoundError",
    "SchemeSyntaxError",
    "SchemeValueError",
    "TrainingDivergedError",
    "UnsupportedSchemeError",
    "__version__",
    "analyze",
    "derive_inverse",
    "format_scheme",
    "library_names",
    "load",
    "parse",
    "plot_spectra",
    "plot_stability",
]
