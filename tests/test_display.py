"""How odenet's objects show themselves: one short ``repr`` line each (a notebook's default), the
longer text under ``str``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import odenet
from odenet.analysis.verdict import verdict
from odenet.codegen import generate_step
from odenet.models.spectra import LayerSpectrum, TrainedStability
from odenet.nn.solvers import Outcome
from odenet.training.data import Dataset


@pytest.fixture(autouse=True)
def _close_figures():
    """A picture drawn without axes is a pyplot figure: closed after each test."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # leapfrog: zeta**2 - (2 - h**2*lambda)*zeta + 1, roots on the unit circle while
        # |2 - h**2*lambda| < 2, i.e. 0 <= h**2*lambda < 4 (a double root at 4)
        (
            "leapfrog",
            "Analysis(leapfrog: explicit; order 2; zero-stable; stable for h**2*λ in [0, 4); "
            "inverse: explicit; symmetric)",
        ),
        # Euler: |1 + h*lambda| <= 1 is the disc of centre -1: [-2, 0] on the real axis, only 0 on the
        # imaginary one; x[n] = x[n+1] - h*f(x[n]) is a fixed point
        (
            "euler",
            "Analysis(euler: explicit; order 1; zero-stable; stable for h*λ in [-2, 0]; "
            "inverse: by fixed-point iteration)",
        ),
        # AB2 carries F = f(x[n]) and drops it: M(0) is singular
        ("ab2", "Analysis(ab2: explicit; order 2; zero-stable; stable for h*λ in [-1, 0]; inverse: none)"),
        # Stormer-Verlet: a composition of kicks and drifts, and self-adjoint
        (
            "verlet",
            "Analysis(verlet: explicit; order 2; zero-stable; stable for h**2*λ in (-4, 0]; "
            "inverse: explicit; symplectic; symmetric)",
        ),
    ],
)
def test_analysis_repr_is_one_line_of_name_and_verdict(name, expected):
    assert repr(odenet.analyze(odenet.load(name))) == expected


def test_structure_and_split_print_their_answers():
    a = odenet.analyze(odenet.load("hamiltonian"))
    assert repr(a.structure) == "Structure(symplectic: yes; symmetric: no)"
    lines = str(a.structure).splitlines()
    assert lines[0].startswith("symplectic: yes: symplectic in (y, z)") and lines[1].startswith(
        "symmetric: no: "
    )
    assert repr(odenet.analyze(odenet.load("leapfrog")).structure) == (
        "Structure(symplectic: does not apply; symmetric: yes)"
    )
    # each alone is a Jordan block at 0 (y' = h*a*z, z' = 0): stable only there
    assert repr(a.split) == "SplitStability(f alone: h*λ in {0}, g alone: h*λ in {0})"


@pytest.mark.parametrize("name", odenet.library_names())
def test_every_analysis_repr_is_short_and_str_is_the_whole_verdict(name):
    a = odenet.analyze(odenet.load(name))
    assert "\n" not in repr(a) and len(repr(a)) < 200
    assert repr(a).startswith(f"Analysis({name}: ")
    assert f"order {a.order}" in repr(a) if a.order is not None else "no order" in repr(a)
    assert str(a).splitlines() == [f"{name}:", *(f"- {line}." for line in verdict(a))]


def test_analysis_str_of_rk4_states_its_intervals():
    """RK4's stability polynomial 1 + z + z**2/2 + z**3/6 + z**4/24 has |R| <= 1 on [-2.785, 0] and on
    i*[-2*sqrt(2), 2*sqrt(2)] (the values tabulated by Hairer and Wanner, vol. II, IV.2)."""
    text = str(odenet.analyze(odenet.load("rk4")))
    assert (
        "- stable for h*λ in [-2.785, 0] on the real axis and for h*λ in i·[-2.828, 2.828] on the "
        "imaginary axis." in text
    )


def test_scheme_repr_shows_name_states_and_updates():
    assert (
        repr(odenet.load("leapfrog")) == "Scheme(leapfrog: state y; y[n+1] = -h**2*f(y[n]) - y[n-1] + 2*y[n])"
    )
    # stages are left out; the updates read them by name
    assert repr(odenet.load("rk4")) == "Scheme(rk4: state x; x[n+1] = h*(k1 + 2*k2 + 2*k3 + k4)/6 + x[n])"
    assert (
        repr(odenet.load("revnet"))
        == "Scheme(revnet: states a, b; a[n+1] = a[n] + f(b[n]); b[n+1] = b[n] + g(a[n+1]))"
    )
    scheme = odenet.load("verlet")
    assert str(scheme) == odenet.format_scheme(scheme)


def test_a_long_update_is_cut_in_the_repr():
    terms = " + ".join(f"f(x[n] + {k})" for k in range(2, 40))
    scheme = odenet.parse(f"scheme long\nstate x\nfunction f\nx[n+1] = x[n] + {terms}\n")
    shown = repr(scheme)
    assert shown.endswith("...)") and len(shown) == len("Scheme(long: state x; ") + 120 + 1
    assert repr(odenet.analyze(scheme).reversibility).count("Scheme(") == 0  # no inverse, none shown


def test_inverse_scheme_in_a_reversibility_repr_is_short():
    r = odenet.analyze(odenet.load("revnet")).reversibility
    assert "Scheme(revnet_inverse: states a, b; b[n+1] = b[n] - g(a[n]); a[n+1] = a[n] - f(b[n+1]))" in repr(
        r
    )


def test_stability_and_reversibility_print_their_facts_not_their_fields():
    """They printed as dataclass dumps (the amplification matrix, the characteristic polynomial, a
    dozen fields). Leapfrog by hand: M = [[2 - z, -1], [1, 0]], z = h**2*lambda, det M = 1, |zeta| <= 1
    for z in [0, 4), 4 itself defective; the inverse steps back with the same formula."""
    a = odenet.analyze(odenet.load("leapfrog"))
    assert repr(a.stability) == "Stability(h**2*λ: real [0, 4), imaginary {0}; zero-stable; det M = 1)"
    assert repr(a.reversibility) == (
        "Reversibility(explicit; inverse Scheme(leapfrog_inverse: state y; y[n+1] = -h**2*f(y[n]) - y[n-1] "
        "+ 2*y[n]); volume-preserving; backward amplification 1)"
    )
    # momentum's region is in lambda at its gamma; det M = gamma; the inverse divides by gamma
    m = odenet.analyze(odenet.load("momentum"))
    assert (
        repr(m.stability)
        == "Stability(λ at gamma = 0.9: real [-38, 0], imaginary {0}; zero-stable; det M = gamma)"
    )
    assert "not volume-preserving; backward amplification 1.11)" in repr(m.reversibility)
    e = odenet.analyze(odenet.load("euler")).reversibility
    assert repr(e).startswith("Reversibility(fixed-point; scheme euler has no explicit inverse")
    assert repr(e).endswith("contraction for Lipschitz constants below 10)")  # 1/h at h = 0.1


def test_training_defaults_print_their_options_not_their_reasons():
    """SchemeDefaults printed as a dataclass dump with every reason in full (a paragraph each)."""
    from odenet.training.defaults import TUNED, scheme_defaults

    tuned = TUNED["mnist1d"]["euler"]
    assert repr(scheme_defaults(odenet.load("euler"), "mnist1d")) == (
        f"SchemeDefaults(tuned on mnist1d: --family {tuned.family} --lr {tuned.lr:g} --step {tuned.step:g}; "
        "memory-saving checkpoint)"
    )
    # a scheme the sweep has not reached keeps the defaults measured before it
    from odenet.training import defaults

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(defaults, "TUNED", {})
        assert repr(defaults.library_defaults.__wrapped__("trapezoidal", "mnist1d")) == (
            "SchemeDefaults(measured: --family bn --lr 0.01; memory-saving autograd)"
        )
    damped = odenet.load(Path(__file__).parent.parent / "docs" / "tutorial" / "damped.scheme")
    assert repr(scheme_defaults(damped, "digits")).startswith(
        "SchemeDefaults(from momentum, tuned on digits:"
    )


def test_dataset_repr_gives_shapes_not_values():
    data = Dataset(
        "digits", "classification", torch.zeros(6, 64), torch.zeros(6), torch.ones(2, 64), torch.ones(2), 10
    )
    assert repr(data) == (
        "Dataset(digits: classification, 10 classes; train x 6 x 64, y 6; test x 2 x 64, y 2; float32)"
    )
    regression = Dataset(
        "mine", "regression", torch.zeros(5, 3), torch.zeros(5, 2), torch.zeros(1, 3), torch.zeros(1, 2), 2
    )
    assert "regression, 2 outputs;" in repr(regression)


def test_step_code_repr_counts_and_str_is_the_source():
    code = generate_step(odenet.load("leapfrog"))
    # leapfrog reads y[n] and y[n-1], returns y[n+1] and the new y[n-1] (= y[n]), calls f(y[n]) once
    assert repr(code) == (
        f"StepCode({code.function_name}: 2 inputs, 2 outputs, 1 calls; "
        f"{len(code.source.splitlines())} lines of source)"
    )
    assert str(code) == code.source and "def " in code.source


def test_solver_outcome_repr_gives_the_shape():
    outcome = Outcome(torch.zeros(4, 3), 7, 8, 1.5e-7)
    assert repr(outcome) == "Outcome(value: 4 x 3 float32, iterations=7, evaluations=8, residual=1.5e-07)"


def _euler_result() -> TrainedStability:
    """Two Euler layers at h = 0.1 with Jacobian eigenvalues -5 and -25: h*mu = -0.5 lies in [-2, 0],
    -2.5 does not; the second layer only has -5."""
    first = LayerSpectrum(
        0, 0, {"h": 0.1}, 0.1, np.array([-5.0, -25.0], complex), np.array([False, True]), "exact"
    )
    second = LayerSpectrum(1, 0, {"h": 0.1}, 0.1, np.array([-5.0], complex), np.array([False]), "exact")
    return TrainedStability(odenet.load("euler"), "h*lambda", 3, (first, second))


def test_trained_stability_repr_and_str():
    result = _euler_result()
    assert (
        repr(result)
        == "TrainedStability(euler: unstable in 1 of 2 layers; 2 layers, 3 test inputs, region in h*lambda)"
    )
    assert str(result) == (
        "unstable: 1 of 2 layers have Jacobian eigenvalues outside the stability region of euler "
        "(worst: layer 0, 50.0% outside; 3 test inputs, 2 layers)"
    )
    assert repr(result.layers[0]) == (
        "LayerSpectrum(layer 0, stage 0: 2 eigenvalues (exact), max |scaled| 2.5, 50.0% outside)"
    )


# -- pictures ----------------------------------------------------------------------------------------


def test_plot_stability_of_a_scheme_and_of_an_analysis_on_given_axes():
    from matplotlib.figure import Figure

    ax = odenet.plot_stability(odenet.load("rk4"))
    # RK4's region: [-2.785, 0] on the real axis, i*[-2.828, 2.828] on the imaginary one (Hairer and
    # Wanner); both fit, at equal scale
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    assert x_low < -2.785 and x_high > 0 and y_low < -2.828 and y_high > 2.828
    assert ax.get_aspect() == 1.0 and ax.get_title() == "rk4: stability region"
    mine = Figure().subplots()
    assert odenet.plot_stability(odenet.analyze(odenet.load("euler")), ax=mine, title="Euler") is mine
    assert mine.get_title() == "Euler"


def test_without_axes_the_picture_is_a_pyplot_figure_and_the_report_touches_no_pyplot_state(tmp_path):
    """``plot_stability(scheme)`` in a notebook shows under the cell (the inline backend shows
    pyplot's figures), as pandas' and seaborn's plots do; the report writer draws on a figure of its
    own, so a user's open figures and backend are left alone."""
    import matplotlib.pyplot as plt

    from odenet.report.analysis import write_report

    plt.close("all")
    ax = odenet.plot_stability(odenet.load("euler"))
    assert plt.get_fignums() == [ax.figure.number]
    write_report(odenet.analyze(odenet.load("leapfrog")), tmp_path)
    assert plt.get_fignums() == [ax.figure.number] and (tmp_path / "stability.png").stat().st_size > 0
    plt.close("all")


def test_a_long_thin_region_is_neither_cut_nor_flattened():
    """Heavy ball at gamma = 0.99: stable for lambda in [-2(1+gamma)/(1-gamma), 0] = [-398, 0] and no
    more than about 1 off the real axis. The picture spans the whole interval, and its height is the
    region's, not the interval's length."""
    analysis = odenet.analyze(odenet.load("momentum"), {"gamma": 0.99})
    assert analysis.stability.real_interval == (-398.0, 0.0)
    ax = odenet.plot_stability(analysis)
    (x_low, x_high), (y_low, y_high) = ax.get_xlim(), ax.get_ylim()
    assert x_low < -398 and x_high > 0
    assert 1 <= y_high < 10 and y_low == -y_high
    assert ax.get_aspect() == "auto"


def test_plot_stability_refuses_an_unknown_style():
    with pytest.raises(
        odenet.ConfigError,
        match="plot_stability has no style 'colour'; it takes boundary, color, intervals, resolution, title",
    ):
        odenet.plot_stability(odenet.load("euler"), colour="red")


def test_plot_spectra_draws_every_layer():
    scheme = odenet.load("euler")
    result = _euler_result()
    region = odenet.analyze(scheme, {"h": 0.1}).stability.numeric
    result = TrainedStability(scheme, "h*lambda", 3, result.layers, region, 0.1)
    ax = odenet.plot_spectra(result)
    assert ax.get_title() == "euler: trained layers' Jacobian spectra (unstable)"
    # h*mu = -2.5 (outside Euler's [-2, 0]) is in the picture
    assert ax.get_xlim()[0] < -2.5
    # one scatter per layer and one ring around the eigenvalue outside
    from matplotlib.collections import PathCollection

    scatters = [c for c in ax.collections if type(c) is PathCollection]
    drawn = sorted(float(p[0]) for c in scatters for p in c.get_offsets())
    assert drawn == pytest.approx([-2.5, -2.5, -0.5, -0.5])


# -- rich display in a notebook ---------------------------------------------------------------------


def test_scheme_repr_latex_aligns_its_equations():
    scheme = odenet.load("heun")
    k1, k2, update = scheme.latex_equations()
    assert scheme._repr_latex_() == (
        "$$\\begin{aligned} "
        + " \\\\ ".join(e.replace(" = ", " &= ", 1) for e in (k1, k2, update))
        + " \\end{aligned}$$"
    )
    assert update == "x_{n+1} = \\frac{h \\left(k_{1} + k_{2}\\right)}{2} + x_{n}"


def _png(html_text: str) -> bytes:
    import base64
    import re

    found = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html_text)
    assert found is not None
    return base64.b64decode(found.group(1))


def test_analysis_html_has_verdict_facts_and_an_inline_picture():
    import html

    from odenet.analysis.verdict import analysis_facts

    analysis = odenet.analyze(odenet.load("rk4"))
    shown = analysis._repr_html_()
    for line in verdict(analysis):
        assert f"<li>{html.escape(line)}.</li>" in shown
    facts = {fact.label: fact.value for fact in analysis_facts(analysis)}
    assert facts["order in h"] == "4" and facts["reversibility"] == "fixed-point"
    assert facts["symplectic"] == "no" and facts["symmetric"] == "no"
    assert facts["real interval of h*λ"] == "[-2.785, 0]"
    assert "<tr><td>real interval of h*λ</td><td>[-2.785, 0]</td></tr>" in shown
    assert _png(shown).startswith(b"\x89PNG\r\n\x1a\n")


def test_analysis_html_without_matplotlib_says_so(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    shown = odenet.analyze(odenet.load("euler"))._repr_html_()
    assert "<img" not in shown
    assert "(no picture of the stability region: drawing a figure needs matplotlib" in shown


def test_trained_stability_html_has_verdict_rows_and_picture():
    scheme = odenet.load("euler")
    region = odenet.analyze(scheme, {"h": 0.1}).stability.numeric
    result = TrainedStability(scheme, "h*lambda", 3, _euler_result().layers, region, 0.1)
    shown = result._repr_html_()
    assert f"<p>{result.verdict}.</p>" in shown
    # layer 0: h*mu = -0.5 and -2.5, one of two outside
    assert "<tr><td>0</td><td>0</td><td>2 (exact)</td><td>2.5</td><td>50.0%</td><td>–</td></tr>" in shown
    assert _png(shown).startswith(b"\x89PNG")


# -- LaTeX -------------------------------------------------------------------------------------------

LEAPFROG_LATEX = r"""\begin{tabular}{ll}
\hline
fact & value \\
\hline
explicit step & yes \\
order in $h$ & 2 \\
consistent ODE & y'' = -f(y) \\
zero-stable & yes \\
real interval of $h^{2} \lambda$ & $[0, 4)$ \\
imaginary interval of $h^{2} \lambda$ & $\{0\}$ \\
$\det M$ & $1$ \\
reversibility & explicit \\
volume-preserving & yes \\
backward amplification & 1 \\
symplectic & does not apply \\
symmetric & yes \\
\hline
\end{tabular}"""


def test_leapfrog_to_latex():
    """M = [[2 - h**2*lambda, -1], [1, 0]]: det M = 1; the roots of zeta**2 - (2 - z)*zeta + 1 lie on
    the unit circle, simple, for 0 <= z < 4 (z = h**2*lambda) and only z = 0 on the imaginary axis."""
    assert odenet.analyze(odenet.load("leapfrog")).to_latex() == LEAPFROG_LATEX


@pytest.mark.parametrize("name", ["momentum", "rk4", "ab2", "backward_euler"])
def test_to_latex_rows_follow_the_analysis(name):
    import sympy

    a = odenet.analyze(odenet.load(name))
    rows = dict(
        line.removesuffix(r" \\").split(" & ", 1) for line in a.to_latex().splitlines() if " & " in line
    )
    assert rows["order in $h$"] == ("none" if a.order is None else str(a.order))
    assert rows[r"$\det M$"] == f"${a.scheme.latex(a.stability.det)}$"
    assert rows["reversibility"] == a.reversibility.kind
    assert rows["zero-stable"] == ("yes" if a.stability.zero_stable else "no")
    var = sympy.latex(a.stability.variable)
    low, high = a.stability.real_interval
    real = rows[f"real interval of ${var}$"]
    assert real.startswith("$") and (r"-\infty" if low is None else f"{low:.4g}") in real
    assert (r"\infty" if high is None else f"{high:.4g}") in real


def test_momentum_latex_names_the_parameter_values_and_escapes_text():
    rows = odenet.analyze(odenet.load("momentum"), {"gamma": 0.5}).to_latex()
    # lambda in [-2(1 + gamma)/(1 - gamma), 0] = [-6, 0] at gamma = 0.5
    assert r"real interval of $\lambda$ & $[-6, 0]$ (at $\gamma = 0.5$) \\" in rows
    from odenet.analysis.latex import escape_latex

    assert escape_latex("a_b & 50% {x} ≥ λ") == r"a\_b \& 50\% \{x\} $\geq$ $\lambda$"


def test_analyze_latex_on_the_command_line():
    from conftest import cli

    result = cli("analyze", "leapfrog", "--latex")
    assert result.returncode == 0 and result.stdout == LEAPFROG_LATEX + "\n"
    assert cli("analyze", "leapfrog", "--latex", "--json").returncode == 2
