"""Checkpoints: everything needed to rebuild a trained model without the original files.

A checkpoint is a ``torch.save`` of plain values and tensors (so ``torch.load(weights_only=True)``
reads it)::

    {"format": "odenet-checkpoint", "version": 1,
     "config": ModelConfig.to_json()  (holds the scheme's text),
     "data": {"name", "train_fraction", "seed"},
     "training": the optimizer settings,
     "epoch": epochs completed, "metrics": the last epoch's metrics,
     "state_dict": the model's weights and buffers}

It is written to a temporary file in the same folder and renamed over the target, so an interrupted
run leaves either the previous checkpoint or the new one, never half a file.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch

from odenet.errors import CheckpointError, OdenetError, plain_message
from odenet.files import atomic_path
from odenet.models.classifier import Classifier, build_model
from odenet.models.config import ModelConfig

__all__ = [
    "FORMAT",
    "USER_FILES",
    "checkpoint_content",
    "load_checkpoint",
    "save_checkpoint",
    "weights_only",
]

FORMAT = "odenet-checkpoint"
VERSION = 1
USER_FILES = (
    "For a network of your own, save the whole block or the model that holds it (torch.save(block)) "
    "and its input (torch.save(x), or torch.save({'x': x, 'context': {...}}) with the block's keyword "
    "arguments), then run: odenet stability MODEL.pt --input X.pt --trust-pickle (unpickling runs "
    "code from the file: only for files you trust); or in Python, "
    "odenet.models.trained_stability(block, x, context=...)"
)


def checkpoint_content(model: Classifier, **extra) -> dict:
    """What a checkpoint holds: ``model``'s config and state_dict (on the CPU) and ``extra`` fields."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": model.config.to_json(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }


def save_checkpoint(path: str | os.PathLike, model: Classifier, **extra) -> Path:
    """Write ``model`` (its config and state_dict) and ``extra`` fields to ``path`` atomically."""
    path = Path(path)
    content = checkpoint_content(model, **extra)
    with atomic_path(path) as temporary:
        torch.save(content, temporary)
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[Classifier, dict]:
    """The model saved in ``path`` (in eval mode, on the CPU) and the checkpoint's fields."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = plain_message(str(exc))
        if zipfile.is_zipfile(path) and "Weights only load failed" in text:  # torch.save(model)
            raise CheckpointError(
                f"{path}: a pickled object (such as torch.save(model)), not a checkpoint written by "
                f"'odenet train'. {USER_FILES}"
            ) from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise CheckpointError(
            f"{path}: not an odenet checkpoint (torch.load could not read it: {first})"
        ) from None
    refusal = weights_only(path, content)
    if refusal is not None:
        raise CheckpointError(
            f"{refusal} (a checkpoint written by 'odenet train' holds a dict with format={FORMAT!r}). "
            f"{USER_FILES}"
        )
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: not an odenet checkpoint (a file written by 'odenet train' holds a dict with "
            f"format={FORMAT!r}). {USER_FILES}"
        )
    if content.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {content.get('version')!r}; this odenet reads version {VERSION}"
        )
    try:
        config = ModelConfig.from_json(content["config"])
        model = build_model(config)
        model.load_state_dict(content["state_dict"])
    except OdenetError as exc:
        raise CheckpointError(f"{path}: the checkpoint's model cannot be rebuilt: {exc}") from None
    except (KeyError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: the checkpoint is damaged ({type(exc).__name__}: {exc})") from None
    model.eval()
    return model, content


def weights_only(path, content) -> str | None:
    """What to say of a file that holds only a state dict (tensors by name), or None for any other
    content: the network's architecture is not in it."""
    if (
        not isinstance(content, dict)
        or not content
        or not all(isinstance(v, torch.Tensor) for v in content.values())
    ):
        return None
    count = f"{len(content)} tensor{'s' if len(content) > 1 else ''}"
    return f"{path}: weights only (a state dict of {count}): the network's architecture is not in the file"
