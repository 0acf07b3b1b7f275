"""Trained-network stability: spectra against hand-computed eigenvalues and known regions, the
Arnoldi estimate against the exact spectrum, the stability command and its report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import odenet
from odenet.cli import main
from odenet.models import ModelConfig, build_model
from odenet.models.spectra import _arnoldi_eigenvalues, _exact_eigenvalues, _Regions, trained_stability


def model_with_linear_functions(scheme: str, diagonal: list[float], depth: int = 2, **params):
    """A model whose every layer's function is the linear map diag(diagonal): its Jacobian's
    eigenvalues are the diagonal entries, wherever it is evaluated."""
    width = len(diagonal)
    config = ModelConfig(
        odenet.format_scheme(odenet.load(scheme)),
        (width,),
        2,
        width=width,
        depth=depth,
        params=params,
        family="mlp",
    )
    model = build_model(config)
    block = model.stages[0]
    for name in list(block.functions):
        layers = nn.ModuleList()
        for _ in range(depth):
            linear = nn.Linear(width, width, bias=False)
            with torch.no_grad():
                linear.weight.copy_(torch.diag(torch.tensor(diagonal)))
            layers.append(linear)
        block.functions[name] = layers
    return model


@pytest.mark.parametrize(
    ("scheme", "diagonal", "params", "outside"),
    [
        ("euler", [-5.0, -25.0], {"h": 0.1}, 0.5),  # h*lambda = -0.5 inside [-2, 0]; -2.5 outside
        ("euler", [-5.0, -15.0], {"h": 0.1}, 0.0),
        ("euler", [3.0, -1.0], {"h": 0.1}, 0.5),  # 1 + h*lambda = 1.3: growth
        ("leapfrog", [100.0, 500.0], {"h": 0.1}, 0.5),  # h^2*lambda = 1 inside [0, 4]; 5 outside
        ("leapfrog", [-1.0, 100.0], {"h": 0.1}, 0.5),  # a negative lambda: exponential growth
        ("rk4", [-20.0, -29.0], {"h": 0.1}, 0.5),  # the real interval of RK4 ends at -2.785
    ],
)
def test_outside_fraction_of_known_spectra(scheme, diagonal, params, outside):
    model = model_with_linear_functions(scheme, diagonal, **params)
    result = trained_stability(model, torch.randn(3, len(diagonal)))
    assert [layer.outside_fraction for layer in result.layers] == [outside, outside]
    assert result.layers[0].max_abs_eigenvalue == pytest.approx(max(abs(d) for d in diagonal))
    assert result.stable == (outside == 0)
    assert result.layers[0].scale == pytest.approx(
        params["h"] ** (2 if scheme == "leapfrog" else 1), rel=1e-6
    )


def test_learnable_parameters_give_each_layer_its_own_region():
    """momentum's region in lambda depends on gamma: with gamma = 0.9 the real interval is
    [-2(1+gamma)/(1-gamma), 0] = [-38, 0]; with gamma = 0.1 it is [-2.44, 0]."""
    model = model_with_linear_functions("momentum", [-10.0], depth=2)
    block = model.stages[0]
    from odenet.nn.params import unconstrain

    with torch.no_grad():
        block.raw_params["gamma"].copy_(torch.tensor([unconstrain(0.9, (0, 1)), unconstrain(0.1, (0, 1))]))
    result = trained_stability(model, torch.randn(2, 1))
    assert [round(layer.params["gamma"], 6) for layer in result.layers] == [0.9, 0.1]
    assert [layer.outside_fraction for layer in result.layers] == [0.0, 1.0]


def test_exact_eigenvalues_match_the_hand_jacobian_of_the_chang_family():
    torch.manual_seed(0)
    config = ModelConfig(
        odenet.format_scheme(odenet.load("leapfrog")), (6,), 2, width=6, depth=1, family="chang"
    )
    model = build_model(config).double()
    f = model.stages[0].functions["f"][0]
    points = torch.randn(4, 6, dtype=torch.float64)
    found = np.sort_complex(_exact_eigenvalues(f, points))
    k, b = f.kernel.detach().numpy(), f.bias.detach().numpy()
    hand = []
    for p in points.numpy():
        d = 1 - np.tanh(k @ p + b) ** 2
        hand.extend(np.linalg.eigvalsh(k.T @ np.diag(d) @ k))
    assert np.allclose(found.real, np.sort(hand), atol=1e-12)
    assert np.abs(found.imag).max() < 1e-12


@pytest.mark.parametrize("seed", range(6))
def test_arnoldi_finds_the_extreme_eigenvalues(seed):
    # seed 1's first point has a clustered shifted spectrum (moduli 0.547, 0.541, 0.522) on which
    # ARPACK at tol 1e-3 from its own random start lost the largest in about 1 run in 150; at 1e-6
    # the errors are below 1e-7 of the radius, at 1e-3 up to 9e-6 (seed 2), which this tolerance sees
    torch.manual_seed(seed)
    f = nn.Sequential(nn.Linear(60, 60), nn.Tanh(), nn.Linear(60, 60)).double()
    points = torch.randn(2, 60, dtype=torch.float64)
    exact = _exact_eigenvalues(f, points)
    estimate = _arnoldi_eigenvalues(f, points)
    radius = np.abs(exact).max()
    assert np.abs(estimate).max() == pytest.approx(radius, rel=1e-6)
    assert estimate.real.min() == pytest.approx(exact.real.min(), abs=1e-6 * radius)
    assert estimate.real.max() == pytest.approx(exact.real.max(), abs=1e-6 * radius)


def test_arnoldi_refuses_rather_than_report_an_empty_spectrum():
    """No converged eigenvalue used to read as spectral radius 0 ("stable"); an orthogonal matrix
    (every modulus 1) with one restart allowed converges none."""
    import scipy.sparse.linalg as linalg

    from odenet.errors import ConvergenceError
    from odenet.models.spectra import _largest_modulus

    q, _ = np.linalg.qr(np.random.default_rng(3).standard_normal((40, 40)))
    with pytest.raises(ConvergenceError, match=r"exact_limit=40") as raised:
        _largest_modulus(linalg, lambda v: q @ v, 40, 4, maxiter=1)
    assert raised.value.solve == "eigenvalues"


def test_arnoldi_estimates_do_not_depend_on_earlier_calls():
    torch.manual_seed(1)
    f = nn.Sequential(nn.Linear(60, 60), nn.Tanh(), nn.Linear(60, 60)).double()
    points = torch.randn(2, 60, dtype=torch.float64)
    first = _arnoldi_eigenvalues(f, points)
    _arnoldi_eigenvalues(f, torch.randn(3, 60, dtype=torch.float64))  # moves ARPACK's own seed
    assert np.array_equal(np.sort_complex(first), np.sort_complex(_arnoldi_eigenvalues(f, points)))


def test_stability_command_json_and_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "leapfrog",
                "--family",
                "chang",
                "--layout",
                "mlp",
                "--depth",
                "3",
                "--epochs",
                "1",
                "--width",
                "8",
                "--train-fraction",
                "0.2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "stability",
                str(out / "checkpoint.pt"),
                "--json",
                "--samples",
                "4",
                "--report",
                str(tmp_path / "report"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["scheme"] == "leapfrog"
    assert [layer["layer"] for layer in result["layers"]] == [0, 1, 2]
    for layer in result["layers"]:
        assert {"layer", "outside_fraction", "max_abs_eigenvalue"} <= set(layer)
        assert layer["eigenvalues"] == 4 * 8
    # the chang family's Jacobian K^T diag(s') K is positive semidefinite: leapfrog is stable while
    # h^2 * lambda_max <= 4
    assert result["stable"] is all(layer["max_abs_scaled"] <= 4 for layer in result["layers"])
    assert result["stable"]
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Trained-network stability: leapfrog" in report and "| 2 | 0 |" in report
    assert (tmp_path / "report" / "spectra.png").read_bytes()[:4] == b"\x89PNG"


def model_with_matrices(scheme: str, matrices: dict[str, torch.Tensor], depth: int = 1, **params):
    """A model whose function ``name`` is the linear map ``matrices[name]`` in every layer."""
    width = next(iter(matrices.values())).shape[0]
    config = ModelConfig(
        odenet.format_scheme(odenet.load(scheme)), (width,), 2, width=width, depth=depth, params=params,
        family="mlp",
    )  # fmt: skip
    model = build_model(config).double()
    block = model.stages[0]
    for name in list(block.functions):
        layers = nn.ModuleList()
        for _ in range(depth):
            linear = nn.Linear(width, width, bias=False).double()
            with torch.no_grad():
                linear.weight.copy_(matrices[name])
            layers.append(linear)
        block.functions[name] = layers
    return model


def test_joint_linearization_of_hamiltonian_is_the_hand_matrix_and_catches_opposite_signs():
    """hamiltonian: y' = y + h A z, z' = z - h B y'. Its step matrix is [[I, hA], [-hB, I - h^2 BA]].
    With A = 10 I and B = -10 I (h = 0.1) each function alone sits inside the region (|h lambda| = 1
    < 2), but jointly trace = 2 - h^2 a b = 3: eigenvalues (3 +- sqrt 5)/2, one of them 2.618 > 1.
    The old per-function placement called this stable."""
    torch.manual_seed(3)
    width = 3
    a_matrix, b_matrix = (
        torch.randn(width, width, dtype=torch.float64),
        torch.randn(width, width, dtype=torch.float64),
    )
    model = model_with_matrices("hamiltonian", {"f": a_matrix, "g": b_matrix})
    result = trained_stability(model, torch.randn(2, width))
    layer = result.layers[0]
    assert layer.joint
    h = 0.1
    eye = np.eye(width)
    a, b = a_matrix.numpy(), b_matrix.numpy()
    hand = np.block([[eye, h * a], [-h * b, eye - h * h * b @ a]])
    expected = np.sort_complex(np.tile(np.linalg.eigvals(hand), 2))  # two samples, same matrix
    assert np.allclose(np.sort_complex(layer.amplification), expected, atol=1e-12)

    opposite = model_with_matrices("hamiltonian", {"f": 10 * torch.eye(2), "g": -10 * torch.eye(2)})
    result = trained_stability(opposite, torch.randn(1, 2))
    assert not result.layers[0].outside.any()  # each function alone: inside the region
    # h is stored in float32 (0.1 to 7 digits)
    assert result.layers[0].max_amplification == pytest.approx((3 + 5**0.5) / 2, rel=1e-7)
    assert not result.stable
    same = model_with_matrices("hamiltonian", {"f": 10 * torch.eye(2), "g": 10 * torch.eye(2)})
    result = trained_stability(same, torch.randn(1, 2))
    assert result.stable and result.layers[0].max_amplification == pytest.approx(1.0, abs=1e-12)


SINGLE = ["euler", "heun", "rk4", "ab2", "leapfrog", "midpoint", "momentum", "lm_resnet"]


@pytest.mark.parametrize("scheme", SINGLE)
def test_joint_linearization_agrees_with_the_region_for_one_function(scheme):
    """For one function the joint matrix is the amplification matrix at J: its spectral radius is
    the largest over J's eigenvalues of the region's test (J diagonalizable), for a random J."""
    torch.manual_seed(4)
    matrix = 3 * torch.randn(4, 4, dtype=torch.float64)
    model = model_with_matrices(scheme, {"f": matrix})
    result = trained_stability(model, torch.randn(1, 4), joint=True)
    layer = result.layers[0]
    region = _Regions(model.scheme)
    numeric, _ = region.at(dict(layer.params))
    # the region is taken at the parameters to 7 digits (0.1), the step at float32's 0.100000001
    assert layer.max_amplification == pytest.approx(float(numeric.radius(layer.eigenvalues).max()), rel=1e-7)


def test_joint_eigenvalues_are_the_analysis_amplification_matrix_at_a_scalar_lambda():
    """Every explicit library scheme, every function f(u) = lambda*u: the joint linearization's
    eigenvalues are those of the analysis' amplification matrix at that lambda (sympy, another path)."""
    import sympy

    from odenet.analysis import analyze
    from odenet.analysis.stability import LAMBDA

    lam = -3.7
    for name in odenet.library_names():
        scheme = odenet.load(name)
        if not scheme.is_explicit:
            continue
        model = model_with_matrices(name, {f.name: lam * torch.eye(2) for f in scheme.functions})
        result = trained_stability(model, torch.randn(1, 2), joint=True)
        found = result.layers[0].amplification
        analysis = analyze(scheme)
        values = {sympy.Symbol(k, real=True): v for k, v in analysis.params.items()}
        matrix = analysis.stability.amplification_matrix.subs(values).subs(LAMBDA, lam)
        reference = np.linalg.eigvals(np.array(sympy.N(matrix), dtype=complex))
        distance = np.abs(found[:, None] - reference[None, :])  # the same set, multiplicities aside
        assert distance.min(axis=1).max() < 1e-6 and distance.min(axis=0).max() < 1e-6, name


def test_joint_arnoldi_finds_the_spectral_radius_of_a_trained_hamiltonian_layer():
    torch.manual_seed(5)
    config = ModelConfig(
        odenet.format_scheme(odenet.load("hamiltonian")), (20,), 2, width=20, depth=1, family="chang",
        params={"h": 0.5},
    )  # fmt: skip
    model = build_model(config).double()
    x = torch.randn(2, 20)
    exact = trained_stability(model, x, joint=True)
    estimate = trained_stability(model, x, joint=True, exact_limit=10)
    radius = exact.layers[0].max_amplification
    assert estimate.layers[0].max_amplification == pytest.approx(radius, rel=1e-3)


def test_growth_is_the_largest_amplification_per_step():
    """Euler, h = 0.1, f = diag(3, -25): amplification factors 1 + h*lambda = 1.3 and -1.5."""
    model = model_with_linear_functions("euler", [3.0, -25.0], h=0.1)
    layer = trained_stability(model, torch.randn(2, 2)).layers[0]
    assert layer.growth == pytest.approx(1.5, rel=1e-6)
    joint = model_with_matrices("hamiltonian", {"f": 10 * torch.eye(2), "g": -10 * torch.eye(2)})
    layer = trained_stability(joint, torch.randn(1, 2)).layers[0]
    assert layer.growth == layer.max_amplification == pytest.approx((3 + 5**0.5) / 2, rel=1e-7)


# -- a block inside any model ----------------------------------------------------------------------


class _ScaledLinear(nn.Module):
    """f(x; scale) = scale * (x A^T): at sample i its Jacobian's eigenvalues are scale_i * eig(A)."""

    def __init__(self, matrix):
        super().__init__()
        self.matrix = nn.Parameter(matrix.clone())

    def forward(self, x, *, scale, offset=None):
        out = x @ self.matrix.T
        return out * scale if offset is None else out * scale + offset


def test_a_block_with_context_is_judged_per_sample():
    """trained_stability(block, x, context=...): each sample's eigenvalues are its own scale times
    eig(A) (the scale is (batch, 1): taken per sample; the offset is shared), hand-derived."""
    torch.manual_seed(0)
    matrix = torch.diag(torch.tensor([-1.0, -4.0, -9.0]))
    block = odenet.compile("euler", {"f": lambda i: _ScaledLinear(matrix)}, 2, params={"h": 0.1})
    x = torch.randn(2, 3)
    scale = torch.tensor([[1.0], [5.0]], requires_grad=True)  # sample 1: h*lambda down to -4.5
    result = trained_stability(block, x, context={"scale": scale, "offset": torch.ones(3)})
    expected = np.sort(np.array([-1, -4, -9, -5, -20, -45], dtype=float))
    for layer in result.layers:
        assert np.allclose(np.sort(layer.eigenvalues.real), expected, atol=1e-12)
        assert layer.outside_fraction == pytest.approx(1 / 6)  # h*lambda = -4.5 only (-2 is on the edge)
    assert not result.stable


def test_a_model_and_the_block_inside_it_give_the_blocks_own_judgement():
    """With block=..., the block's input and keyword arguments come from one forward pass of the
    model (an embedding before it, the context computed by the model)."""
    torch.manual_seed(0)
    matrix = torch.diag(torch.tensor([-1.0, -30.0]))
    block = odenet.compile("euler", {"f": lambda i: _ScaledLinear(matrix)}, 1, params={"h": 0.1})

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed, self.block = nn.Embedding(5, 2), block

        def forward(self, ids):
            x = self.embed(ids)
            return self.block(x, scale=torch.full((len(ids), 1), 0.5))

    model = Model()
    ids = torch.tensor([1, 3])
    via_model = trained_stability(model, ids, block=block)
    direct = trained_stability(block, model.embed(ids), context={"scale": torch.full((2, 1), 0.5)})
    assert np.allclose(via_model.layers[0].eigenvalues, direct.layers[0].eigenvalues)
    assert np.allclose(np.sort(via_model.layers[0].eigenvalues.real), [-15, -15, -0.5, -0.5])


def test_trained_stability_refuses_what_it_cannot_judge():
    with pytest.raises(odenet.ConfigError, match="not a Linear alone"):
        trained_stability(nn.Linear(2, 2), torch.randn(1, 2))
    block = odenet.compile("euler", {"f": lambda i: nn.Linear(2, 2)}, 1)
    with pytest.raises(odenet.ConfigError, match="did not call the block"):
        trained_stability(nn.Linear(2, 2), torch.randn(1, 2), block=block)


def test_the_joint_linearization_of_a_block_takes_each_samples_context():
    """hamiltonian over f = s*A, g = s*B with a per-sample scale s: sample i's step matrix is
    [[I, h s_i A], [-h s_i B, I - h^2 s_i^2 BA]], hand-derived."""
    torch.manual_seed(3)
    a_matrix, b_matrix = torch.randn(2, 2), torch.randn(2, 2)
    block = odenet.compile(
        "hamiltonian",
        {"f": lambda i: _ScaledLinear(a_matrix), "g": lambda i: _ScaledLinear(b_matrix)},
        1,
        params={"h": 0.5},
    )
    scales = [1.0, 3.0]
    result = trained_stability(block, torch.randn(2, 4), context={"scale": torch.tensor(scales)[:, None]})
    layer = result.layers[0]
    assert layer.joint
    h, eye, a, b = 0.5, np.eye(2), a_matrix.double().numpy(), b_matrix.double().numpy()
    hand = [
        np.linalg.eigvals(np.block([[eye, h * s * a], [-h * s * b, eye - (h * s) ** 2 * b @ a]]))
        for s in scales
    ]
    assert np.allclose(np.sort_complex(layer.amplification), np.sort_complex(np.concatenate(hand)), atol=1e-6)


MODULE = """
import torch
from torch import nn


class Scaled(nn.Module):
    def __init__(self, matrix):
        super().__init__()
        self.matrix = nn.Parameter(matrix)

    def forward(self, x, *, scale):
        return (x @ self.matrix.T) * scale


class Nested(Scaled):
    def forward(self, x, *, ctx):
        return super().forward(x, scale=ctx["inner"]["scale"])


class Model(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.embed, self.block = nn.Embedding(5, 2), block

    def forward(self, ids):
        return self.block(self.embed(ids), scale=torch.full((len(ids), 1), 2.0))
"""


def test_stability_command_reads_a_block_or_a_model_the_user_saved(tmp_path, monkeypatch, capsys):
    """odenet stability on files written by torch.save: the block with its input and context, a
    model holding it with the model's input; a state dict or a pickle without --trust-pickle is
    refused with what to do, and no terminal control codes."""
    (tmp_path / "userlayers.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    import userlayers

    matrix = torch.diag(torch.tensor([-1.0, -30.0]))
    block = odenet.compile("euler", {"f": lambda i: userlayers.Scaled(matrix.clone())}, 2, params={"h": 0.1})
    torch.save(block, tmp_path / "block.pt")
    torch.save(userlayers.Model(block), tmp_path / "model.pt")
    torch.save(block.state_dict(), tmp_path / "weights.pt")
    torch.save({"x": torch.randn(3, 2), "context": {"scale": torch.full((3, 1), 0.5)}}, tmp_path / "x.pt")
    torch.save(torch.tensor([1, 2, 4]), tmp_path / "ids.pt")

    def run(*words):
        code = main(["stability", *map(str, words)])
        out = capsys.readouterr()
        return code, out.out + out.err

    code, out = run(tmp_path / "block.pt", "--input", tmp_path / "x.pt", "--trust-pickle", "--json")
    assert code == 0
    facts = json.loads(out)
    # scale 0.5: h*lambda = -0.05 and -1.5, inside [-2, 0]
    assert facts["stable"] and len(facts["layers"]) == 2
    nested = odenet.compile("euler", {"f": lambda i: userlayers.Nested(matrix.clone())}, 1, params={"h": 0.1})
    torch.save(nested, tmp_path / "nested.pt")
    scale = torch.tensor([[0.5]] * 6 + [[2.0]] * 2)  # examples 6 and 7 unstable: cut by --samples 2
    torch.save({"x": torch.randn(8, 2), "context": {"ctx": {"inner": {"scale": scale}}}}, tmp_path / "x8.pt")
    code, out = run(
        tmp_path / "nested.pt", "--input", tmp_path / "x8.pt", "--trust-pickle", "--json", "--samples", "2"
    )
    assert code == 0 and json.loads(out)["stable"]
    code, out = run(tmp_path / "model.pt", "--input", tmp_path / "ids.pt", "--trust-pickle", "--json")
    facts = json.loads(out)  # scale 2 (the model's context): h*lambda = -6, outside
    assert code == 0 and not facts["stable"]
    assert facts["layers"][0]["outside_fraction"] == pytest.approx(0.5)
    for words, expected in [
        ((tmp_path / "block.pt",), "a pickled object"),
        ((tmp_path / "weights.pt",), "weights only (a state dict of 3 tensors)"),
        ((tmp_path / "block.pt", "--input", tmp_path / "x.pt"), "add --trust-pickle"),
        ((tmp_path / "weights.pt", "--input", tmp_path / "x.pt", "--trust-pickle"), "weights only"),
        (
            (tmp_path / "model.pt", "--input", tmp_path / "ids.pt", "--trust-pickle", "--block", "b"),
            "no block named 'b'",
        ),
        (
            (tmp_path / "model.pt", "--input", tmp_path / "x.pt", "--trust-pickle"),
            "a context is for a block saved alone",
        ),
    ]:
        code, out = run(*words)
        assert code != 0 and expected in out and "\x1b" not in out


class _Embedded(nn.Module):
    """f(x; pair) = tanh(x W^T + pair.shift) * pair.scale, a named tuple of context."""

    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x, *, pair):
        return torch.tanh(self.linear(x) + pair.shift) * pair.scale


@pytest.mark.parametrize(("scheme", "layer"), [("ab2", 1), ("backward_euler", 0)])
def test_trained_stability_sees_the_states_the_block_computes_with_its_context(scheme, layer):
    """The context reaches the init (ab2 starts its history with f) and an implicit layer's solve
    (backward Euler's iterations): the eigenvalues are f's Jacobian's at the block's own points
    (ab2's layer 1 reads the state after layer 0; backward Euler's layer 0 evaluates f at its
    solution), each sample with its own shift, computed here by torch.func."""
    from typing import NamedTuple

    from odenet.nn.layers import Context

    class Pair(NamedTuple):
        shift: torch.Tensor
        scale: torch.Tensor

    torch.manual_seed(0)
    block = odenet.compile(scheme, {"f": lambda i: _Embedded(3)}, 2, params={"h": 0.3}).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    pair = Pair(torch.randn(4, 3, dtype=torch.float64), torch.full((1, 3), 0.5, dtype=torch.float64))
    result = trained_stability(block, x, context={"pair": pair})
    context = Context({"pair": pair})
    with torch.no_grad():
        point = block.step(0, block.initial_state(x, context), context=context)[0]
    f = block.function("f", layer)
    expected = []
    for i in range(len(x)):
        mine = Pair(pair.shift[i : i + 1], pair.scale)
        jacobian = torch.func.jacrev(lambda p, mine=mine: f(p[None], pair=mine)[0])(point[i])
        expected.extend(torch.linalg.eigvals(jacobian.detach()).numpy())
    assert np.allclose(np.sort_complex(result.layers[layer].eigenvalues), np.sort_complex(np.array(expected)))


def test_a_model_that_calls_its_block_by_keyword_is_captured():
    matrix = torch.diag(torch.tensor([-1.0, -30.0]))
    block = odenet.compile("euler", {"f": lambda i: _ScaledLinear(matrix)}, 1, params={"h": 0.1})

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        def forward(self, z):
            return self.block(x=z * 2, scale=torch.ones(len(z), 1))

    result = trained_stability(Model(), torch.randn(2, 2), block=block)
    assert np.allclose(np.sort(result.layers[0].eigenvalues.real), [-30, -30, -1, -1])
