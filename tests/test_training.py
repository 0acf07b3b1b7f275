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


def test_a_validation_split_replaces_the_test_set_and_is_the_same_for_every_seed():
    """--validation 0.2: a fifth of each class of the training set is held out and scored in place of
    the test set, which is not read; the split does not move with the training seed, and the
    training share is then taken from what is left."""
    whole = load_data("digits")
    split = load_data("digits", validation=0.2, seed=0)
    assert split.held_out == "validation" and whole.held_out == "test"
    assert len(split.x_train) + len(split.x_test) == 1437
    per_class = torch.bincount(whole.y_train, minlength=10)
    held = torch.bincount(split.y_test, minlength=10)
    assert held.tolist() == [round(0.2 * int(c)) for c in per_class]
    # held-out rows are training rows, none of them in what is trained on, none a test row
    rows = {tuple(r) for r in whole.x_train.tolist()}
    test_rows = {tuple(r) for r in whole.x_test.tolist()}
    held_rows = {tuple(r) for r in split.x_test.tolist()}
    assert held_rows <= rows and not held_rows & test_rows
    assert not held_rows & {tuple(r) for r in split.x_train.tolist()}
    other_seed = load_data("digits", validation=0.2, seed=5)
    assert torch.equal(other_seed.x_test, split.x_test) and torch.equal(other_seed.x_train, split.x_train)
    small = load_data("digits", validation=0.2, train_fraction=0.5, seed=5)
    assert torch.equal(small.x_test, split.x_test) and len(small.x_train) == pytest.approx(575, abs=5)
    assert "validation x 287 x 64" in repr(split)
    with pytest.raises(ConfigError, match="validation must be a share"):
        load_data("digits", validation=1.0)


def test_a_validation_split_of_a_file_keeps_a_class_to_train_on_and_does_not_move_with_the_seed(tmp_path):
    """Found in review: a file without x_test had its test share cut with the training seed, so the
    validation split cut from the rest moved with --seed; and a class of one example went wholly
    into the validation set, leaving nothing of it to train on."""
    import numpy as np

    rng = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, x=rng.normal(size=(200, 5)).astype(np.float32), y=rng.integers(0, 4, 200))
    a, b = (load_data(str(path), None, seed=s, validation=0.2) for s in (0, 1))
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.x_train, b.x_train)
    rare = tmp_path / "rare.npz"
    y = np.array([0] * 5 + [1] * 5 + [2])
    np.savez(rare, x=rng.normal(size=(11, 3)).astype(np.float32), y=y, x_test=np.zeros((3, 3), np.float32),
             y_test=np.array([0, 1, 2]))  # fmt: skip
    split = load_data(str(rare), None, validation=0.2)
    assert sorted(split.y_train.unique().tolist()) == [0, 1, 2]  # class 2 stays in training
    assert torch.bincount(split.y_test, minlength=3).tolist() == [1, 1, 0]
    one = tmp_path / "one.npz"
    np.savez(one, x=np.zeros((2, 3), np.float32), y=np.array([0, 1]), x_test=np.zeros((2, 3), np.float32),
             y_test=np.array([0, 1]))  # fmt: skip
    with pytest.raises(ConfigError, match="too small to hold any out"):
        load_data(str(one), None, validation=0.2)


def test_cli_validation_scores_the_split_and_resume_keeps_it(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "euler", "--data", "digits", "--depth", "2", "--epochs", "1", "--out", str(out)]
    assert main([*args, "--validation", "0.2", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["held_out"] == "validation" and metrics["test_examples"] == 287
    assert metrics["train_examples"] == 1150
    # a checkpoint of the split is not continued on the whole set
    assert main([*args, "--resume"]) != 0
    assert "trained on other data: validation 0.2 (now 0.0)" in capsys.readouterr().err


def test_rings_and_cross1d():
    rings = load_data("rings")
    radius = rings.x_train.norm(dim=1)
    assert float(radius[rings.y_train == 0].max()) <= 0.5 + 1e-6
    assert float(radius[rings.y_train == 1].min()) >= 1.0 - 1e-6
    cross = load_data("cross1d")
    assert torch.allclose(cross.y_test, -(cross.x_test**3))
    with pytest.raises(
        ConfigError, match="unknown data set 'mnist'; expected one of digits, mnist1d, rings, cross1d"
    ):
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
    expected = "expected one of digits, mnist1d, rings, cross1d, or a file PATH.npz or PATH.pt, not 'mnist'"
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


def _strict_json(path):
    """The file as JSON, refusing NaN and Infinity (which json.loads would accept)."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_divergence_keeps_the_last_finite_epoch_and_writes_valid_json(tmp_path, monkeypatch):
    """A loss that turns NaN in epoch 2: the checkpoint keeps epoch 1 (finite weights), metrics.json
    is valid JSON recording the divergence, and the error names the epoch, the checkpoint and a cause
    from the layers' spectra against the stability region."""
    from odenet.errors import TrainingDivergedError
    from odenet.training import loop

    data = load_data("digits", train_fraction=0.1)
    batches = -(-len(data.x_train) // 64)
    calls = {"n": 0}
    real_loss = loop._loss

    def poisoned(task, output, target):
        calls["n"] += 1
        loss = real_loss(task, output, target)
        return loss * float("nan") if calls["n"] > batches + 2 else loss  # evaluation calls count too

    monkeypatch.setattr(loop, "_loss", poisoned)
    with pytest.raises(TrainingDivergedError) as info:
        train(tiny_config(), data, TrainSettings(epochs=3, batch_size=64), out=tmp_path, stream=None)
    message = str(info.value)
    assert "at epoch 2" in message and "keeps epoch 1" in message and "stability region" in message
    written = _strict_json(tmp_path / "metrics.json")
    assert written["epochs"] == 1 and written["diverged"]["epoch"] == 2 and len(written["history"]) == 1
    _, content = load_checkpoint(tmp_path / "checkpoint.pt")
    assert content["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in content["state_dict"].values() if v.is_floating_point())


def test_a_step_outside_the_stability_region_is_named_as_the_cause(tmp_path):
    """Euler with h = 40: the layers' h*lambda leave the disc |1 + z| <= 1 and the loss overflows;
    the error says so instead of blaming the learning rate alone."""
    from odenet.errors import TrainingDivergedError

    data = load_data("rings")
    config = tiny_config(scheme=odenet.format_scheme(odenet.load("euler")), layout="mlp", input_shape=(2,),
                         outputs=2, memory="autograd", depth=8, params={"h": 40.0}, family="mlp")  # fmt: skip
    with pytest.raises(TrainingDivergedError, match="outside the scheme's stability region"):
        train(config, data, TrainSettings(epochs=2, lr=1.0, optimizer="sgd"), out=tmp_path, stream=None)
    _strict_json(tmp_path / "metrics.json")


def test_one_writer_per_output_folder(tmp_path):
    from odenet.files import output_lock

    data = load_data("digits", train_fraction=0.05)
    with output_lock(tmp_path), pytest.raises(ConfigError, match="another odenet run is writing there"):
        train(tiny_config(), data, TrainSettings(epochs=1), out=tmp_path, stream=None)
    train(tiny_config(), data, TrainSettings(epochs=1), out=tmp_path, stream=None)  # free again


def test_temporary_names_are_unique_and_json_is_finite(tmp_path):
    from odenet.files import atomic_path, finite_json

    with atomic_path(tmp_path / "a.txt") as first, atomic_path(tmp_path / "a.txt") as second:
        assert first != second
        first.write_text("1")
        second.write_text("2")
    assert (tmp_path / "a.txt").read_text() == "1"  # the outer block renamed last
    assert json.loads(finite_json({"x": [float("nan"), 1.0, float("inf")]})) == {"x": [None, 1.0, None]}


def test_unwritable_out_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["train", "euler", "--data", "rings", "--epochs", "1", "--out", str(blocker / "run")])
    assert code == 1


def test_resume_gives_the_same_final_weights_as_an_uninterrupted_run(tmp_path, monkeypatch):
    """Four epochs in one go, against two epochs, Ctrl-C, and --resume: the same weights, to the
    bit (model, Adam's moments, the cosine schedule, the batch order's generator, torch's RNG)."""
    from odenet.training import loop

    data = load_data("digits", train_fraction=0.2)
    settings = TrainSettings(epochs=4, batch_size=64)
    config = tiny_config(family="bn", layout="mlp")
    reference, _ = train(config, data, settings, out=tmp_path / "whole", stream=None)

    calls = {"n": 0}
    real_evaluate = loop.evaluate

    def interrupt_in_epoch_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:  # two evaluations per finished epoch: the 5th is epoch 3's
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(loop, "evaluate", interrupt_in_epoch_three)
    with pytest.raises(KeyboardInterrupt):
        train(config, data, settings, out=tmp_path / "parts", stream=None)
    monkeypatch.setattr(loop, "evaluate", real_evaluate)
    assert load_checkpoint(tmp_path / "parts" / "checkpoint.pt")[1]["epoch"] == 2
    resumed, metrics = train(config, data, settings, out=tmp_path / "parts", stream=None, resume=True)
    assert metrics["epochs"] == 4 and len(metrics["history"]) == 4
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    refused = {  # more epochs of a cosine schedule, another batch size: each with its reason
        "with the cosine schedule, which brought the learning rate": TrainSettings(epochs=5, batch_size=64),
        "--batch-size 64 \\(now 32\\)": TrainSettings(epochs=4, batch_size=32),
    }
    for message, other in refused.items():
        with pytest.raises(ConfigError, match=message):
            train(config, data, other, out=tmp_path / "parts", stream=None, resume=True)
    with pytest.raises(ConfigError, match="no checkpoint to resume"):
        train(config, data, settings, out=tmp_path / "empty", stream=None, resume=True)


def test_a_finished_run_resumed_is_complete_and_prints_its_metrics(tmp_path, capsys):
    """Found while measuring (issue 32): a finished run resumed printed a KeyError traceback. It says
    it is complete, prints the metrics it wrote, writes nothing and exits 0."""
    out = tmp_path / "run"
    args = ["train", "euler", "--data", "digits", "--depth", "2", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    written = json.loads((out / "metrics.json").read_text())
    stamp = (out / "checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    printed = capsys.readouterr()
    assert f"test loss {written['test_loss']:.4f}" in printed.out and "wrote" not in printed.out
    assert "is complete: 1 of 1 epochs" in printed.err + printed.out
    assert (out / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_a_constant_rate_run_resumed_with_more_epochs_is_the_longer_run(tmp_path):
    """With a constant learning rate, two epochs then --resume with --epochs 4 give the weights of
    four epochs in one go, bit for bit; the cosine schedule's runs are refused (above)."""
    data = load_data("digits", train_fraction=0.2)
    config = tiny_config(family="bn", layout="mlp")
    longer = TrainSettings(epochs=4, batch_size=64, schedule="constant")
    reference, _ = train(config, data, longer, out=tmp_path / "whole", stream=None)
    shorter = TrainSettings(epochs=2, batch_size=64, schedule="constant")
    train(config, data, shorter, out=tmp_path / "parts", stream=None)
    resumed, metrics = train(config, data, longer, out=tmp_path / "parts", stream=None, resume=True)
    assert metrics["epochs"] == 4 and len(metrics["history"]) == 4
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(ConfigError, match="has 4 epochs already"):
        train(config, data, shorter, out=tmp_path / "parts", stream=None, resume=True)


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(tmp_path):
    import io

    from odenet.training.loop import _Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, live in ((io.StringIO(), False), (Terminal(), True)):
        progress = _Progress(stream, 4)
        for done in range(1, 5):
            progress.update(1, 2, done, 0.5)
        progress.line("epoch 1/2: done")
        text = stream.getvalue()
        assert text.endswith("epoch 1/2: done\n")
        assert ("4/4" in text) is live  # tqdm's counter only on a terminal


def test_ctrl_c_stops_after_the_batch_in_progress(tmp_path, monkeypatch):
    """SIGINT during batch 2's forward pass: that batch still takes its optimizer step, then the run
    stops with KeyboardInterrupt, and the handler is put back afterwards."""
    import signal

    from odenet.training import loop

    data = load_data("digits", train_fraction=0.2)
    steps = {"n": 0, "forward": 0}
    real_loss = loop._loss

    def interrupting(task, output, target):
        if torch.is_grad_enabled():
            steps["forward"] += 1
            if steps["forward"] == 2:
                signal.raise_signal(signal.SIGINT)
        return real_loss(task, output, target)

    real_step = torch.optim.Adam.step

    def counted(self, *args, **kwargs):
        steps["n"] += 1
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(loop, "_loss", interrupting)
    monkeypatch.setattr(torch.optim.Adam, "step", counted)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(), data, TrainSettings(epochs=2, batch_size=32), out=tmp_path, stream=None)
    assert steps == {"n": 2, "forward": 2}  # batch 2 finished its step, batch 3 never began
    assert signal.getsignal(signal.SIGINT) is before


def test_mnist1d_is_the_packages_data_set_and_leaves_the_global_generators_alone():
    import random

    import numpy as np
    from mnist1d.data import get_dataset_args, make_dataset

    np.random.seed(123)
    random.seed(123)
    before = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)
    data = load_data("mnist1d")
    assert (np.random.random(), random.random()) == before  # the package reseeds both; restored
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    everything = torch.cat([data.x_train, data.x_test]).double()
    assert abs(float(everything.mean())) < 1e-6 and abs(float(everything.std()) - 1) < 1e-3  # standardized
    assert torch.bincount(torch.cat([data.y_train, data.y_test])).tolist() == [500] * 10
    reference = make_dataset(get_dataset_args())  # the package's own call, here in float64
    assert np.allclose(data.x_test.numpy(), reference["x_test"], atol=1e-6)
    assert np.array_equal(data.y_train.numpy(), reference["y"])
    assert np.array_equal(data.y_test.numpy(), reference["y_test"])
    signals = load_data("mnist1d", "conv1d")
    assert signals.x_train.shape == (4000, 1, 40) and torch.equal(signals.x_train[:, 0], data.x_train)
    with pytest.raises(ConfigError, match="the conv layout needs images; 'mnist1d' is not an image"):
        load_data("mnist1d", "conv")
    with pytest.raises(ConfigError, match="the conv1d layout needs signals; 'digits' is not a signal"):
        load_data("digits", "conv1d")


def test_cli_trains_a_conv1d_network_on_mnist1d(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "euler", "--data", "mnist1d", "--depth", "2", "--epochs", "1"]
    assert main([*args, "--train-fraction", "0.1", "--out", str(out), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    model, _ = load_checkpoint(out / "checkpoint.pt")
    assert model.config.layout == "conv1d" and model.config.input_shape == (1, 40)
    assert model.config.width == 32 and len(model.stages) == 2
    assert metrics["train_examples"] == 399 and metrics["test_examples"] == 1000  # 10% of each class
    assert main(["evaluate", str(out / "checkpoint.pt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == metrics["test_accuracy"]
