"""Compiled schemes as PyTorch modules (imports torch; ``import odenet`` does not)."""

from odenet.errors import ConvergenceError, DoubleBackwardError, ReconstructionError
from odenet.nn.block import MEMORY_MODES, SchemeBlock, compile
from odenet.nn.drift import GUARDS
from odenet.nn.modes import (
    MODES,
    Adjoint,
    Autograd,
    Checkpoint,
    FixedPoint,
    Implicit,
    MemoryMode,
    PassReport,
    Reversible,
)
from odenet.nn.profiling import Profile, profile
from odenet.nn.replay import is_recomputing
from odenet.nn.residual import ResidualFunction, residual_functions
from odenet.nn.solvers import SOLVER_METHODS, SolveInfo, Solver

__all__ = [
    "GUARDS",
    "MEMORY_MODES",
    "MODES",
    "SOLVER_METHODS",
    "Adjoint",
    "Autograd",
    "Checkpoint",
    "ConvergenceError",
    "DoubleBackwardError",
    "FixedPoint",
    "Implicit",
    "MemoryMode",
    "PassReport",
    "Profile",
    "ReconstructionError",
    "ResidualFunction",
    "Reversible",
    "SchemeBlock",
    "SolveInfo",
    "Solver",
    "compile",
    "is_recomputing",
    "profile",
    "residual_functions",
]
