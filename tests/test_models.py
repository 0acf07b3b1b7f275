"""odenet.models: the residual families against hand-written formulas, classifiers of every shape,
memory modes against plain autograd (BatchNorm included), the smoothness regularizer by hand."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812

import odenet
from odenet.errors import ConfigError
from odenet.models import ModelConfig, build_model, make_function
from odenet.models.families import Antisymmetric, KernelTranspose

pytestmark = pytest.mark.usefixtures("float64_by_default")


def config(scheme="leapfrog", **fields) -> ModelConfig:
    layout = fields.pop("layout", "mlp")
    shape = {"conv": (1, 8, 8), "conv1d": (1, 12), "mlp": (12,)}[layout]
    base = dict(outputs=3, layout=layout, family="mlp", width=4, depth=3)
    base.update(fields)
    return ModelConfig(odenet.format_scheme(odenet.load(scheme)), shape, **base)


def test_chang_family_is_k_transpose_s_k_with_a_symmetric_semidefinite_jacobian():
    torch.manual_seed(0)
    f = make_function("chang", 5, 7, "mlp", "tanh")
    y = torch.randn(3, 5)
    k, b = f.kernel, f.bias
    assert torch.allclose(f(y), torch.tanh(y @ k.T + b) @ k, atol=1e-14)
    jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0], y[0])
    hand = k.T @ torch.diag(1 - torch.tanh(k @ y[0] + b) ** 2) @ k
    assert torch.allclose(jac, hand, atol=1e-13)
    assert np.linalg.eigvalsh(jac.numpy()).min() > -1e-12


@pytest.mark.parametrize(
    ("layout", "space", "conv", "transpose"),
    [("conv", (6, 6), F.conv2d, F.conv_transpose2d), ("conv1d", (9,), F.conv1d, F.conv_transpose1d)],
)
def test_conv_kernel_transpose_uses_the_adjoint_convolution(layout, space, conv, transpose):
    torch.manual_seed(1)
    f = KernelTranspose(3, 4, layout, "relu")
    y, z = torch.randn(2, 3, *space), torch.randn(2, 4, *space)
    # <K y, z> = <y, K^T z>: the transposed convolution with the same kernel is the adjoint of K
    lhs = (conv(y, f.kernel, padding=1) * z).sum()
    rhs = (y * transpose(z, f.kernel, padding=1)).sum()
    assert torch.allclose(lhs, rhs, atol=1e-12)
    dim = y[0].numel()
    jac = torch.autograd.functional.jacobian(lambda v: f(v[None])[0], y[0]).reshape(dim, dim)
    assert torch.allclose(jac, jac.T, atol=1e-12)  # K^T diag(s') K is symmetric
    assert np.linalg.eigvalsh(jac.numpy()).min() > -1e-12  # and positive semidefinite


@pytest.mark.parametrize("layout", ["mlp", "conv", "conv1d"])
def test_antisymmetric_linear_part_has_eigenvalues_on_minus_eps(layout):
    torch.manual_seed(2)
    f = Antisymmetric(3, layout, "tanh", eps=0.05)
    shape = {"conv": (3, 4, 4), "conv1d": (3, 7), "mlp": (3,)}[layout]
    y = torch.randn(*shape)
    dim = y.numel()
    matrix = torch.autograd.functional.jacobian(lambda v: f.linear(v[None])[0], y).reshape(dim, dim)
    eigenvalues = np.linalg.eigvals(matrix.numpy())
    assert np.allclose(eigenvalues.real, -0.05, atol=1e-10)
    assert np.abs(eigenvalues.imag).max() > 0.1  # a genuinely skew part, not just -eps I
    if layout == "mlp":
        w = f.weight
        assert torch.allclose(
            f(y[None]), torch.tanh(y[None] @ (w - w.T).T - 0.05 * y[None] + f.bias), atol=1e-14
        )


def test_bn_family_is_conv_bn_relu_conv():
    torch.manual_seed(3)
    f = make_function("bn", 2, 3, "conv").eval()
    with torch.no_grad():
        f.norm.running_mean.uniform_(-1, 1)
        f.norm.running_var.uniform_(0.5, 2)
    y = torch.randn(2, 2, 5, 5)
    n = f.norm
    inner = F.conv2d(y, f.first.weight, padding=1)
    normed = (inner - n.running_mean[:, None, None]) / torch.sqrt(n.running_var[:, None, None] + n.eps)
    normed = normed * n.weight[:, None, None] + n.bias[:, None, None]
    hand = F.conv2d(torch.relu(normed), f.second.weight, f.second.bias, padding=1)
    assert torch.allclose(f(y), hand, atol=1e-12)


@pytest.mark.parametrize(
    ("scheme", "layout", "stages", "family"),
    [
        ("leapfrog", "mlp", 1, "chang"),
        ("hamiltonian", "mlp", 2, "antisymmetric"),
        ("momentum", "conv", 2, "bn"),
        ("hamiltonian", "conv", 2, "chang"),
        ("rk4", "mlp", 1, "mlp"),
        ("leapfrog", "conv1d", 2, "chang"),
        ("momentum", "conv1d", 2, "bn"),
    ],
)
def test_classifier_shapes(scheme, layout, stages, family):
    model = build_model(config(scheme, layout=layout, stages=stages, family=family))
    x = torch.randn(5, *model.config.input_shape)
    assert model(x).shape == (5, 3)
    assert len(model.stages) == stages
    assert all(block.depth == 3 for block in model.stages)
    if layout != "mlp" and stages == 2:  # downsampling and channel growth between the stages
        width = model.config.width * len(model.scheme.inputs)
        space = (4, 4) if layout == "conv" else (6,)
        assert model.features(x).shape[1:] == (
            2 * width // len(model.scheme.inputs) * len(model.scheme.outputs),
            *space,
        )


@pytest.mark.parametrize("layout", ["conv", "conv1d"])
@pytest.mark.parametrize("memory", ["checkpoint", "reversible"])
@pytest.mark.parametrize(
    ("scheme", "family"), [("leapfrog", "bn"), ("hamiltonian", "chang"), ("momentum", "bn")]
)
def test_memory_modes_match_autograd_with_batchnorm(memory, scheme, family, layout):
    """Gradients in training mode (BatchNorm with batch statistics) and the running statistics after
    one step equal plain autograd's: the re-run must not update them a second time."""
    torch.manual_seed(4)
    reference = build_model(config(scheme, layout=layout, stages=2, family=family, depth=4))
    model = build_model(config(scheme, layout=layout, stages=2, family=family, depth=4, memory=memory))
    model.load_state_dict(reference.state_dict())
    x, y = torch.randn(6, *model.config.input_shape), torch.randint(0, 3, (6,))
    grads = []
    for m in (reference, model):
        m.train()
        F.cross_entropy(m(x), y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[1], grads[0], rtol=1e-9, atol=1e-12)
    for (name, a), (_, b) in zip(reference.named_buffers(), model.named_buffers(), strict=True):
        assert torch.equal(a, b), name
    count = [b for name, b in model.named_buffers() if name.endswith("num_batches_tracked")]
    assert count and all(int(c) == 1 for c in count)


def test_smoothness_regularizer_by_hand():
    model = build_model(config("euler", depth=3, params={"h": 0.5}))
    layers = model.stages[0].functions["f"]
    expected = 0.0
    for a, b in itertools.pairwise(layers):
        for p, q in zip(a.parameters(), b.parameters(), strict=True):
            expected += float(((q - p) ** 2).sum().detach()) / 0.5
    assert float(model.smoothness().detach()) == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():  # equal weights in every layer: no penalty
        for layer in layers[1:]:
            for p, q in zip(layers[0].parameters(), layer.parameters(), strict=True):
                q.copy_(p)
    assert float(model.smoothness().detach()) == 0.0
    assert float(build_model(config("euler", shared=True)).smoothness()) == 0.0


@pytest.mark.parametrize(
    ("scheme", "layout"), [("euler", "conv"), ("hamiltonian", "mlp"), ("heun", "conv1d")]
)
def test_smooth_init_starts_as_the_shared_network_and_trains_each_layer_freely(scheme, layout):
    """Per-layer functions that start as copies of one set (weights constant in depth): at the same
    seed the network computes exactly what the shared network computes, the gradient of each shared
    weight is the sum of the copies' gradients, and one optimizer step makes the layers differ."""
    torch.manual_seed(3)
    shared = build_model(config(scheme, layout=layout, depth=4, shared=True))
    torch.manual_seed(3)
    smooth = build_model(config(scheme, layout=layout, depth=4, smooth_init=True))
    shape = {"conv": (5, 1, 8, 8), "conv1d": (5, 1, 12), "mlp": (5, 12)}[layout]
    x = torch.randn(shape)
    assert torch.equal(shared(x), smooth(x))
    shared(x).square().sum().backward()
    smooth(x).square().sum().backward()
    stage_shared, stage_smooth = shared.stages[0], smooth.stages[0]
    for name, layers in stage_smooth.functions.items():
        assert len(layers) == 4 and len({id(p) for m in layers for p in m.parameters()}) == 4 * len(
            list(layers[0].parameters())
        )
        for i, p in enumerate(stage_shared.functions[name].parameters()):
            total = sum(list(layer.parameters())[i].grad for layer in layers)
            assert torch.allclose(p.grad, total, rtol=1e-10, atol=1e-12)
    assert float(smooth.smoothness().detach()) == 0.0
    torch.optim.SGD(smooth.parameters(), lr=0.1).step()
    assert float(smooth.smoothness().detach()) > 0.0  # each layer took its own gradient


def test_smooth_init_with_shared_functions_is_refused():
    with pytest.raises(ConfigError, match="smooth_init gives per-layer functions equal starting weights"):
        config("euler", shared=True, smooth_init=True)


def test_config_round_trip_rebuilds_the_same_function():
    c = config("lm_resnet", family="antisymmetric", params={"h": 0.2})
    model = build_model(c)
    again = build_model(ModelConfig.from_json(copy.deepcopy(c.to_json())))
    again.load_state_dict(model.state_dict())
    x = torch.randn(4, 12)
    assert torch.equal(model(x), again(x))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"family": "wavelet"}, "family must be one of mlp, bn, chang, antisymmetric, not 'wavelet'"),
        ({"depth": 0}, "depth must be a whole number >= 1, not 0"),
        (
            {"memory": "cheap"},
            "memory must be one of autograd, checkpoint, reversible, adjoint, fixed_point, not 'cheap'",
        ),
        (
            {"stem": False},
            "without a stem the input (12 features) is the state, so it must have 1 x width = 4",
        ),
    ],
)
def test_config_errors(fields, message):
    with pytest.raises(ConfigError) as info:
        build_model(config(**fields))
    assert message in str(info.value)


def test_reversible_needs_an_inverse():
    with pytest.raises(odenet.UnsupportedSchemeError, match="memory='reversible' needs an inverse"):
        build_model(config("ab2", memory="reversible"))


def test_config_is_hashable_and_its_params_cannot_change():
    a = config("momentum", params={"gamma": 0.5})
    b = config("momentum", params={"gamma": 0.5})
    assert hash(a) == hash(b) and {a, b} == {a}
    assert a.params == (("gamma", 0.5),) and dict(a.params) == {"gamma": 0.5}
    with pytest.raises(TypeError):
        a.params[0] = ("gamma", 0.9)  # type: ignore[index]
    assert ModelConfig.from_json(a.to_json()) == a and a.to_json()["params"] == {"gamma": 0.5}
