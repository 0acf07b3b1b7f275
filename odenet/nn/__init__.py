"""Compiled schemes as PyTorch modules (imports torch; ``import odenet`` does not)."""

from odenet.errors import DoubleBackwardError, ReconstructionError
from odenet.nn.block import MEMORY_MODES, SchemeBlock, compile
from odenet.nn.replay import is_recomputing
from odenet.nn.reversible import GUARDS

__all__ = [
    "GUARDS",
    "MEMORY_MODES",
    "DoubleBackwardError",
    "ReconstructionError",
    "SchemeBlock",
    "compile",
    "is_recomputing",
]
