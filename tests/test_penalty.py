"""The stability penalty (odenet.models.penalty): its power-iteration estimates against numpy's
eigenvalues, its value and gradient by hand on linear layers, what it leaves alone (running
statistics, the global random stream), and --stability-penalty end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import odenet
from odenet.cli import main
from odenet.errors import ConfigError
from odenet.models import ModelConfig, build_model
from odenet.models.penalty import StabilityPenalty, _extent
from odenet.training import TrainSettings

F64 = pytest.mark.usefixtures("float64_by_default")  # no float32 rounding in the comparisons


class Scale(nn.Module):
    """``f(y) = a*y``: every eigenvalue of the Jacobian is ``a``."""

    def __init__(self, a: float):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))

    def forward(self, y):
        return self.a * y


def linear_model(scheme: str, values: list[float], **fields) -> torch.nn.Module:
    config = ModelConfig(
        odenet.format_scheme(odenet.load(scheme)), (6,), 3, family="mlp", width=4, depth=len(values), **fields
    )
    model = build_model(config)
    block = model.stages[0]
    for name in block.functions:
        for n, a in enumerate(values):
            block.functions[name][n] = Scale(a)
    return model


@F64
def test_power_iteration_finds_the_real_extent_of_the_field_of_values():
    """low and high are the extreme eigenvalues of (J + J^T) / 2 (numpy's eigvalsh), for a
    non-symmetric J; every eigenvalue of J has its real part between them."""
    torch.manual_seed(0)
    matrix = torch.randn(5, 5)
    layer = nn.Linear(5, 5, bias=False)
    with torch.no_grad():
        layer.weight.copy_(matrix)
    low, high, rho = _extent(layer, torch.randn(2, 5), steps=200)
    symmetric = np.linalg.eigvalsh(((matrix + matrix.T) / 2).numpy())
    assert torch.allclose(low.detach(), torch.full((2,), symmetric[0]), atol=1e-8)
    assert torch.allclose(high.detach(), torch.full((2,), symmetric[-1]), atol=1e-8)
    real = np.linalg.eigvals(matrix.numpy()).real
    assert symmetric[0] <= real.min() and real.max() <= symmetric[-1]
    assert float(rho.detach().max()) <= np.linalg.norm(matrix.numpy(), 2) + 1e-12
    # the ends are differentiable in the weights: d high / dW = v v^T for the top eigenvector v
    high[0].backward()
    top = np.linalg.eigh(((matrix + matrix.T) / 2).numpy())[1][:, -1]
    assert np.allclose(layer.weight.grad.numpy(), np.outer(top, top), atol=1e-6)


@F64
def test_penalty_by_hand_on_linear_layers():
    """Euler (h = 0.1): the interval of h*lambda is [-2, 0] and its reach 2. Layers with f(y) = a*y
    put h*lambda at 0.5, -3, -1, 2.5: outside by 0.5, 1 (and |h*lambda| past the reach by 1), 0, 2.5
    (and 0.5)."""
    model = linear_model("euler", [5.0, -30.0, -10.0, 25.0])
    penalty = StabilityPenalty(model, samples=3, steps=2)
    assert (penalty.lower, penalty.upper, penalty.reach) == (-2.0, 0.0, 2.0)
    value = penalty(torch.randn(5, 6))
    expected = (0.5**2 + (1.0 + 1.0) + 0.0 + (2.5**2 + 0.5**2)) / 4
    assert float(value.detach()) == pytest.approx(expected, rel=1e-12)
    value.backward()
    # d/da of (0.1 a)**2 at a = 5 is 2 * 0.01 * 5; at a = -10 nothing (inside)
    block = model.stages[0]
    assert float(block.functions["f"][0].a.grad) == pytest.approx(2 * 0.01 * 5 / 4, rel=1e-12)
    assert float(block.functions["f"][2].a.grad) == 0.0
    # at a = -30: (h a + 2)**2 + (h |a| - 2)**2, derivative 2h(h a + 2) - 2h(h|a| - 2)... over 4 terms
    grad = (2 * 0.1 * (0.1 * -30 + 2) - 2 * 0.1 * (0.1 * 30 - 2)) / 4
    assert float(block.functions["f"][1].a.grad) == pytest.approx(grad, rel=1e-12)


@F64
def test_penalty_uses_the_layers_own_step_and_the_schemes_variable():
    """leapfrog's variable is h**2*lambda, its interval [0, 4] (the library writes it with - h**2*f)."""
    model = linear_model("leapfrog", [100.0, 500.0], params={"h": 0.1})
    penalty = StabilityPenalty(model, samples=2, steps=1)
    assert str(penalty.variable) == "h**2*lambda"
    lower, upper = penalty.lower, penalty.upper
    assert (lower, upper, penalty.reach) == (0.0, 4.0, 4.0)
    # h**2*lambda = 1 (inside) and 5 (outside by 1, past the reach by 1)
    assert float(penalty(torch.randn(2, 6)).detach()) == pytest.approx((0 + 1 + 1) / 2, rel=1e-12)


@F64
def test_penalty_moves_no_running_statistic_and_no_global_random_stream():
    config = ModelConfig(
        odenet.format_scheme(odenet.load("leapfrog")), (1, 8, 8), 10, layout="conv", family="bn", width=4,
        depth=3, stages=2,
    )  # fmt: skip
    model = build_model(config).train()
    x = torch.randn(8, 1, 8, 8)
    model(x)  # running statistics that are not the initial ones
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    value = StabilityPenalty(model)(x)
    assert torch.equal(torch.rand(3), expected)
    assert model.training and all(m.training for m in model.modules())
    for key, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[key]), key
    value.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@F64
def test_unstable_scheme_is_refused_and_settings_are_checked():
    text = "scheme blowup\nstate x\nparam h = 0.1\nx[n+1] = 2*x[n] + h*f(x[n])\n"
    config = ModelConfig(text, (6,), 3, family="mlp", width=4, depth=2)
    with pytest.raises(ConfigError, match="not stable even at lambda = 0"):
        StabilityPenalty(build_model(config))
    with pytest.raises(ConfigError, match="stability_penalty must be a finite number >= 0, not -1"):
        TrainSettings(stability_penalty=-1)


def test_cli_stability_penalty_trains_and_lowers_the_penalty(tmp_path, capsys):
    """Euler at a large step with and without the penalty: the penalized network ends with a smaller
    penalty (its layers' estimated h*lambda nearer the interval)."""
    from odenet.training import load_checkpoint, load_data

    data = load_data("digits", "mlp")
    finals = {}
    for weight in ("0", "10"):
        out = tmp_path / f"w{weight}"
        args = ["train", "euler", "--data", "digits", "--layout", "mlp", "--family", "mlp", "--depth", "4"]
        args += ["--epochs", "2", "--step", "1", "--lr", "0.01", "--stability-penalty", weight]
        args += ["--out", str(out), "--json"]
        assert main(args) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["test_accuracy"] > 0.5
        model, content = load_checkpoint(out / "checkpoint.pt")
        assert content["training"]["stability_penalty"] == float(weight)
        finals[weight] = float(StabilityPenalty(model, samples=64, steps=8)(data.x_test[:64]).detach())
    assert finals["10"] < finals["0"] / 2


@F64
def test_growth_penalty_by_hand_on_linear_layers():
    """Euler (h = 0.1) with f(y) = a*y: the step is (1 + 0.1 a) I, growth |1 + 0.1 a| from any start.
    a = 5, -30, -10, 25: growth 1.5, 2, 0, 3.5, penalties 0.25, 1, 0, 6.25."""
    from odenet.models.penalty import GrowthPenalty

    model = linear_model("euler", [5.0, -30.0, -10.0, 25.0])
    value = GrowthPenalty(model, samples=3, steps=2)(torch.randn(5, 6))
    assert float(value.detach()) == pytest.approx((0.25 + 1 + 0 + 6.25) / 4, rel=1e-12)
    value.backward()
    # d/da of (|1 + 0.1 a| - 1)**2 at a = 5: 2 * 0.5 * 0.1, over 4 layers
    assert float(model.stages[0].functions["f"][0].a.grad) == pytest.approx(2 * 0.5 * 0.1 / 4, rel=1e-12)


@F64
def test_growth_penalty_is_the_joint_spectral_radius_for_hamiltonian():
    """hamiltonian with f = 10 I, g = -10 I, h = 0.1: each function alone is inside the interval
    (the interval penalty is 0), the step grows by (3 + sqrt 5) / 2 (the joint linearization)."""
    from odenet.models.penalty import GrowthPenalty

    model = linear_model("hamiltonian", [10.0])
    model.stages[0].functions["g"][0].a.data.fill_(-10.0)
    assert float(StabilityPenalty(model, samples=2)(torch.randn(2, 6)).detach()) == 0.0
    growth = (3 + 5**0.5) / 2
    value = GrowthPenalty(model, samples=2, steps=60)(torch.randn(2, 6))
    assert float(value.detach()) == pytest.approx((growth - 1) ** 2, rel=1e-6)  # h in float32


def test_growth_target_on_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "heun", "--data", "digits", "--layout", "mlp", "--family", "mlp", "--depth", "2"]
    args += ["--epochs", "1", "--lr", "0.01", "--stability-penalty", "1", "--stability-target", "growth"]
    args += ["--out", str(out)]
    assert main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] > 0.3
    with pytest.raises(ConfigError, match="backward_euler is implicit"):
        from odenet.models.penalty import GrowthPenalty

        GrowthPenalty(build_model(ModelConfig(odenet.format_scheme(odenet.load("backward_euler")), (4,), 2)))


@pytest.mark.parametrize("scheme", odenet.library_names())
def test_every_library_scheme_gets_a_finite_penalty_the_same_in_every_memory_mode(scheme):
    """Both targets (growth: explicit schemes) on a BatchNorm conv network of each library scheme: a
    finite value with a finite gradient, no running statistic moved, and the same value for the same
    weights whatever the memory mode the network trains in (the penalty walks the layers itself)."""
    from odenet.models.penalty import GrowthPenalty
    from odenet.training.defaults import scheme_defaults

    text = odenet.format_scheme(odenet.load(scheme))
    base = dict(layout="conv", family="bn", width=4, depth=2, stages=1)
    memory = scheme_defaults(odenet.load(scheme)).memory_saving
    torch.manual_seed(0)
    reference = build_model(ModelConfig(text, (1, 6, 6), 3, **base))
    other = build_model(ModelConfig(text, (1, 6, 6), 3, memory=memory, **base))
    other.load_state_dict(reference.state_dict())
    x = torch.randn(4, 1, 6, 6)
    targets = [StabilityPenalty] + ([GrowthPenalty] if odenet.load(scheme).is_explicit else [])
    for target in targets:
        values = []
        for model in (reference, other):
            before = {k: v.clone() for k, v in model.state_dict().items()}
            value = target(model, samples=4, steps=2)(x)
            value.backward()
            assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
            assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
            values.append(float(value.detach()))
        assert np.isfinite(values[0]) and values[0] == values[1], (target.__name__, memory)


def test_train_writes_to_the_stderr_of_the_moment(monkeypatch):
    """train()'s progress goes to sys.stderr as it is when train runs (a stream bound at import went
    stale once a test runner replaced and closed it)."""
    import io

    from odenet.training import load_data, train

    data = load_data("rings")
    config = ModelConfig(odenet.format_scheme(odenet.load("euler")), (2,), 2, family="mlp", width=4, depth=1)
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    train(config, data, TrainSettings(epochs=1))
    assert "epoch 1/1" in stream.getvalue()
