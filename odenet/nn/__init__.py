"""Compiled schemes as PyTorch modules (imports torch; ``import odenet`` does not)."""

from odenet.errors import ConvergenceError, DoubleBackwardError, ReconstructionError
from odenet.nn.block import MEMORY_MODES, SchemeBlock, compile
from odenet.nn.replay import is_recomputing
from odenet.nn.reversible import GUARDS
from odenet.nn.solvers import SOLVER_METHODS, SolveInfo, Solver

__all__ = [
    "GUARDS",
    "MEMORY_MODES",
    "SOLVER_METHODS",
    "ConvergenceError",
    "DoubleBackwardError",
    "ReconstructionError",
    "SchemeBlock",
    "SolveInfo",
    "Solver",
    "compile",
    "is_recomputing",
]
