"""Data sets, training, checkpoints and the train/evaluate commands, at tiny sizes."""

from __future__ import annotations

import json

import pytest
import torch

import odenet
from odenet.cli import main
from odenet.errors import CheckpointError, ConfigError
from odenet.models import ModelConfig
from odenet.training import TrainSettings, evaluate, load_checkpoint, load_data, train


def test_digits_split_is_fixed_and_stratified():
    data = load_data("digits")
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert float(data.x_train.max()) == 1.0 and float(data.x_train.min()) == 0.0
    counts = torch.bincount(data.y_test, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # 360 / 10 classes, stratified
    again = load_data("digits", "conv")
    assert torch.equal(again.x_test.reshape(360, 64), data.x_test)
    from sklearn.datasets import load_digits

    raw = load_digits()
    # every test image is one of the bundled images (scaled by 1/16), with its label
    index = {tuple(row): label for row, label in zip(raw.data.tolist(), raw.target.tolist(), strict=True)}
    for row, label in zip((data.x_test[:20] * 16).tolist(), data.y_test[:20].tolist(), strict=True):
        assert index[tuple(row)] == label


def test_train_fraction_keeps_each_class():
    small = load_data("digits", train_fraction=0.05, seed=3)
    counts = torch.bincount(small.y_train, minlength=10)
    assert counts.tolist() == [7] * 10  # round(0.05 * ~144) per class
    other = load_data("digits", train_fraction=0.05, seed=4)
    assert not torch.equal(small.x_train, other.x_train)
    assert len(small.x_test) == 360


def test_rings_and_cross1d():
    rings = load_data("rings")
    radius = rings.x_train.norm(dim=1)
    assert float(radius[rings.y_train == 0].max()) <= 0.5 + 1e-6
    assert float(radius[rings.y_train == 1].min()) >= 1.0 - 1e-6
    cross = load_data("cross1d")
    assert torch.allclose(cross.y_test, -(cross.x_test**3))
    with pytest.raises(ConfigError, match="unknown data set 'mnist'; expected one of digits, rings, cross1d"):
        load_data("mnist")


def tiny_config(**fields) -> ModelConfig:
    base = dict(
        scheme=odenet.format_scheme(odenet.load("leapfrog")),
        input_shape=(64,),
        outputs=10,
        family="mlp",
        width=16,
        depth=2,
        memory="reversible",
    )
    base.update(fields)
    return ModelConfig(**base)


def test_train_writes_metrics_and_a_checkpoint_that_rebuilds_the_model(tmp_path):
    data = load_data("digits")
    model, _metrics = train(tiny_config(), data, TrainSettings(epochs=2, lr=3e-2), out=tmp_path, stream=None)
    written = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_accuracy", "train_accuracy", "epochs", "seconds", "peak_memory_mb"):
        assert key in written
    assert written["epochs"] == 2 and len(written["history"]) == 2
    assert written["test_accuracy"] > 0.8  # well above chance (0.1) after two epochs
    rebuilt, content = load_checkpoint(tmp_path / "checkpoint.pt")
    assert content["epoch"] == 2
    # the rebuilt model (from the stored scheme text and config only) predicts the same test labels
    again = evaluate(rebuilt, data.x_test, data.y_test, data.task)
    assert again["accuracy"] == written["test_accuracy"]
    correct = (model(data.x_test).argmax(1) == data.y_test).float().mean()
    assert float(correct) == pytest.approx(written["test_accuracy"])
    assert not list(tmp_path.glob(".*partial"))


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    data = load_data("digits", train_fraction=0.1)
    train(tiny_config(), data, TrainSettings(epochs=1), out=tmp_path, stream=None)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def interrupted(content, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), data, TrainSettings(epochs=1, seed=1), out=tmp_path, stream=None)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert not list(tmp_path.glob(".*partial"))
    load_checkpoint(tmp_path / "checkpoint.pt")


def test_regression_metrics_have_no_accuracy(tmp_path):
    data = load_data("cross1d")
    cfg = tiny_config(
        scheme=odenet.format_scheme(odenet.load("momentum")),
        input_shape=(1,),
        outputs=1,
        width=1,
        stem=False,
        head=False,
        shared=True,
        family="mlp",
        memory="autograd",
    )
    _, metrics = train(cfg, data, TrainSettings(epochs=1), stream=None)
    assert metrics["test_accuracy"] is None
    assert metrics["test_loss"] > 0


def test_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.pt")
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not an odenet checkpoint"):
        load_checkpoint(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="format='odenet-checkpoint'"):
        load_checkpoint(other)


def test_cli_train_evaluate_and_bad_input(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "leapfrog",
            "--data",
            "digits",
            "--layout",
            "mlp",
            "--depth",
            "2",
            "--epochs",
            "1",
            "--width",
            "8",
            "--memory",
            "reversible",
            "--out",
            str(out),
            "--train-fraction",
            "0.2",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "checkpoint.pt" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert main(["evaluate", str(out / "checkpoint.pt"), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == metrics["test_accuracy"]
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "leapfrog", "--data", "mnist"])
    assert exit_info.value.code == 2
    expected = "expected one of digits, rings, cross1d, or a file PATH.npz or PATH.pt, not 'mnist'"
    assert expected in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "leapfrog", "--depth", "0"])
    assert "expected a whole number >= 1, not '0'" in capsys.readouterr().err
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"\x00\x01 not a checkpoint")
    assert main(["evaluate", str(bogus)]) == 1
    assert "not an odenet checkpoint" in capsys.readouterr().err


def test_settings_errors():
    with pytest.raises(ConfigError, match="epochs must be a whole number >= 1, not 0"):
        TrainSettings(epochs=0)
    with pytest.raises(ConfigError, match="optimizer must be one of adam, sgd, not 'lbfgs'"):
        TrainSettings(optimizer="lbfgs")
    with pytest.raises(ConfigError, match="not 'tpu9'"):
        TrainSettings(device="tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="this machine has no CUDA device"):
            TrainSettings(device="cuda")
