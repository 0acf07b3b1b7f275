"""Every experiment script runs end to end at tiny sizes (--quick) and writes its numbers and figure.
The full runs are not part of the test suite; their results are in docs/experiments.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = sorted(p.stem for p in EXPERIMENTS.glob("[a-z]_*.py"))
# Each script trains end to end, even when quick (5 to 40 s): they run in the full suite, outside
# the fast developer target (which keeps the one that trains nothing, d_adjoint).
QUICK = [s if s == "d_adjoint" else pytest.param(s, marks=pytest.mark.slow) for s in SCRIPTS]


def test_all_experiments_exist():
    assert [s[0] for s in SCRIPTS] == list("abcdefghijklmno")


@pytest.mark.parametrize("script", QUICK)
def test_experiment_quick(script, tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    done = subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{script}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=EXPERIMENTS,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / f"{script}.json").read_text())
    assert results
    assert (tmp_path / f"{script}.png").read_bytes()[:4] == b"\x89PNG"
    if script == "h_leaderboard":  # every scheme and mode has its row, none dropped
        assert {(r["scheme"], r["memory"], r["seeds"]) for r in results["mnist1d"]} == {
            ("euler", "autograd", 1),
            ("euler", "checkpoint", 1),
            ("leapfrog", "autograd", 1),
            ("leapfrog", "reversible", 1),
        }
        # the control (euler at revnet's lr and a step of 1) is run and tabled beside the default
        assert (tmp_path / "h_leaderboard" / "control-mnist1d-euler-lr0.001-step1-0.json").is_file()
        assert "| mnist1d | euler | 0.001, h = 1 |" in (tmp_path / "h_leaderboard.md").read_text()
    if script == "o_tuning":  # each scheme's halving ran to its final runs, and its best is one it tried
        for scheme in ("euler", "momentum"):
            row = results["digits"][scheme]
            # the settings, then the 2 kept ones at the last rung's 2 seeds each, then the final run
            assert row["tuned"]["seeds"] == 1 and row["runs"] == (
                4 + 4 + 1 if scheme == "euler" else 2 + 4 + 1
            )
            tried = {p.stem for p in (tmp_path / "o_tuning" / "digits" / scheme).glob("rung1-*.json")}
            best = row["best"]
            step = "none" if best["step"] is None else f"{best['step']:g}"
            name = f"rung1-lr{best['lr']:g}-h{step}-{best['family']}"
            assert {name, f"{name}-seed1"} <= tried
            # its validation accuracy is the mean of its two seeds' (the last rung ranks by the mean)
            seeds = [
                json.loads((tmp_path / "o_tuning" / "digits" / scheme / f"{n}.json").read_text())
                for n in (name, f"{name}-seed1")
            ]
            assert row["validation_accuracy"] == pytest.approx(sum(r["test_accuracy"] for r in seeds) / 2)
        assert "| euler |" in (tmp_path / "o_tuning.md").read_text()
    if script == "d_adjoint":  # Heun's rebuild is far better than Euler's (Sander et al. 2022)
        for euler, heun in zip(results["euler"], results["heun"], strict=True):
            assert heun["relative_error"] < euler["relative_error"] / 10


def test_the_sweep_trains_the_final_runs_again_when_its_choice_changes(tmp_path, monkeypatch):
    """The final runs are those of the chosen setting: when a later rung changes the choice (digits'
    last rung gained seeds 1 and 2), the earlier choice's final runs are not taken for the new one's."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import o_tuning

    grid = o_tuning.grid_of(quick=True)
    first, second = o_tuning.settings("euler", grid)[:2]

    def write(run, accuracy):
        path = run.path(tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"test_accuracy": accuracy, "test_loss": 1 - accuracy, "wall_seconds": 1}))

    for rung in (0, 1):
        for setting in o_tuning.settings("euler", grid):
            for seed in o_tuning.rung_seeds(grid, "digits", rung):
                accuracy = {first: 0.9, second: 0.6}.get(setting, 0.5)
                write(o_tuning.Run("digits", "euler", setting, rung, seed), accuracy)
    write(o_tuning.Run("digits", "euler", first, None, 0), 0.95)
    missing, known = o_tuning.halving(tmp_path, "digits", "euler", grid)
    assert (missing, known["best"]) == ([], first)
    write(o_tuning.Run("digits", "euler", second, 1, 1), 2.0)  # the mean of its seeds now ranks it first
    missing, known = o_tuning.halving(tmp_path, "digits", "euler", grid)
    assert known["best"] == second
    assert missing == [o_tuning.Run("digits", "euler", second, None, 0)]
    # a setting that failed at any seed ranks last, however well its other seeds did
    o_tuning.Run("digits", "euler", second, 1, 0).path(tmp_path).write_text(
        json.dumps({"failed": "did not converge", "wall_seconds": 1})
    )
    assert o_tuning.halving(tmp_path, "digits", "euler", grid)[1]["best"] == first


def test_the_sweep_passes_a_choice_whose_final_run_fails_to_the_next_setting(tmp_path, monkeypatch):
    """A setting whose final run fails (an implicit layer's solve that does not converge at one seed)
    is not a default to give: the choice passes to the next setting of the last rung, then to those
    an earlier rung dropped, best first; each gets its own final runs, and its validation accuracy
    is its own."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import o_tuning

    grid = {**o_tuning.grid_of(quick=True), "rungs": (1, 1, 1), "last_rung_seeds": (0,)}
    every = o_tuning.settings("euler", grid)
    assert len(every) == 4

    folder = tmp_path / "o_tuning"

    def write(run, accuracy=None):
        path = run.path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = {"failed": "did not converge"} if accuracy is None else {"test_accuracy": accuracy}
        measured = {"parameters": 10, "seconds": 1, "peak_memory_mb": 1}
        path.write_text(json.dumps({**result, **measured, "test_loss": 0.1, "wall_seconds": 1}))

    accuracy = dict(zip(every, (0.9, 0.8, 0.7, 0.6), strict=True))
    for rung, alive in enumerate((every, every[:2], every[:2])):  # keep: 2 of 4, then both
        for setting in alive:
            write(o_tuning.Run("digits", "euler", setting, rung, 0), accuracy[setting])
    final = [o_tuning.Run("digits", "euler", every[0], None, seed) for seed in grid["seeds"]]
    assert o_tuning.halving(folder, "digits", "euler", grid)[0] == final
    write(final[0])  # the choice's final run failed
    missing, known = o_tuning.halving(folder, "digits", "euler", grid)
    assert known["best"] == every[1] and known["passed_over"] == [(every[0], "did not converge")]
    assert missing == [o_tuning.Run("digits", "euler", every[1], None, 0)]
    write(missing[0])  # so did the next one's: on to the best of those the first rung dropped
    missing, known = o_tuning.halving(folder, "digits", "euler", grid)
    assert known["best"] == every[2] and [s for s, _ in known["passed_over"]] == every[:2]
    table = o_tuning.collect(tmp_path, [("digits", "euler")], grid)
    assert "# euler: its final runs are under way" in o_tuning.defaults_literal(table, grid)
    write(missing[0], 0.75)
    literal = o_tuning.defaults_literal(o_tuning.collect(tmp_path, [("digits", "euler")], grid), grid)
    passed = "passed_over=('lr 0.01, h 0.1, bn', 'lr 0.001, h 0.1, bn')"
    assert f'"euler": Tuned("bn", 0.01, 1.0, 70.0, 4, {passed}),' in literal  # every rung 1 epoch
    table = o_tuning.collect(tmp_path, [("digits", "euler")], grid)["digits"]["euler"]
    assert table["validation_accuracy"] == 0.7 and table["tuned"]["mean"] == 75.0
    shown = o_tuning.markdown({"digits": {"euler": table}}, grid)
    assert "(after lr 0.01, h 0.1, bn; lr 0.001, h 0.1, bn: each failed a final run) | 70.0 |" in shown


def test_a_setting_that_failed_a_later_rung_is_not_chosen_from_an_earlier_one(tmp_path, monkeypatch):
    """Digits' last rung trains 3 seeds, and a setting failing one of them fails the rung: when the
    next choice's final run fails too, the first is not taken back on the strength of its earlier
    rung (the first version did, with that rung's accuracy); the choice goes to those dropped."""
    monkeypatch.syspath_prepend(str(EXPERIMENTS))
    import o_tuning

    grid = {**o_tuning.grid_of(quick=True), "rungs": (1, 1), "last_rung_seeds": (0, 1)}
    every = o_tuning.settings("euler", grid)
    folder = tmp_path / "o_tuning"

    def write(run, accuracy=None):
        path = run.path(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        result = {"failed": "did not converge"} if accuracy is None else {"test_accuracy": accuracy}
        path.write_text(json.dumps({**result, "test_loss": 0.1, "wall_seconds": 1}))

    for setting, accuracy in zip(every, (0.9, 0.8, 0.7, 0.6), strict=True):
        write(o_tuning.Run("digits", "euler", setting, 0, 0), accuracy)
    write(o_tuning.Run("digits", "euler", every[0], 1, 0), 0.95)
    write(o_tuning.Run("digits", "euler", every[0], 1, 1))  # fails one seed of the last rung
    for seed in (0, 1):
        write(o_tuning.Run("digits", "euler", every[1], 1, seed), 0.85)
    missing, known = o_tuning.halving(folder, "digits", "euler", grid)
    assert known["best"] == every[1]
    write(missing[0])  # its final run fails
    missing, known = o_tuning.halving(folder, "digits", "euler", grid)
    assert known["best"] == every[2] and known["validation"] == 0.7 and known["seeds"] == 1
