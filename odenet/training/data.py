"""The data sets ``odenet train`` knows. Nothing is downloaded: ``digits`` ships with scikit-learn,
the others are generated from a fixed seed.

==========  ===========================================================================================
``digits``  scikit-learn's bundled handwritten digits (UCI ML hand-written digits test set): 1797
            images of 8x8 pixels, values 0..16 scaled to [0, 1], 10 classes. Fixed split:
            ``train_test_split(test_size=360, stratify=labels, random_state=0)``, 1437 train / 360 test.
``rings``   2-D nested rings (Dupont et al. 2019): class 0 has radius in [0, 0.5], class 1 in [1, 1.5];
            1000 train / 1000 test points, uniform in angle and radius, generator seed 0 and 1.
``mnist1d`` MNIST-1D (Greydanus & Kobak 2024): 10 classes of 1-D signals of length 40, each a digit's
            template translated, scaled, sheared and noised; generated locally by the ``mnist1d``
            package (``make_dataset(get_dataset_args())``, its seed 42, about 4 s; nothing is
            downloaded), 4000 train / 1000 test, standardized by the package. Shaped 1 x 40
            (``conv1d`` layout) or 40 features (``mlp``).
``cross1d`` the 1-D regression ``x -> -x**3`` on [-1, 1] (a map that reverses the order of points, so
            a first-order flow cannot represent it: its trajectories would cross); 200 evenly spaced
            train points, 200 uniform test points (generator seed 1).
==========  ===========================================================================================

A user's own data: ``--data PATH.npz`` (numpy) or ``--data PATH.pt`` (a dict of tensors, read with
``torch.load(weights_only=True)``) with ``x`` (samples x features, or samples x C x H x W) and ``y``
(integer labels: classification, as many classes as the largest label + 1; floats: regression, one
output per column), optionally ``x_test`` and ``y_test``; without them 20% of the samples are held
out, stratified by class for classification, with the training seed. The layout (``mlp`` for
vectors, ``conv1d`` for signals, samples x C x L, ``conv`` for images), the input shape and the
outputs are read from the arrays. Every
problem (a missing key, lengths that differ, an unsupported dtype, NaN or infinity, a negative
label) is a :class:`~odenet.errors.ConfigError` naming the file, the key and what was expected.

``train_fraction`` keeps that share of each class of the training set (at least one example per
class), chosen with the training seed; the test set is always whole.

``validation`` holds that share of each class of the training set out, and evaluates on it in place
of the test set, which is then never read (``Dataset.held_out`` is ``"validation"``): what tuning
runs need. The split has a seed of its own (:data:`VALIDATION_SEED`), not the training seed, so
every run of a tuning sweep, whatever its seed, scores on the same examples.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from odenet.errors import ConfigError
from odenet.extras import require
from odenet.options import DataName, Layout, Task, choices
from odenet.training.settings import DATA_SUFFIXES, is_data_file

__all__ = ["DATA_SUFFIXES", "Dataset", "is_data_file", "load_data"]

TEST_SHARE = 0.2  # held out of a user's file without x_test and y_test
VALIDATION_SEED = 0  # the validation split's, the same for every training seed


@dataclass(frozen=True, repr=False)
class Dataset:
    """A training set and its test set. ``repr`` gives the shapes and sizes, not the tensors."""

    name: str
    task: Task
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    outputs: int  # classes, or the regression's output size
    held_out: str = "test"  # what x_test and y_test are: the test set, or a "validation" split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def __repr__(self) -> str:
        def shape(t: torch.Tensor) -> str:
            return " x ".join(map(str, t.shape))

        outputs = f"{self.outputs} classes" if self.task == "classification" else f"{self.outputs} outputs"
        return (
            f"Dataset({self.name}: {self.task}, {outputs}; train x {shape(self.x_train)}, "
            f"y {shape(self.y_train)}; {self.held_out} x {shape(self.x_test)}, y {shape(self.y_test)}; "
            f"{str(self.x_train.dtype).removeprefix('torch.')})"
        )


def load_data(
    name: DataName | str,
    layout: Layout | None = "mlp",
    train_fraction: float = 1.0,
    seed: int = 0,
    validation: float = 0.0,
) -> Dataset:
    """The data set ``name`` (a bundled one, shaped for ``layout``: ``conv`` gives digits as 1x8x8
    images, ``conv1d`` MNIST-1D as 1x40 signals), or the user's file ``name`` (``.npz``/``.pt``; its
    layout is its own); with ``validation`` in (0, 1), that share of the training set in place of
    the test set."""
    if not (0 < train_fraction <= 1):
        raise ConfigError(f"train_fraction must be in (0, 1], not {train_fraction!r}")
    if not (0 <= validation < 1):
        raise ConfigError(f"validation must be a share in [0, 1), not {validation!r}")
    # a file without a test set has one split off with the seed; under a validation split, with the
    # validation seed, so that the training set it is cut from does not move with --seed either
    data = _load(name, layout, VALIDATION_SEED if validation else seed)
    if validation:
        data = _validation_split(data, validation)
    return _subset(data, train_fraction, seed) if train_fraction < 1 else data


def _load(name: str, layout: Layout | None, seed: int) -> Dataset:
    if is_data_file(name):
        data = _from_file(name, seed)
        if layout is not None and layout != file_layout(data):
            raise ConfigError(
                f"--layout {layout}: the arrays of {name} are {file_layout(data)} data "
                f"(x is samples x {' x '.join(map(str, data.input_shape))})"
            )
        return data
    if name not in choices(DataName):
        raise ConfigError(
            f"unknown data set {name!r}; expected one of {', '.join(choices(DataName))}, "
            f"or a file of your own ({' or '.join(DATA_SUFFIXES)})"
        )
    layout = layout or "mlp"
    if layout == "conv" and name != "digits":
        raise ConfigError(f"the conv layout needs images; {name!r} is not an image data set")
    if layout == "conv1d" and name != "mnist1d":
        raise ConfigError(f"the conv1d layout needs signals; {name!r} is not a signal data set")
    if name == "digits":
        return _digits(layout)
    if name == "mnist1d":
        return _mnist1d(layout)
    return _rings() if name == "rings" else _cross1d()


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


@functools.cache
def _mnist1d_arrays() -> tuple[np.ndarray, ...]:
    """MNIST-1D as the ``mnist1d`` package generates it with its default arguments (train x, y, test
    x, y; read-only). The package seeds Python's and numpy's global generators: their states are
    restored afterwards, so loading the data changes no other random stream."""
    import random

    package = require("mnist1d.data", "the mnist1d data set")
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        made = package.make_dataset(package.get_dataset_args())
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    arrays = (
        made["x"].astype(np.float32),
        made["y"].astype(np.int64),
        made["x_test"].astype(np.float32),
        made["y_test"].astype(np.int64),
    )
    for a in arrays:
        a.setflags(write=False)
    return arrays


def _mnist1d(layout: str) -> Dataset:
    x_train, y_train, x_test, y_test = (a.copy() for a in _mnist1d_arrays())
    if layout == "conv1d":
        x_train, x_test = x_train[:, None, :], x_test[:, None, :]
    return Dataset("mnist1d", "classification", *_tensors(x_train, y_train, x_test, y_test), outputs=10)


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


def _per_class(data: Dataset, share: float, seed: int, leave: int = 0) -> torch.Tensor:
    """Indices (sorted) of ``share`` of each class of the training set (of all of it, for
    regression): at least one example of each, and at most all but ``leave``; chosen with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    labels = data.y_train if data.task == "classification" else torch.zeros(len(data.y_train))
    chosen = []
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        count = min(len(members) - leave, max(1, round(share * len(members))))
        chosen.append(members[torch.randperm(len(members), generator=generator)[:count]])
    return torch.cat(chosen).sort().values


def _subset(data: Dataset, fraction: float, seed: int) -> Dataset:
    """``fraction`` of the training set (of each class, at least one example of each, for
    classification), chosen with ``seed``."""
    index = _per_class(data, fraction, seed)
    return replace(data, x_train=data.x_train[index], y_train=data.y_train[index])


def _validation_split(data: Dataset, share: float) -> Dataset:
    """The training set less ``share`` of it (of each class, leaving each class at least one example
    to train on), and that share as the held-out set."""
    held = torch.zeros(len(data.y_train), dtype=torch.bool)
    held[_per_class(data, share, VALIDATION_SEED, leave=1)] = True
    if not held.any():
        raise ConfigError(
            f"validation {share}: the training set ({len(held)} examples) is too small to hold any out "
            "(each class keeps one example to train on)"
        )
    return replace(
        data,
        x_train=data.x_train[~held],
        y_train=data.y_train[~held],
        x_test=data.x_train[held],
        y_test=data.y_train[held],
        held_out="validation",
    )


def file_layout(data: Dataset) -> Layout:
    """``conv`` for images (samples x C x H x W), ``conv1d`` for signals (samples x C x L), ``mlp``
    for vectors."""
    return {1: "mlp", 2: "conv1d", 3: "conv"}[len(data.input_shape)]


def _read(path: str) -> dict[str, np.ndarray]:
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--data {path}: no such file")
    try:
        if file.suffix.lower() == ".npz":
            with np.load(file, allow_pickle=False) as arrays:
                return {key: arrays[key] for key in arrays.files}
        content = torch.load(file, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:  # a damaged file, an archive of pickles
        raise ConfigError(f"--data {path}: cannot be read as a {file.suffix} file ({exc})") from None
    if not isinstance(content, dict) or not all(isinstance(v, torch.Tensor) for v in content.values()):
        raise ConfigError(
            f"--data {path}: expected a dict of tensors with keys x and y (torch.save of a dict)"
        )
    return {str(key): value.numpy() for key, value in content.items()}


def _check_x(path: str, key: str, x: np.ndarray) -> np.ndarray:
    if x.ndim not in (2, 3, 4):
        raise ConfigError(
            f"--data {path}: {key} has shape {x.shape}; expected samples x features (2 dimensions), "
            "samples x channels x length (3) or samples x channels x height x width (4)"
        )
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ConfigError(
            f"--data {path}: {key} has dtype {x.dtype}; expected floating-point or integer numbers"
        )
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        count = int((~np.isfinite(x)).sum())
        raise ConfigError(
            f"--data {path}: {key} holds {count} NaN or infinite value(s); expected finite numbers"
        )
    return x


def _check_y(path: str, key: str, y: np.ndarray, samples: int, x_key: str) -> np.ndarray:
    if len(y) != samples:
        raise ConfigError(
            f"--data {path}: {key} has {len(y)} entries and {x_key} has {samples} samples; expected as many"
        )
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        if y.ndim != 1:
            raise ConfigError(
                f"--data {path}: integer labels {key} must be one per sample, shape ({samples},), "
                f"not {y.shape}"
            )
        y = y.astype(np.int64)
        if (y < 0).any():
            raise ConfigError(f"--data {path}: {key} has negative labels; expected classes 0, 1, 2, ...")
        return y
    if np.issubdtype(y.dtype, np.floating):
        y = y.astype(np.float32).reshape(samples, -1)
        if not np.isfinite(y).all():
            raise ConfigError(f"--data {path}: {key} holds NaN or infinite values; expected finite targets")
        return y
    raise ConfigError(
        f"--data {path}: {key} has dtype {y.dtype}; expected integer labels or floating-point targets"
    )


def _from_file(path: str, seed: int) -> Dataset:
    arrays = _read(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise ConfigError(
                f"--data {path}: no array {key!r} (found: {', '.join(sorted(arrays)) or 'none'})"
            )
    if ("x_test" in arrays) != ("y_test" in arrays):
        present = "x_test" if "x_test" in arrays else "y_test"
        raise ConfigError(
            f"--data {path}: {present} without its partner; give both x_test and y_test, or neither"
        )
    x = _check_x(path, "x", arrays["x"])
    y = _check_y(path, "y", arrays["y"], len(x), "x")
    task: Task = "classification" if y.dtype == np.int64 else "regression"
    if "x_test" in arrays:
        x_test = _check_x(path, "x_test", arrays["x_test"])
        if x_test.shape[1:] != x.shape[1:]:
            raise ConfigError(
                f"--data {path}: x_test samples have shape {x_test.shape[1:]}, x's {x.shape[1:]}; "
                "expected the same"
            )
        y_test = _check_y(path, "y_test", arrays["y_test"], len(x_test), "x_test")
        if (y_test.dtype == np.int64) != (task == "classification") or y_test.shape[1:] != y.shape[1:]:
            raise ConfigError(
                f"--data {path}: y_test ({y_test.dtype}, {y_test.shape}) does not match "
                f"y ({y.dtype}, {y.shape})"
            )
        x_train, y_train = x, y
    else:
        x_train, y_train, x_test, y_test = _split(x, y, task, seed)
    outputs = int(max(y_train.max(), y_test.max()) + 1) if task == "classification" else y_train.shape[1]
    if task == "classification" and outputs < 2:
        raise ConfigError(f"--data {path}: every label is 0; expected at least two classes")
    from pathlib import Path

    name = str(Path(path).resolve())
    return Dataset(name, task, *_tensors(x_train, y_train, x_test, y_test), outputs=outputs)


def _split(x: np.ndarray, y: np.ndarray, task: str, seed: int):
    """A seeded held-out test set of TEST_SHARE of the samples, stratified by class."""
    rng = np.random.default_rng(seed)
    test = []
    groups = (
        [np.flatnonzero(y == label) for label in np.unique(y)]
        if task == "classification"
        else [np.arange(len(y))]
    )
    for members in groups:
        count = round(TEST_SHARE * len(members))
        if len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        else:
            count = 0
        test.append(rng.permutation(members)[:count])
    test_index = np.sort(np.concatenate(test))
    train_index = np.setdiff1d(np.arange(len(y)), test_index)
    if len(test_index) == 0:
        raise ConfigError("the data set is too small to hold out a test set: give x_test and y_test")
    return x[train_index], y[train_index], x[test_index], y[test_index]
