"""Training defaults per scheme: measured ones for the library, derived ones for a user's scheme
(from its analysis), --explain-defaults. No accuracy here: benchmarks/train_defaults.py measures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import sympy
from conftest import cli

import odenet
from odenet.library import library_names, load
from odenet.training.defaults import LIBRARY_DEFAULTS, scheme_defaults

NESTEROV = (
    "scheme nesterov\nstate x\nparam h = 0.1\nparam gamma = 0.5\ninit x[n-1] = x[n]\n"
    "y = x[n] + gamma*(x[n] - x[n-1])\nx[n+1] = y + h*f(y)\n"
)
KDK = (
    "scheme kdk\nstate x, v\nparam h = 0.1\nfunction f, g\nvh = v[n] + h/2*f(x[n])\n"
    "x[n+1] = x[n] + h*g(vh)\nv[n+1] = vh + h/2*f(x[n+1])\n"
)


def test_every_compilable_library_scheme_has_measured_defaults_consistent_with_its_analysis():
    compilable = library_names()  # explicit and implicit schemes alike
    assert sorted(LIBRARY_DEFAULTS) == compilable
    for name in compilable:
        explicit = odenet.analyze(load(name)).reversibility.kind == "explicit"
        expected = "reversible" if explicit else "checkpoint"
        if not load(name).is_explicit:  # each layer solves its step and keeps one evaluation
            expected = "autograd"
        assert LIBRARY_DEFAULTS[name].memory_saving == expected, name
        assert scheme_defaults(load(name)) is LIBRARY_DEFAULTS[name]


def test_a_changed_library_scheme_is_derived_not_measured():
    changed = dataclasses.replace(load("euler"), doc="my own euler")
    assert scheme_defaults(changed) is not LIBRARY_DEFAULTS["euler"]
    assert scheme_defaults(changed).like == "euler"


def test_a_users_scheme_takes_the_resembled_schemes_defaults_and_a_step_inside_its_interval():
    """Nesterov (gamma = 1/2) resembles Euler (first order, one function, no explicit inverse, one
    state); its real stability interval reaches 1.5 where Euler's reaches 2 (both from the analysis,
    checked here against a scan of the spectral radius), so its step is 0.1 * 1.5/2."""
    chosen = scheme_defaults(odenet.parse(NESTEROV))
    assert chosen.like == "euler" and chosen.memory_saving == "checkpoint" and chosen.family == "bn"
    # |root| <= 1 of zeta**2 - (1 + g)(1 + z) zeta + g(1 + z) for z = h*lambda, g = 1/2: scan
    zeta, z = sympy.symbols("zeta z")
    g = sympy.Rational(1, 2)
    reach = 0.0
    for k in range(1, 400):
        value = -k / 200
        roots = sympy.Poly(zeta**2 - (1 + g) * (1 + z) * zeta + g * (1 + z), zeta).subs(z, value)
        if max(abs(complex(r)) for r in sympy.Poly(roots, zeta).nroots()) > 1 + 1e-12:
            break
        reach = -value
    assert abs(reach - 1.5) < 0.01
    assert abs(chosen.step - 0.1 * 1.5 / 2) < 1e-9


def test_a_scheme_written_with_minus_h_f_gets_the_same_step_as_its_mirror():
    """``x[n+1] = y - h*f(y)`` is stable for h*lambda in [0, 1.5], the mirror of Nesterov's
    [-1.5, 0]; the network learns the sign of f, so the step is scaled the same (it was left at 0.1,
    "stable only at 0" on the negative side)."""
    mirrored = odenet.parse(NESTEROV.replace("y + h*f(y)", "y - h*f(y)"))
    interval = odenet.analyze(mirrored).stability.real_interval
    assert list(interval) == [0.0, 1.5]  # in h*lambda
    assert abs(scheme_defaults(mirrored).step - 0.075) < 1e-9


def test_a_region_in_lambda_is_compared_in_h_lambda():
    """The tutorial's damped scheme: its region depends on c*h, so the analysis states it in lambda
    itself, [0, 380] at h = 0.1, c = 1 (by hand: M = [[1 - h^2 lam, h(1 - ch)], [-h lam, 1 - ch]],
    det = 1 - ch, and the root -1 appears where 1 + tr M + det M = 0: 0.01 lam = 3.8). Against
    Euler's h*lambda reach of 2 that is h*lambda = 38, not 380."""
    from odenet.library import load as load_scheme

    damped = load_scheme(Path(__file__).parent.parent / "docs" / "tutorial" / "damped.scheme")
    assert [float(e) for e in odenet.analyze(damped).stability.real_interval] == [0.0, 380.0]
    chosen = scheme_defaults(damped)
    assert chosen.step is None
    assert "reaches h*lambda = 38 on the real axis, euler's 2" in chosen.reasons[-1]


def test_no_step_scaling_without_a_shared_stable_axis():
    """Kick-drift-kick (x' = g(v), v' = f(x)) is stable on the imaginary axis only; the Hamiltonian
    network it resembles on the real axis only: nothing to scale by, the step stays and says so."""
    chosen = scheme_defaults(odenet.parse(KDK))
    assert chosen.step is None
    assert "stable on neither axis where hamiltonian is" in chosen.reasons[-1]


def test_kick_drift_kick_resembles_hamiltonian_and_trains_reversibly():
    chosen = scheme_defaults(odenet.parse(KDK))
    assert chosen.like == "hamiltonian" and chosen.memory_saving == "reversible"


def test_explain_defaults_prints_the_choice_and_why(tmp_path):
    path = tmp_path / "nesterov.scheme"
    path.write_text(NESTEROV)
    result = cli("train", str(path), "--explain-defaults")
    assert result.returncode == 0
    assert "from euler, the library scheme it resembles" in result.stdout
    assert "--step 0.075  (h)" in result.stdout and "--family bn" in result.stdout
    measured = cli("train", "revnet", "--explain-defaults").stdout
    assert "--lr 0.001" in measured and "(measured)" in measured


def test_train_applies_the_defaults_and_the_command_line_overrides_them(tmp_path):
    from odenet.training import load_checkpoint

    assert (
        cli("train", "revnet", "--data", "rings", "--epochs", "1", "--out", str(tmp_path / "a")).returncode
        == 0
    )
    model, content = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    assert model.config.family == "bn" and content["training"]["lr"] == 0.001
    args = [
        "--data",
        "rings",
        "--epochs",
        "1",
        "--family",
        "mlp",
        "--lr",
        "0.02",
        "--out",
        str(tmp_path / "b"),
    ]
    assert cli("train", "revnet", *args).returncode == 0
    model, content = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert model.config.family == "mlp" and content["training"]["lr"] == 0.02
