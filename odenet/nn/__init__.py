"""Compiled schemes as PyTorch modules (imports torch; ``import odenet`` does not)."""

from odenet.nn.block import MEMORY_MODES, SchemeBlock, compile
from odenet.nn.reversible import ReconstructionError

__all__ = ["MEMORY_MODES", "ReconstructionError", "SchemeBlock", "compile"]
