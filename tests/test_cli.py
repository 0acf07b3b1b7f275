"""The command line, run as a user runs it: a fresh interpreter, real files, exit codes."""

from __future__ import annotations

import pytest
from conftest import cli, run_cli

import odenet
from odenet.library import library_dir


def test_list_shows_every_library_scheme_with_its_description():
    result = cli("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in odenet.library_names():
        (line,) = [line for line in lines if line.split()[:1] == [name]]
        assert line.split(None, 1)[1] == odenet.library.describe(odenet.load(name))
    assert lines[-1].startswith(f"{len(odenet.library_names())} schemes in ")


def test_show_leapfrog():
    result = cli("show", "leapfrog")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "step (explicit):\n  y[n+1] = -h**2*f(y[n]) - y[n-1] + 2*y[n]\n" in out
    assert "  y  history 1 (reads y[n], y[n-1])  input, output\n" in out
    assert "  h = 0.1  (fixed)\n" in out
    assert "  y[n-1] = y[n]\n" in out
    assert "f(y[n])  <- y[n]\n  y[n+1]   <- f(y[n]), y[n-1], y[n]\n" in out
    from odenet.training import DATA_DEFAULTS
    from odenet.training.defaults import scheme_defaults

    for data in ("mnist1d", "digits"):  # the defaults of each data set, as train takes them
        d = scheme_defaults(odenet.load("leapfrog"), data, DATA_DEFAULTS[data].layout)
        step = d.step_value(odenet.load("leapfrog"))
        line = f"  --data {data}: --family {d.family} --lr {d.lr:g} --step {step:g}; memory-saving mode "
        assert line + "reversible (" in out


def test_show_marks_implicit_schemes_and_learnable_params():
    out = cli("show", "backward_euler").stdout
    assert "step (implicit):" in out
    assert "implicit: the equation of x[n+1] reads x[n+1], not known yet at that point" in out
    out = cli("show", "momentum").stdout
    assert "gamma = 0.9  (learnable, one value per layer, kept in (0, 1))" in out


def test_show_accepts_a_file_path(tmp_path):
    path = tmp_path / "mine.scheme"
    path.write_text("scheme mine\nstate y\ny[n+1] = y[n] + f(y[n])\n")
    result = cli("show", str(path))
    assert result.returncode == 0 and result.stdout.startswith("scheme mine\n")


def test_check_library_exits_zero():
    files = sorted(str(p) for p in library_dir().glob("*.scheme"))
    result = cli("check", *files)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ok (scheme ") == len(files) == len(odenet.library_names())


def test_check_reports_every_problem_without_traceback(tmp_path):
    good = tmp_path / "good.scheme"
    good.write_text("scheme good\nstate y\ny[n+1] = y[n] + f(y[n])\n")
    bad = tmp_path / "bad.scheme"
    bad.write_text("scheme bad\nstate y, v\nparam h = 0.1\ny[n+1] = y[n] + q\n")
    result = cli("check", str(good), str(bad), str(tmp_path / "missing.scheme"))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{good}: ok (scheme good)" in result.stdout
    err = result.stderr
    assert f"{bad}:4:17: unknown name 'q'" in err
    assert "    4 | y[n+1] = y[n] + q\n      |                 ^" in err
    assert f"{bad}:2:10: state 'v' is never updated" in err
    assert f"{tmp_path / 'missing.scheme'}: no such file" in err
    assert err.rstrip().endswith("2 of 3 files have problems")


def test_unknown_scheme_is_a_clear_error():
    result = cli("show", "leapfrgo")
    assert result.returncode == 1
    assert result.stderr.startswith(
        "odenet: no library scheme or file named 'leapfrgo' (nor 'leapfrgo.scheme'); did you mean 'leapfrog'?"
    )
    assert "Traceback" not in result.stderr


def test_help_and_version():
    """End to end: ``python -m odenet`` in a fresh interpreter."""
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("list", "show", "check", "analyze", "compile", "train", "evaluate", "stability"):
        assert command in result.stdout
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"odenet {odenet.__version__}"


def test_no_command_is_a_usage_error():
    result = cli()
    assert result.returncode == 2
    assert "usage: odenet" in result.stderr


def test_compile_emit_prints_the_generated_code():
    result = cli("compile", "reversible_heun", "--emit")
    assert result.returncode == 0, result.stderr
    assert "def step(state, p, call):" in result.stdout
    assert "def inverse_step(state, p, call):" in result.stdout
    assert 'c1 = call(1, "f", z_np1)' in result.stdout
    result = cli("compile", "rk4", "--emit")
    assert "# no explicit inverse: scheme rk4 has no explicit inverse" in result.stdout


def test_compile_trains_a_few_steps_and_reports_memory():
    result = cli(
        "compile", "momentum", "--depth", "6", "--memory", "reversible", "--steps", "3", "--width", "8"
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("scheme momentum: depth 6, memory=reversible")
    losses = [float(line.split("loss ")[1].split()[0]) for line in lines if line.strip().startswith("step")]
    assert len(losses) == 3 and losses[2] < losses[0]


def test_compile_refuses_bad_arguments():
    result = cli("compile", "euler", "--depth", "0")
    assert result.returncode == 2 and "expected a whole number >= 1, not '0'" in result.stderr
    result = cli("compile", "ab2", "--memory", "reversible", "--depth", "2")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "memory='checkpoint'" in result.stderr


def test_train_without_flags_uses_the_configs_defaults(monkeypatch, tmp_path):
    """The command line restates no default: with no flags, the settings are TrainSettings() and the
    model is ModelConfig's defaults plus the data set's sizes from DATA_DEFAULTS, with the scheme's
    defaults on that data set (odenet.training.defaults) for the family, the learning rate and the step."""
    import odenet.training
    from odenet.models import ModelConfig
    from odenet.training import DATA_DEFAULTS, TrainSettings
    from odenet.training.defaults import scheme_defaults

    seen = {}

    def fake_train(config, data, settings, out, data_info, resume=False):
        seen.update(config=config, settings=settings)
        return None, {"test_loss": 0.0, "test_accuracy": None}

    monkeypatch.setattr(odenet.training, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    assert cli("train", "leapfrog", "--data", "rings").returncode == 0
    chosen = scheme_defaults(odenet.load("leapfrog"), "rings", "mlp")
    assert seen["settings"] == TrainSettings(lr=chosen.lr)
    config, rings = seen["config"], DATA_DEFAULTS["rings"]
    expected = ModelConfig(
        config.scheme,
        (2,),
        2,
        layout=rings.layout,
        width=rings.width,
        stem=rings.stem,
        head=rings.head,
        family=chosen.family,
        params={} if chosen.step is None else {"h": chosen.step},
    )
    assert config == expected


def test_train_smooth_init_reaches_the_model_and_is_refused_with_shared(monkeypatch, tmp_path):
    import odenet.training

    seen = {}

    def fake_train(config, data, settings, out, data_info, resume=False):
        seen.update(config=config)
        return None, {"test_loss": 0.0, "test_accuracy": None}

    monkeypatch.setattr(odenet.training, "train", fake_train)
    monkeypatch.chdir(tmp_path)
    assert cli("train", "euler", "--data", "rings", "--smooth-init").returncode == 0
    assert seen["config"].smooth_init and not seen["config"].shared
    seen.clear()
    refused = cli("train", "euler", "--data", "rings", "--smooth-init", "--shared")
    assert refused.returncode != 0 and not seen
    assert "smooth_init gives per-layer functions equal starting weights" in refused.stderr


def test_compile_trains_a_look_ahead_scheme_in_reversible_mode():
    """Nesterov's look-ahead has a fixed-point inverse that reads its own unknown; its generated
    code read the value before making it (UnboundLocalError: 'v_np1'), printed as a traceback."""
    from pathlib import Path

    nesterov = Path(__file__).parent.parent / "benchmarks" / "user_schemes" / "nesterov.scheme"
    for text in (str(nesterov), str(Path(__file__).parent / "data" / "user" / "nag.scheme")):
        result = cli("compile", text, "--memory", "reversible", "--depth", "4", "--steps", "2")
        assert result.returncode == 0, result.stderr
        assert "reconstruction error of the rebuilt input" in result.stdout


@pytest.mark.parametrize(
    ("solve", "advice"),
    [
        ("step", "--solver newton, or a smaller --step than 1"),
        ("adjoint", "--solver newton, or a smaller --step than 1"),
        ("rebuild", "--memory checkpoint, or a smaller --step than 1"),
    ],
)
def test_train_names_the_flags_that_act_on_a_solve_that_did_not_converge(
    monkeypatch, tmp_path, solve, advice
):
    """A solve that did not converge advises max_iter, tol or Newton, which are Solver options in
    Python; from the command line the message adds the flags that act on it (backward Euler at h 1
    on MNIST-1D: seed 2's first solve did not converge, and --solver newton does). The flags follow
    the error's ``solve``, not its wording."""
    import odenet.training
    from odenet.errors import ConvergenceError

    def fails(*args, **kwargs):
        raise ConvergenceError("scheme backward_euler, layer 0: did not converge.", 0, 3.5e-6, 100, solve)

    monkeypatch.setattr(odenet.training, "train", fails, raising=False)
    result = cli("train", "backward_euler", "--data", "rings", "--step", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert f"did not converge. Flags of odenet train that may help: {advice}" in result.stderr
    # without --step: the step it trained with, its default (rings takes MNIST-1D's: backward Euler's 0.3)
    result = cli("train", "backward_euler", "--data", "rings", "--out", str(tmp_path / "default"))
    assert advice.replace("than 1", "than 0.3") in result.stderr
    # a scheme whose defaults keep its own step (backward Euler's 0.3 lies outside its interval)
    own = tmp_path / "own.scheme"
    own.write_text("scheme own\nstate x\nparam h = 0.5 learnable in (0.4, 2)\nx[n+1] = x[n] + h*f(x[n+1])\n")
    result = cli("train", str(own), "--data", "rings", "--out", str(tmp_path / "own"))
    assert advice.replace("than 1", "than 0.5") in result.stderr
