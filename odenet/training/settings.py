"""What a training run is told, in plain values (no torch at import: the command line reads these
defaults): :class:`TrainSettings`, and the model sizes each bundled data set gets when not told."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from odenet.errors import ConfigError
from odenet.options import DataName, Layout, Optimizer, Schedule, StabilityTarget, choices

__all__ = ["DATA_DEFAULTS", "DataDefaults", "TrainSettings", "default_stages"]


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained (the optimizer, its schedule, the seed, the device)."""

    epochs: int = 5
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 0.0
    optimizer: Optimizer = "adam"  # "adam", or "sgd" with momentum 0.9
    schedule: Schedule = "cosine"  # "cosine" decay to 0 over the run, or "constant"
    smoothness: float = 0.0  # weight of Chang et al.'s time-smoothness regularizer
    stability_penalty: float = 0.0  # weight of the stability regularizer (odenet.models.penalty)
    stability_target: StabilityTarget = "interval"  # what it bounds
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        problems = []
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a whole number >= 1, not {value!r}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"lr must be a positive number, not {self.lr!r}")
        for name in ("weight_decay", "smoothness", "stability_penalty"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                problems.append(f"{name} must be a finite number >= 0, not {value!r}")
        for name, allowed in (
            ("optimizer", choices(Optimizer)),
            ("schedule", choices(Schedule)),
            ("stability_target", choices(StabilityTarget)),
        ):
            if getattr(self, name) not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        import torch  # the device is checked by torch; the settings' defaults load without it

        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError):
            problems.append(f"device must be a torch device such as cpu or cuda, not {self.device!r}")
        else:
            if device.type == "cuda" and not torch.cuda.is_available():
                problems.append("device cuda was asked for, and this machine has no CUDA device")
        if problems:
            raise ConfigError("invalid training settings: " + "; ".join(problems))


@dataclass(frozen=True)
class DataDefaults:
    """The model a data set gets when the command line does not say: its layout, the width of a
    state, and whether an input layer (stem) and an output layer (head) are used."""

    layout: Layout
    width: int
    stem: bool = True
    head: bool = True


DATA_DEFAULTS: Mapping[DataName, DataDefaults] = MappingProxyType(
    {
        "digits": DataDefaults("conv", 16),
        "mnist1d": DataDefaults("conv1d", 32),
        "rings": DataDefaults("mlp", 16),
        # the state is the point itself: a flow of x -> -x**3 on the line, no stem or head
        "cross1d": DataDefaults("mlp", 1, stem=False, head=False),
    }
)


# A user's own data (--data FILE.npz): the layout is read from the arrays.
FILE_DEFAULTS: Mapping[Layout, DataDefaults] = MappingProxyType(
    {"mlp": DataDefaults("mlp", 32), "conv1d": DataDefaults("conv1d", 32), "conv": DataDefaults("conv", 16)}
)


DATA_SUFFIXES = (".npz", ".pt")  # --data PATH.npz / PATH.pt: a file of the user's


def is_data_file(name: str) -> bool:
    """Whether ``--data`` names a file of the user's (by its suffix) rather than a bundled set."""
    return name.lower().endswith(DATA_SUFFIXES)


def default_stages(layout: Layout) -> int:
    """Stages when not told: two for images and signals (with downsampling between), one for vectors."""
    return 1 if layout == "mlp" else 2
