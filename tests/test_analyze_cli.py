"""`odenet analyze`: the JSON contract, reports written to disk, folders, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import cli

import odenet
from odenet.library import library_dir
from odenet.report.analysis import verdict

KEYS = {
    "scheme",
    "states",
    "history",
    "functions",
    "params",
    "explicit",
    "order",
    "ode",
    "symplectic",
    "symplectic_reason",
    "symmetric",
    "symmetric_reason",
    "time_scale",
    "per_function",
    "stability",
    "reversibility",
}
STABILITY = {
    "amplification_matrix",
    "characteristic_polynomial",
    "det",
    "zero_stable",
    "variable",
    "at",
    "real_interval",
    "imag_interval",
    "real_interval_closed",
    "imag_interval_closed",
}
REVERSIBILITY = {
    "kind",
    "inverse",
    "inverse_steps",
    "conditions",
    "volume_preserving",
    "backward_amplification",
    "lipschitz_limit",
}


def test_json_contract():
    result = cli("analyze", "momentum", "--json")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert set(facts) == KEYS
    assert set(facts["stability"]) == STABILITY
    assert set(facts["reversibility"]) == REVERSIBILITY
    assert facts["stability"]["det"] == "gamma"
    assert facts["stability"]["real_interval"] == [-38.0, 0.0]
    assert facts["stability"]["variable"] == "lambda"  # no step: the region is in lambda itself
    assert facts["stability"]["at"] == {"gamma": 0.9}  # at which its numbers hold
    assert facts["stability"]["real_interval_closed"] == [True, True]
    assert facts["reversibility"]["inverse"]["x[n]"] == "-v[n+1] + x[n+1]"
    assert facts["reversibility"]["backward_amplification"] == pytest.approx(1 / 0.9)
    assert facts["order"] is None


def test_param_override_on_the_command_line():
    facts = json.loads(cli("analyze", "momentum", "--json", "--param", "gamma=0.5").stdout)
    assert facts["params"] == {"gamma": 0.5}
    assert facts["stability"]["real_interval"] == [-6.0, 0.0]  # -2 (1 + gamma) / (1 - gamma)
    assert facts["reversibility"]["backward_amplification"] == 2.0


def test_bad_param_is_a_clear_error():
    result = cli("analyze", "euler", "--param", "gamma=0.5")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "scheme euler has no parameter 'gamma': its parameters are h" in result.stderr
    result = cli("analyze", "euler", "--param", "h")
    assert result.returncode == 2
    assert "expected NAME=NUMBER, such as h=0.05, not 'h'" in result.stderr


def test_verdict_of_leapfrog_and_euler():
    leapfrog = verdict(odenet.analyze(odenet.load("leapfrog")))
    assert (
        leapfrog[0]
        == "stable for h**2*λ in [0, 4) on the real axis and on the imaginary axis only at h**2*λ = 0"
    )
    assert (
        leapfrog[3]
        == "reversible without storing activations; the inverse multiplies rounding error by 1 per layer"
    )
    euler = verdict(odenet.analyze(odenet.load("euler")))
    assert euler[0] == "stable for h*λ in [-2, 0] on the real axis and on the imaginary axis only at h*λ = 0"
    assert euler[2] == "order 1 for x' = f(x)"
    assert euler[3].startswith(
        "invertible by fixed-point iteration when every function's Lipschitz constant is below 10 "
        "(h*Lip(f) < 1)"
    )
    momentum = verdict(odenet.analyze(odenet.load("momentum")))
    assert momentum[3] == (
        "reversible without storing activations (valid while gamma != 0); "
        "the inverse multiplies rounding error by 1.11 per layer"
    )


def test_report_of_one_scheme(tmp_path):
    result = cli("analyze", "reversible_heun", "--report", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## Inverse (derived)" in report
    assert "$$ z_{n} = - h f{\\left(z_{n+1} \\right)} + 2 y_{n+1} - z_{n+1} $$" in report
    assert "| order in h | 2 (judged on y" in report
    png = (tmp_path / "out" / "stability.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list((tmp_path / "out").glob(".*partial"))  # no temporary files left


@pytest.mark.slow
def test_folder_report_matches_the_committed_gallery(tmp_path):
    """`odenet analyze schemes/ --report docs/gallery` regenerates the committed Markdown."""
    gallery = Path(__file__).parent.parent / "docs" / "gallery"
    if not gallery.is_dir():
        pytest.skip("no source checkout with docs/gallery")
    result = cli("analyze", str(library_dir()), "--report", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "index.md").read_text() == (gallery / "index.md").read_text()
    for name in odenet.library_names():
        assert (tmp_path / name / "report.md").read_text() == (gallery / name / "report.md").read_text(), name
        assert (tmp_path / name / "stability.png").exists()


def test_folder_json_is_a_list(tmp_path):
    (tmp_path / "a.scheme").write_text("scheme a\nstate x\nparam h = 0.5\nx[n+1] = x[n] + h*f(x[n])\n")
    (tmp_path / "b.scheme").write_text("scheme b\nstate x\nx[n+1] = f(x[n])\n")
    facts = json.loads(cli("analyze", str(tmp_path), "--json").stdout)
    assert [f["scheme"] for f in facts] == ["a", "b"]
    assert facts[0]["stability"]["real_interval"] == [-2.0, 0.0]  # in h*lambda
    assert facts[0]["stability"]["variable"] == "h*lambda"
    assert facts[1]["reversibility"]["kind"] == "none"
    assert facts[1]["reversibility"]["backward_amplification"] is None


def test_empty_folder_is_a_clear_error(tmp_path):
    result = cli("analyze", str(tmp_path))
    assert result.returncode == 1
    assert f"no .scheme files in the folder '{tmp_path}'" in result.stderr
