"""What a model is made of, in plain values: the configuration a checkpoint stores (no torch here)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from odenet.errors import ConfigError
from odenet.options import Activation, Family, Layout, Memory, SolverMethod, choices, spatial_dims

__all__ = ["ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """What a model is made of. Plain values only (it goes into checkpoints and JSON)."""

    scheme: str  # the scheme's text in the scheme language
    # one example: (features,) for mlp, (channels, H, W) for conv, (channels, length) for conv1d
    input_shape: tuple[int, ...]
    outputs: int  # classes (or the regression's output size)
    layout: Layout = "mlp"
    family: Family = "chang"
    activation: Activation = "tanh"
    width: int = 32  # features or channels of each state in the first stage
    hidden: int | None = None  # hidden size of the residual functions (default: width)
    depth: int = 16  # layers per stage
    stages: int = 1
    memory: Memory = "autograd"
    shared: bool = False  # one set of residual functions for all layers of a stage
    # per-layer functions that start as copies of one set (weights constant in depth: the smooth
    # initialization of Sander et al. 2022), then train freely
    smooth_init: bool = False
    # scheme parameters other than their defaults, as sorted (name, value) pairs (a mapping is
    # accepted): the config stays hashable and cannot be changed after it is made
    params: tuple[tuple[str, float], ...] | Mapping[str, float] = ()
    stem: bool = True
    head: bool = True
    contraction: float | None = None  # residual functions with Lipschitz constant <= this (families.py)
    solver: str = "anderson"  # how implicit layers solve their steps (odenet.nn.Solver's method)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(
            self, "params", tuple(sorted((str(k), float(v)) for k, v in dict(self.params).items()))
        )
        problems = []
        for name, value, allowed in (
            ("layout", self.layout, choices(Layout)),
            ("family", self.family, choices(Family)),
            ("activation", self.activation, choices(Activation)),
            ("memory", self.memory, choices(Memory)),
            ("solver", self.solver, choices(SolverMethod)),
        ):
            if value not in allowed:
                problems.append(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        for name in ("width", "depth", "stages", "outputs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a whole number >= 1, not {value!r}")
        for name, value in dict(self.params).items():
            if not math.isfinite(float(value)):
                problems.append(f"parameter {name} must be a finite number, not {value!r}")
        if self.contraction is not None and not (
            isinstance(self.contraction, (int, float))
            and not isinstance(self.contraction, bool)
            and 0 < self.contraction < 1
        ):
            problems.append(f"contraction must be a number in (0, 1) or None, not {self.contraction!r}")
        if self.hidden is not None and (not isinstance(self.hidden, int) or self.hidden < 1):
            problems.append(f"hidden must be a whole number >= 1 or None, not {self.hidden!r}")
        expected_dims = 1 + spatial_dims(self.layout) if self.layout in choices(Layout) else None
        if expected_dims is not None and len(self.input_shape) != expected_dims:
            problems.append(
                f"the {self.layout} layout takes inputs of {expected_dims} dimension(s) per example, "
                f"got input_shape {self.input_shape}"
            )
        if self.shared and self.smooth_init:
            problems.append(
                "smooth_init gives per-layer functions equal starting weights; shared functions are one "
                "set already (choose one)"
            )
        if problems:
            raise ConfigError("invalid model config: " + "; ".join(problems))

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["input_shape"] = list(self.input_shape)
        out["params"] = dict(self.params)
        return out

    @classmethod
    def from_json(cls, data: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**data)
