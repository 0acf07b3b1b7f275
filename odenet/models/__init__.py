"""Networks built from schemes: residual-function families and classifiers (imports torch)."""

from odenet.models.classifier import LAYOUTS, Classifier, ModelConfig, build_model
from odenet.models.families import FAMILIES, make_function

__all__ = ["FAMILIES", "LAYOUTS", "Classifier", "ModelConfig", "build_model", "make_function"]
