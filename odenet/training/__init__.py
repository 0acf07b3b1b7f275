"""Training networks built from schemes, checkpoints, and the stability of trained networks."""

from odenet.training.checkpoint import load_checkpoint, save_checkpoint
from odenet.training.data import DATASETS, Dataset, load_data
from odenet.training.train import TrainSettings, evaluate, train

__all__ = [
    "DATASETS",
    "Dataset",
    "TrainSettings",
    "evaluate",
    "load_checkpoint",
    "load_data",
    "save_checkpoint",
    "train",
]
