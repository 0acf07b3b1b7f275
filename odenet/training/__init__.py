"""Training networks built from schemes, data sets, checkpoints.

:class:`TrainSettings` and the per-data-set defaults are plain values and load without torch (the
command line reads them); the rest imports torch when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from odenet.training.settings import DATA_DEFAULTS, DataDefaults, TrainSettings, default_stages

if TYPE_CHECKING:
    from odenet.training.checkpoint import load_checkpoint, save_checkpoint
    from odenet.training.data import Dataset, load_data
    from odenet.training.loop import evaluate, train

__all__ = [
    "DATA_DEFAULTS",
    "DataDefaults",
    "Dataset",
    "TrainSettings",
    "default_stages",
    "evaluate",
    "load_checkpoint",
    "load_data",
    "save_checkpoint",
    "train",
]

_LAZY = {
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "Dataset": "data",
    "load_data": "data",
    "evaluate": "loop",
    "train": "loop",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"odenet.training.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'odenet.training' has no attribute {name!r}")
