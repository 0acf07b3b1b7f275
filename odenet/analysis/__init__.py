"""Analysis of a scheme: linear stability, zero-stability, order, reversibility and the inverse,
symplecticity and symmetry.

The symbolic core: it imports sympy, numpy and networkx, never torch.
"""

from odenet.analysis.analyze import Analysis, Reversibility, Stability, analyze
from odenet.analysis.inverse import derive_inverse
from odenet.analysis.structure import Structure, structure_of

__all__ = ["Analysis", "Reversibility", "Stability", "Structure", "analyze", "derive_inverse", "structure_of"]
