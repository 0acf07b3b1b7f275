"""Analysis of a scheme: linear stability, zero-stability, order, reversibility and the inverse.

The symbolic core: it imports sympy, numpy and networkx, never torch.
"""

from odenet.analysis.analyze import Analysis, Reversibility, Stability, analyze
from odenet.analysis.inverse import derive_inverse

__all__ = ["Analysis", "Reversibility", "Stability", "analyze", "derive_inverse"]
