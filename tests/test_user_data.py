"""A user's own data: --data PATH.npz / PATH.pt, the layout, shapes and classes read from the arrays,
a seeded stratified split when there is no test set, one clear message per bad file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import cli

from odenet.errors import ConfigError
from odenet.training import load_data


def _blobs(n=120, features=5, classes=3, seed=0):
    """Separable classes: class k centred at 3*k on every feature."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.normal(size=(n, features)) + 3.0 * y[:, None]).astype(np.float32)
    return x, y.astype(np.int64)


def test_npz_classification_with_a_held_out_split(tmp_path):
    x, y = _blobs()
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    data = load_data(str(path), None, 1.0, seed=3)
    assert data.task == "classification" and data.outputs == 3 and data.input_shape == (5,)
    assert len(data.x_train) + len(data.x_test) == 120 and len(data.x_test) == 24  # 20%
    assert sorted(np.bincount(data.y_test.numpy()).tolist()) == [8, 8, 8]  # stratified
    again = load_data(str(path), None, 1.0, seed=3)
    assert torch.equal(again.x_test, data.x_test)  # seeded
    other = load_data(str(path), None, 1.0, seed=4)
    assert not torch.equal(other.x_test, data.x_test)
    # every sample is in exactly one of the two sets
    rows = {tuple(r) for r in np.concatenate([data.x_train.numpy(), data.x_test.numpy()])}
    assert rows == {tuple(r) for r in x}


def test_given_test_set_images_and_pt(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 2, 4, 4)).astype(np.float32)
    y = np.array([0, 1] * 5)
    path = tmp_path / "images.pt"
    torch.save({"x": torch.from_numpy(x), "y": torch.from_numpy(y), "x_test": torch.from_numpy(x[:4]),
                "y_test": torch.from_numpy(y[:4])}, path)  # fmt: skip
    data = load_data(str(path), None)
    assert data.input_shape == (2, 4, 4) and len(data.x_test) == 4 and data.outputs == 2
    with pytest.raises(ConfigError, match=r"--layout mlp: the arrays of .* are conv data"):
        load_data(str(path), "mlp")


def test_signals_are_the_conv1d_layout(tmp_path):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(30, 2, 11)).astype(np.float32), np.arange(30) % 3
    path = tmp_path / "signals.npz"
    np.savez(path, x=x, y=y)
    data = load_data(str(path), None)
    assert data.input_shape == (2, 11) and data.outputs == 3
    with pytest.raises(ConfigError, match=r"--layout conv: the arrays of .* are conv1d data"):
        load_data(str(path), "conv")
    result = cli("train", "euler", "--data", str(path), "--epochs", "1", "--depth", "1", "--json",
                 "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["test_examples"] == 6  # 20% held out, stratified


def test_float_targets_are_regression(tmp_path):
    x = np.linspace(-1, 1, 50, dtype=np.float64)[:, None]
    path = tmp_path / "cube.npz"
    np.savez(path, x=x, y=-(x**3))
    data = load_data(str(path), None)
    assert data.task == "regression" and data.outputs == 1 and data.x_train.dtype == torch.float32


# fmt: off
BAD = [
    ("missing y", {"x": np.zeros((4, 2))}, "no array 'y' (found: x)"),
    ("lengths", {"x": np.zeros((4, 2)), "y": np.zeros(3, dtype=int)}, "y has 3 entries and x has 4 samples"),
    ("dtype", {"x": np.array([["a", "b"]] * 4), "y": np.zeros(4, dtype=int)}, "x has dtype <U1"),
    ("nan", {"x": np.array([[0.0, np.nan]] * 4), "y": np.zeros(4, dtype=int)}, "x holds 4 NaN or infinite"),
    ("shape", {"x": np.zeros((4, 1, 2, 3, 3)), "y": np.zeros(4, dtype=int)},
     "x has shape (4, 1, 2, 3, 3); expected"),
    ("negative", {"x": np.zeros((4, 2)), "y": np.array([0, 1, -1, 0])}, "y has negative labels"),
    ("one class", {"x": np.zeros((4, 2)), "y": np.zeros(4, dtype=int)}, "every label is 0"),
    ("half test", {"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 2))},
     "x_test without its partner"),
    ("test shape", {"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 3)),
                    "y_test": np.array([0, 1])}, "x_test samples have shape (3,), x's (2,)"),
    ("y dtype", {"x": np.zeros((4, 2)), "y": np.array(["a"] * 4)}, "y has dtype <U1"),
]
# fmt: on


@pytest.mark.parametrize(("arrays", "message"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_files_get_one_clear_message(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(ConfigError) as info:
        load_data(str(path), None)
    assert message in str(info.value) and str(path) in str(info.value)
    result = cli("train", "euler", "--data", str(path), "--epochs", "1")
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_unreadable_and_absent_files(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match=r"cannot be read as a \.npz file"):
        load_data(str(broken), None)
    with pytest.raises(ConfigError, match="no such file"):
        load_data(str(tmp_path / "absent.pt"), None)
    pickled = tmp_path / "list.pt"
    torch.save([1, 2], pickled)
    with pytest.raises(ConfigError, match="expected a dict of tensors"):
        load_data(str(pickled), None)
    assert cli("train", "euler", "--data", "mnist").returncode == 2  # not a data set, not a file


def test_cli_trains_on_a_file_and_evaluates_it_again(tmp_path):
    x, y = _blobs(n=90)
    path = tmp_path / "blobs.npz"
    np.savez(path, x=x, y=y)
    out = tmp_path / "run"
    result = cli(
        "train", "euler", "--data", str(path), "--epochs", "2", "--depth", "2", "--out", str(out), "--json"
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    evaluated = json.loads(cli("evaluate", str(out / "checkpoint.pt"), "--json").stdout)
    assert evaluated["test_examples"] == 18
    assert evaluated["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
