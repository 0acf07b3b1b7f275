"""Networks built from schemes: residual-function families and classifiers.

:class:`ModelConfig` is plain values and loads without torch (the command line reads its defaults);
the networks import torch when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from odenet.models.config import ModelConfig

if TYPE_CHECKING:
    from odenet.models.classifier import Classifier, build_model
    from odenet.models.families import make_function
    from odenet.models.spectra import trained_stability

__all__ = ["Classifier", "ModelConfig", "build_model", "make_function", "trained_stability"]

_LAZY = {
    "Classifier": "classifier",
    "build_model": "classifier",
    "make_function": "families",
    "trained_stability": "spectra",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"odenet.models.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'odenet.models' has no attribute {name!r}")
