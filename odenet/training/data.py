"""The data sets ``odenet train`` knows. Nothing is downloaded: ``digits`` ships with scikit-learn,
the others are generated from a fixed seed.

==========  ===========================================================================================
``digits``  scikit-learn's bundled handwritten digits (UCI ML hand-written digits test set): 1797
            images of 8x8 pixels, values 0..16 scaled to [0, 1], 10 classes. Fixed split:
            ``train_test_split(test_size=360, stratify=labels, random_state=0)``, 1437 train / 360 test.
``rings``   2-D nested rings (Dupont et al. 2019): class 0 has radius in [0, 0.5], class 1 in [1, 1.5];
            1000 train / 1000 test points, uniform in angle and radius, generator seed 0 and 1.
``cross1d`` the 1-D regression ``x -> -x**3`` on [-1, 1] (a map that reverses the order of points, so
            a first-order flow cannot represent it: its trajectories would cross); 200 evenly spaced
            train points, 200 uniform test points (generator seed 1).
==========  ===========================================================================================

``train_fraction`` keeps that share of each class of the training set (at least one example per
class), chosen with the training seed; the test set is always whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from odenet.errors import ConfigError
from odenet.extras import require
from odenet.options import DataName, Layout, Task, choices

__all__ = ["Dataset", "load_data"]


@dataclass(frozen=True)
class Dataset:
    name: str
    task: Task
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    outputs: int  # classes, or the regression's output size

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_data(name: DataName, layout: Layout = "mlp", train_fraction: float = 1.0, seed: int = 0) -> Dataset:
    """The data set ``name``, shaped for ``layout`` (``conv`` gives digits as 1x8x8 images)."""
    if name not in choices(DataName):
        raise ConfigError(f"unknown data set {name!r}; expected one of {', '.join(choices(DataName))}")
    if not (0 < train_fraction <= 1):
        raise ConfigError(f"train_fraction must be in (0, 1], not {train_fraction!r}")
    if layout == "conv" and name != "digits":
        raise ConfigError(f"the conv layout needs images; {name!r} is not an image data set")
    if name == "digits":
        data = _digits(layout)
    elif name == "rings":
        data = _rings()
    else:
        data = _cross1d()
    if train_fraction < 1:
        data = _subset(data, train_fraction, seed)
    return data


def _digits(layout: str) -> Dataset:
    datasets = require("sklearn.datasets", "the digits data set")
    load_digits = datasets.load_digits
    train_test_split = require("sklearn.model_selection", "the digits data set").train_test_split

    digits = load_digits()
    x = digits.data.astype(np.float32) / 16.0
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=360, stratify=y, random_state=0)
    if layout == "conv":
        x_train, x_test = x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8)
    return Dataset("digits", "classification", *_tensors(x_train, y_train, x_test, y_test), outputs=10)


def _ring_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    low = np.where(labels == 0, 0.0, 1.0)
    radius = low + 0.5 * rng.uniform(size=n)
    angle = rng.uniform(0, 2 * math.pi, size=n)
    points = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    return points.astype(np.float32), labels.astype(np.int64)


def _rings() -> Dataset:
    x_train, y_train = _ring_points(1000, 0)
    x_test, y_test = _ring_points(1000, 1)
    return Dataset("rings", "classification", *_tensors(x_train, y_train, x_test, y_test), outputs=2)


def _cross1d() -> Dataset:
    x_train = np.linspace(-1, 1, 200, dtype=np.float32)[:, None]
    x_test = np.random.default_rng(1).uniform(-1, 1, size=(200, 1)).astype(np.float32)
    return Dataset(
        "cross1d", "regression", *_tensors(x_train, -(x_train**3), x_test, -(x_test**3)), outputs=1
    )


def _tensors(*arrays: np.ndarray) -> list[torch.Tensor]:
    return [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]


def _subset(data: Dataset, fraction: float, seed: int) -> Dataset:
    generator = torch.Generator().manual_seed(seed)
    if data.task == "classification":
        keep = []
        for label in data.y_train.unique():
            members = torch.nonzero(data.y_train == label).flatten()
            count = max(1, round(fraction * len(members)))
            keep.append(members[torch.randperm(len(members), generator=generator)[:count]])
        index = torch.cat(keep).sort().values
    else:
        count = max(1, round(fraction * len(data.y_train)))
        index = torch.randperm(len(data.y_train), generator=generator)[:count].sort().values
    return Dataset(
        data.name, data.task, data.x_train[index], data.y_train[index], data.x_test, data.y_test, data.outputs
    )
