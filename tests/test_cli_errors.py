"""Bad input to `odenet train` and `odenet evaluate`: one line naming the option, the value and what is
allowed; exit 1 (2 for argparse's usage errors); never a traceback. One row per case."""

from __future__ import annotations

import pytest
import torch
from conftest import cli

# fmt: off
CASES = [
    # (id, arguments, exit status, a piece of the message)
    ("param nan", ["train", "euler", "--param", "h=nan"], 2, "a finite number in NAME=NUMBER, not 'h=nan'"),
    ("param inf", ["train", "euler", "--param", "h=inf"], 2, "a finite number in NAME=NUMBER, not 'h=inf'"),
    ("param text", ["train", "euler", "--param", "h"], 2, "expected NAME=NUMBER, such as h=0.05, not 'h'"),
    ("step inf", ["train", "euler", "--step", "inf"], 2, "expected a finite number, not 'inf'"),
    ("unknown param", ["train", "euler", "--param", "k=1", "--epochs", "1"], 1, "has no parameter 'k'"),
    ("huge depth", ["train", "euler", "--depth", "100000000", "--data", "rings"], 1, "--depth (100000000)"),
    ("huge width", ["train", "euler", "--width", "10000000", "--data", "rings"], 1, "or --width (10000000)"),
    ("missing file", ["train", "euler", "--data", "absent.npz"], 1, "--data absent.npz: no such file"),
    ("data name", ["train", "euler", "--data", "mnist"], 2, "or a file PATH.npz or PATH.pt, not 'mnist'"),
    ("zero depth", ["train", "euler", "--depth", "0"], 2, "--depth"),
    ("bad lr", ["train", "euler", "--lr", "nan"], 2, "--lr: expected a finite number, not 'nan'"),
]
# fmt: on


@pytest.mark.parametrize(("args", "status", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_bad_input_is_one_clear_line(args, status, message):
    result = cli(*args)
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_out_and_damaged_checkpoint(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("train", "euler", "--data", "rings", "--epochs", "1", "--out", str(blocker / "run"))
    assert result.returncode == 1 and "cannot create the folder" in result.stderr
    fake = tmp_path / "fake.pt"
    torch.save({"format": "odenet-checkpoint", "version": 1, "config": {"depth": "many"}}, fake)
    result = cli("evaluate", str(fake))
    assert result.returncode == 1
    assert "cannot be rebuilt" in result.stderr or "damaged" in result.stderr


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch):
    import odenet.training

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(odenet.training, "train", interrupted)
    result = cli("train", "euler", "--data", "rings", "--epochs", "1")
    assert result.returncode == 130
    assert (
        result.stderr.strip()
        == "odenet: interrupted; files already written are complete (the last finished epoch)"
    )
