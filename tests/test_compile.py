"""odenet.compile: outputs against independent oracles, gradients three ways (plain autograd,
the reversible pass, finite differences via gradcheck), call counts, drift control, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from helpers import REVERSIBLE
from torch import nn

import odenet
from odenet.ir import function_calls
from odenet.nn import ReconstructionError, compile

DATA = Path(__file__).parent / "data"


def mlp(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))


pytestmark = pytest.mark.usefixtures("float64_by_default")


def build(name, depth, memory, width=6, dtype=torch.float64, seed=0, **kwargs):
    scheme = odenet.load(name)
    inner = width // len(scheme.inputs)
    torch.manual_seed(seed)
    block = compile(
        scheme, {f.name: (lambda i: mlp(inner)) for f in scheme.functions}, depth, memory, **kwargs
    )
    return block.to(dtype)


def gradients(block, x):
    x = x.clone().requires_grad_(True)
    y = block(x)
    loss = (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).reshape(y.shape)).sum() + y.square().sum()
    return y.detach(), torch.autograd.grad(loss, [x, *block.parameters()])


def relative(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def against_autograd(name, depth, memory, batch=4):
    """(outputs equal?, largest relative gradient error) of a block in ``memory`` mode against the
    same weights under plain autograd, float64."""
    reference = build(name, depth, "autograd")
    block = build(name, depth, memory)
    block.load_state_dict(reference.state_dict())
    x = torch.randn(batch, 6, dtype=torch.float64)
    y_ref, g_ref = gradients(reference, x)
    y, g = gradients(block, x)
    return torch.equal(y, y_ref), max(relative(a, b) for a, b in zip(g, g_ref, strict=True))


@pytest.mark.parametrize("name", REVERSIBLE)
def test_reversible_gradients_equal_autograd_at_depth_64(name):
    same, error = against_autograd(name, 64, "reversible", batch=5)
    assert same and error <= 1e-10


@pytest.mark.parametrize("name", ["leapfrog", "momentum", "reversible_heun", "hamiltonian"])
def test_gradcheck_of_the_reversible_pass(name):
    block = build(name, 3, "reversible", width=2)
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(block, (x,))


class Counted(nn.Module):
    def __init__(self, width, counter):
        super().__init__()
        self.inner, self.counter = mlp(width), counter

    def forward(self, u):
        self.counter[0] += 1
        return self.inner(u)


@pytest.mark.parametrize(
    ("name", "per_layer"),
    # distinct evaluation points per layer: one for most; reversible Heun and Verlet evaluate f at
    # the old and at the new state
    [
        ("leapfrog", 1),
        ("momentum", 1),
        ("revnet", 2),
        ("hamiltonian", 2),
        ("lm_resnet", 1),
        ("midpoint", 1),
        ("reversible_heun", 2),
        ("verlet", 2),
    ],
)
def test_backward_evaluates_each_call_once_per_layer(name, per_layer):
    scheme = odenet.load(name)
    counter = [0]
    width = 6 // len(scheme.inputs)
    depth = 16
    block = compile(
        scheme, {f.name: (lambda i: Counted(width, counter)) for f in scheme.functions}, depth, "reversible"
    )
    block = block.double()
    y = block(torch.randn(3, 6, dtype=torch.float64))
    init_calls = sum(len(function_calls(eq.expr)) for eq in scheme.init)
    assert counter[0] == depth * per_layer + init_calls
    counter[0] = 0
    y.square().sum().backward()
    assert counter[0] == depth * per_layer


@pytest.mark.parametrize(("name", "param"), [("momentum", {"gamma": 0.5}), ("lm_resnet", {"k": 0.5})])
def test_drift_control_keeps_float32_gradients_within_1e_4(name, param):
    reference = build(name, 256, "autograd", params=param)
    x = torch.randn(8, 6, dtype=torch.float64)
    _, g_ref = gradients(reference, x)
    block = build(name, 256, "reversible", dtype=torch.float32, params=param)
    block.load_state_dict(reference.state_dict())
    _, g = gradients(block, x.float())
    worst = max(relative(a.double(), b) for a, b in zip(g, g_ref, strict=True))
    assert worst <= 1e-4
    errors = block.reconstruction_errors
    assert len(errors) > 10 and max(e for _, e in errors) < 1e-4  # measured, and small
    # without the exact copies, the same computation is wrong: the control is what makes it right
    unbounded = {"drift_tolerance": float("inf"), "guard": "raise"}
    loose = build(name, 256, "reversible", dtype=torch.float32, params=param, **unbounded)
    loose.load_state_dict(reference.state_dict())
    with pytest.raises(ReconstructionError, match="gave non-finite values"):
        gradients(loose, x.float())


def test_non_finite_reconstruction_names_the_layer():
    block = build(
        "momentum",
        64,
        "reversible",
        dtype=torch.float32,
        params={"gamma": 0.01},
        drift_tolerance=float("inf"),
        guard="raise",
    )
    y = block(torch.randn(4, 6, dtype=torch.float32))
    with pytest.raises(
        ReconstructionError, match=r"rebuilding the input of layer \d+ of momentum gave non-finite values"
    ):
        y.sum().backward()


def test_checkpoint_mode_equals_autograd():
    for name in ("rk4", "ab2", "leapfrog"):
        same, error = against_autograd(name, 20, "checkpoint")
        assert same and error <= 1e-12


def test_adjoint_is_exact_for_leapfrog_and_approximate_for_euler():
    for name, bound in (("leapfrog", 1e-9), ("euler", 0.2)):
        _, error = against_autograd(name, 16, "adjoint")
        assert error <= bound
        if name == "euler":
            assert error > 1e-6  # really approximate


class Smooth(nn.Module):
    """f(t, u) = tanh(W(t) u + b(t)) with weights smooth in the depth variable t = n/depth."""

    def __init__(self, t: float, base: list[torch.Tensor]):
        super().__init__()
        w0, w1, b0 = base
        self.linear = nn.Linear(w0.shape[0], w0.shape[0]).double()
        with torch.no_grad():
            self.linear.weight.copy_(w0 + math.sin(math.pi * t) * w1)
            self.linear.bias.copy_(b0 * math.cos(math.pi * t))

    def forward(self, u):
        return torch.tanh(self.linear(u))


def _adjoint_error(name: str, depth: int) -> float:
    torch.manual_seed(0)
    base = [
        torch.randn(4, 4, dtype=torch.float64),
        torch.randn(4, 4, dtype=torch.float64),
        torch.randn(4, dtype=torch.float64),
    ]
    blocks = [
        compile(
            odenet.load(name), {"f": lambda i: Smooth(i / depth, base)}, depth, mode, params={"h": 1 / depth}
        ).double()
        for mode in ("autograd", "adjoint")
    ]
    x = torch.randn(3, 4, dtype=torch.float64)
    (_, g_ref), (_, g) = gradients(blocks[0], x), gradients(blocks[1], x)
    return max(relative(a, b) for a, b in zip(g, g_ref, strict=True))


def test_adjoint_gradient_error_falls_faster_for_heun_than_euler():
    """Sander et al. 2022: with weights smooth in depth, the rebuild error per layer is O(h^(p+1)),
    so the gradient error falls about 2x per doubling of depth for Euler and about 4-8x for Heun."""
    euler = [_adjoint_error("euler", d) for d in (8, 16, 32)]
    heun = [_adjoint_error("heun", d) for d in (8, 16, 32)]
    euler_rate = euler[0] / euler[2]
    heun_rate = heun[0] / heun[2]
    assert heun[-1] < euler[-1]
    assert heun_rate > 2 * euler_rate, (euler, heun)


# -- oracles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme_name", "method"), [("euler", "euler"), ("midpoint_rk", "midpoint"), ("rk4_38", "rk4")]
)
def test_outputs_equal_torchdiffeq_fixed_grid(scheme_name, method):
    """torchdiffeq's fixed-grid methods with a weight-tied f. (Its "rk4" is Kutta's 3/8 rule.)"""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    path = DATA / f"{scheme_name}.scheme"
    scheme = odenet.load(path) if path.exists() else odenet.load(scheme_name)
    torch.manual_seed(0)
    f = mlp(5)
    depth, t_end = 12, 1.5
    block = compile(scheme, {"f": f}, depth, params={"h": t_end / depth})
    x = torch.randn(4, 5)
    t = torch.linspace(0, t_end, depth + 1)
    expected = torchdiffeq.odeint(lambda _t, u: f(u), x, t, method=method)[-1]
    assert (block(x) - expected).abs().max().item() <= 1e-10


def test_classic_rk4_equals_torchdiffeq_classic_step():
    rk_common = pytest.importorskip("torchdiffeq._impl.rk_common")
    torch.manual_seed(0)
    f = mlp(5)
    depth, h = 10, 0.15
    block = compile(odenet.load("rk4"), {"f": f}, depth, params={"h": h})
    x = torch.randn(4, 5)
    expected = x
    for n in range(depth):
        t0 = torch.tensor(n * h)
        expected = expected + rk_common.rk4_step_func(
            lambda _t, u, perturb=None: f(u), t0, torch.tensor(h), t0 + h, expected
        )
    assert (block(x) - expected).abs().max().item() <= 1e-10


def test_momentum_equals_momentumnet():
    momentumnet = pytest.importorskip("momentumnet")
    torch.manual_seed(0)
    depth, gamma = 10, 0.8
    functions = [mlp(6).double() for _ in range(depth)]
    block = compile(
        odenet.load("momentum"), {"f": lambda i: functions[i]}, depth, params={"gamma": gamma}
    ).double()
    reference = momentumnet.MomentumNet(functions, gamma=gamma, use_backprop=True)
    x = torch.randn(3, 6, dtype=torch.float64)
    assert (block(x) - reference(x)).abs().max().item() <= 1e-10


# -- the module's surface ------------------------------------------------------------------------


def test_learnable_parameters_stay_in_their_interval_and_learn():
    block = build("momentum", 8, "autograd", params={"gamma": 0.7})
    assert block.raw_params["gamma"].shape == (8,)
    assert block.layer_params(3)["gamma"].item() == pytest.approx(0.7)
    optimizer = torch.optim.SGD(block.parameters(), lr=0.05)
    for _ in range(3):
        optimizer.zero_grad()
        block(torch.randn(4, 6, dtype=torch.float64)).square().sum().backward()
        optimizer.step()
    gammas = torch.stack([block.layer_params(n)["gamma"] for n in range(8)])
    assert torch.all((gammas > 0) & (gammas < 1))
    assert not torch.allclose(gammas, torch.full_like(gammas, 0.7))


@pytest.mark.parametrize(
    ("interval", "value"),
    [((0, 1), 0.9), ((-1, 1), -0.5), ((0, float("inf")), 3.0), ((float("-inf"), 2), -7.0), (None, 0.3)],
)
def test_interval_map_round_trip(interval, value):
    from odenet.nn.params import constrain, unconstrain

    raw = torch.tensor(unconstrain(value, interval))
    assert constrain(raw, interval).item() == pytest.approx(value, rel=1e-12)
    if interval is not None:  # any raw value maps inside
        mapped = constrain(torch.linspace(-30, 30, 61), interval)
        assert torch.all((mapped > interval[0]) & (mapped < interval[1]))


def test_fixed_parameters_are_buffers_and_can_be_overridden():
    block = build("leapfrog", 4, "autograd", params={"h": 0.05})
    assert "fixed_h" in dict(block.named_buffers())
    assert block.layer_params(0)["h"].item() == pytest.approx(0.05)
    assert "h" not in block.raw_params and not any(
        name.startswith("fixed_") for name, _ in block.named_parameters()
    )


def test_shared_function_is_weight_tied():
    f = mlp(6)
    block = compile(odenet.load("euler"), {"f": f}, 10)
    assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in f.parameters())


def test_images_with_convolutions_and_split_channels():
    scheme = odenet.load("hamiltonian")
    conv = lambda i: nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh())  # noqa: E731
    block = compile(scheme, {"f": conv, "g": conv}, 6, "reversible")
    reference = compile(scheme, {"f": conv, "g": conv}, 6, "autograd")
    reference.load_state_dict(block.state_dict())
    x = torch.randn(2, 4, 5, 5)
    assert block(x).shape == (2, 4, 5, 5)
    assert torch.allclose(block(x), reference(x))
    assert torch.allclose(block.inverse(block(x)), x, atol=1e-5)


def test_inverse_needs_the_whole_state():
    block = build("revnet", 8, "autograd")
    x = torch.randn(3, 6, dtype=torch.float64)
    assert torch.allclose(block.inverse(block(x)), x, atol=1e-12)
    with pytest.raises(
        odenet.UnsupportedSchemeError, match="inverse\\(y\\) needs the output to be the whole state"
    ):
        build("leapfrog", 4, "autograd").inverse(x)


def test_state_dict_round_trip(tmp_path):
    block = build("momentum", 5, "reversible")
    torch.save(block.state_dict(), tmp_path / "block.pt")
    other = build("momentum", 5, "reversible", seed=1)
    other.load_state_dict(torch.load(tmp_path / "block.pt"))
    x = torch.randn(2, 6, dtype=torch.float64)
    assert torch.equal(block(x), other(x))


def test_clear_errors():
    scheme = odenet.load("hamiltonian")
    with pytest.raises(
        odenet.ConfigError, match="scheme hamiltonian needs functions f, g: missing g; unexpected q"
    ):
        compile(scheme, {"f": mlp(3), "q": mlp(3)}, 4)
    with pytest.raises(odenet.UnsupportedSchemeError) as info:  # AB2 drops information: no inverse at all
        compile(odenet.load("ab2"), {"f": mlp(3)}, 4, "reversible")
    assert "memory='checkpoint'" in str(info.value) and "memory='adjoint'" in str(info.value)
    assert "M(0) is singular" in str(info.value)
    with pytest.raises(NotImplementedError, match="scheme backward_euler is implicit"):
        compile(odenet.load("backward_euler"), {"f": mlp(3)}, 4, "checkpoint")
    with pytest.raises(odenet.ConfigError, match="depth must be a whole number >= 1, not 0"):
        compile(odenet.load("euler"), {"f": mlp(3)}, 0)
    with pytest.raises(odenet.ConfigError, match="memory must be one of"):
        compile(odenet.load("euler"), {"f": mlp(3)}, 2, "fast")
    with pytest.raises(odenet.ConfigError, match="splits its input into 2 states"):
        compile(scheme, {"f": mlp(3), "g": mlp(3)}, 2)(torch.randn(2, 5))
    with pytest.raises(odenet.UnsupportedSchemeError, match="has no step parameter h"):
        compile(odenet.load("momentum"), {"f": mlp(3)}, 2, "adjoint")


def test_linear_combination_equals_the_sum_it_stands_for():
    """The generated code's sums: in place where the terms agree in shape and dtype, as written
    otherwise; autograd's gradients through it are those of the plain expression."""
    from odenet.nn.generated import linear_combination

    torch.manual_seed(0)
    a, b, c = (torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    h = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    for terms, plain in [
        ((a, -1, b, 2, c, -(h**2)), lambda: -a + 2 * b - h**2 * c),
        ((a, 1, b, h, c, 0.5), lambda: a + h * b + 0.5 * c),
        ((a, h, b[:1], 2), lambda: h * a + 2 * b[:1]),  # broadcasting: as written
        ((a, 1, c.float(), 1), lambda: a + c.float()),  # mixed dtypes: as written
        ((torch.arange(4), 0.5, torch.arange(4), 2.0), lambda: torch.arange(4) * 0.5 + torch.arange(4) * 2.0),
    ]:
        before = [t.detach().clone() for t in (a, b, c)]
        out, expected = linear_combination(*terms), plain()
        assert out.dtype == expected.dtype and out.shape == expected.shape
        assert torch.allclose(out, expected, rtol=1e-6 if out.dtype == torch.float32 else 1e-14, atol=0)
        assert all(torch.equal(t, old) for t, old in zip((a, b, c), before, strict=True))  # no term written
        if not expected.requires_grad:  # the integer case
            continue
        grads = torch.autograd.grad(out.sum(), [a, b, c, h], allow_unused=True)
        reference = torch.autograd.grad(expected.sum(), [a, b, c, h], allow_unused=True)
        for g, r in zip(grads, reference, strict=True):
            assert (g is None and r is None) or torch.allclose(
                g, r, rtol=1e-6 if g.dtype == torch.float32 else 1e-14
            )


def _reversible_matches_autograd(text: str, width: int = 4, depth: int = 3) -> None:
    scheme = odenet.parse(text)
    grads = {}
    for memory in ("autograd", "reversible"):
        torch.manual_seed(0)
        block = compile(
            scheme,
            {f.name: (lambda i: mlp(width // len(scheme.inputs))) for f in scheme.functions},
            depth,
            memory,
        )
        x = torch.randn(2, width, generator=torch.Generator().manual_seed(1), requires_grad=True)
        block(x).square().sum().backward()
        grads[memory] = [x.grad, *(p.grad for p in block.parameters())]
    for a, r in zip(grads["autograd"], grads["reversible"], strict=True):
        assert torch.allclose(a, r, rtol=1e-12, atol=1e-14)


# Found by review: both raised in the generated vector-Jacobian product (and the names in every
# mode), where the graph-walking backward pass had given autograd's gradients.
SPELLINGS = {
    "one call spelled twice": "scheme s\nstate x, v\ninput x, v\noutput x, v\ns = 2*x[n]\nk = f(s)\n"
    "v[n+1] = v[n] + k + 3*f(2*x[n])\nx[n+1] = x[n] + f(v[n+1])\n",
    **{
        f"{kind} named {name}": "scheme s\nstate x, v\nparam h = 0.5 learnable\n"
        + (
            f"param {name} = 0.5\nv[n+1] = v[n] + h*{name}*f(x[n])\n"
            if kind == "param"
            else f"{name} = f(x[n])\nv[n+1] = v[n] + h*{name}*v[n]\n"
        )
        + "x[n+1] = x[n] + f(v[n+1])\n"
        for kind in ("param", "stage")
        for name in ("pull", "grads", "linear_combination", "call", "g_x_n", "grad_v_np1")
    },
}


@pytest.mark.parametrize("text", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_generated_names_and_shared_calls_give_autograds_gradients(text):
    _reversible_matches_autograd(text)


def test_linear_combination_under_vmap_is_the_plain_sum():
    from odenet.nn.generated import linear_combination

    c, x = torch.randn(4), torch.randn(5, 4)
    got = torch.func.vmap(lambda row: linear_combination(c, 0.5, row, 2.0, row * row, 3.0))(x)
    assert torch.allclose(got, 0.5 * c + 2.0 * x + 3.0 * x * x, rtol=1e-14)


def test_generated_code_is_readable_and_shows_in_tracebacks():
    block = build("leapfrog", 2, "reversible")
    assert "y_np1 = linear_combination(y_nm1, -1, y_n, 2, c0, -h**2)" in block.forward_code.source
    assert "def inverse_step(state, p, call):" in block.inverse_code.source

    def broken(i):
        return nn.Linear(7, 7)  # wrong width: the error is raised inside the generated step

    bad = compile(odenet.load("leapfrog"), {"f": broken}, 2)
    with pytest.raises(RuntimeError) as info:
        bad(torch.randn(2, 6))
    assert 'c0 = call(0, "f", y_n)' in "".join(__import__("traceback").format_tb(info.tb))


# -- the reconstruction guard ---------------------------------------------------------------------


def _expanding(scale):
    def make(i):
        torch.manual_seed(100 + i)
        module = mlp(8)
        with torch.no_grad():
            module[0].weight.mul_(scale)
            module[2].weight.mul_(scale)
        return module

    return make


def _flat_relative(got, expected):
    a, b = (torch.cat([t.reshape(-1).double() for t in g]) for g in (got, expected))
    return ((a - b).norm() / b.norm()).item()


def test_guard_repairs_an_ill_conditioned_rebuild_and_learns():
    """Leapfrog with h = 0.5 and a strongly expanding f: the backward dynamics amplify rounding, and
    in float32 a rebuilt input is off by more than the tolerance (finite: no non-finite check would
    catch it; with guard="raise" it is 2.4e-2 at layer 0, see the next test). The adaptive guard
    measures it, recomputes that group exactly and plans a copy there for the next step."""
    scheme = odenet.load("leapfrog")
    kwargs = {"params": {"h": 0.5}}
    reference = compile(scheme, {"f": _expanding(3.0)}, 64, **kwargs).double()
    exact32 = compile(scheme, {"f": _expanding(3.0)}, 64, **kwargs).float()
    block = compile(scheme, {"f": _expanding(3.0)}, 64, "reversible", **kwargs).float()
    x = torch.randn(4, 8, dtype=torch.float32)
    _, g_ref32 = gradients(exact32, x)
    _, g_ref64 = gradients(reference, x.double())
    _, g = gradients(block, x)
    tolerance = 100 * torch.finfo(torch.float32).eps
    assert max(e for _, e in block.reconstruction_errors) > tolerance  # measured at a copy
    assert block.repairs == 1
    assert _flat_relative(g, g_ref32) < 1e-4  # within the tolerance of plain float32 autograd
    assert _flat_relative(g, g_ref64) < 1e-3
    copies = len(block.reconstruction_errors)
    _, g = gradients(block, x)  # the next step keeps more copies and needs no repair
    assert block.repairs == 1 and len(block.reconstruction_errors) > copies
    assert max(e for _, e in block.reconstruction_errors) <= tolerance
    assert _flat_relative(g, g_ref32) < 1e-4


def test_guard_raise_names_the_layer_from_the_measured_growth():
    block = compile(
        odenet.load("leapfrog"), {"f": _expanding(3.0)}, 64, "reversible", params={"h": 0.5}, guard="raise"
    )
    with pytest.raises(ReconstructionError) as info:
        gradients(block.float(), torch.randn(4, 8, dtype=torch.float32))
    message = str(info.value)
    assert message.startswith("rebuilding the input of layer 0 of leapfrog: relative error ")
    layer = int(message.split("passes the tolerance from layer ")[1].split(" ")[0])
    assert 20 < layer < 63  # rounding grows geometrically from the output, the error is worst at 0
    assert "guard='adaptive' recomputes such layers exactly" in message


@pytest.mark.parametrize(
    ("name", "params"),
    [
        pytest.param("momentum", {"gamma": 0.5}, marks=pytest.mark.slow),
        pytest.param("momentum", {"gamma": 0.9}, marks=pytest.mark.slow),
        # a(0) = 1.01 underestimates the growth: the guard learns it
        pytest.param("momentum", {"gamma": 0.99}, marks=pytest.mark.slow),
        pytest.param("lm_resnet", {}, marks=pytest.mark.slow),
    ],
)
def test_float32_reversible_gradients_at_depth_1024(name, params):
    """Within 1e-4 of float64 autograd, or the block raises. The functions are scaled so that float32
    autograd itself is within 1e-5: the bound then measures what the rebuilds add."""
    scheme = odenet.load(name)
    factory = _expanding(1.0)

    def make(i):
        module = factory(i)
        with torch.no_grad():
            module[2].weight.mul_(0.3)
            module[2].bias.mul_(0.3)
        return module

    reference = compile(scheme, {"f": make}, 1024, params=params).double()
    x = torch.randn(5, 8, dtype=torch.float32)
    _, g_ref = gradients(reference, x.double())
    plain = compile(scheme, {"f": make}, 1024, params=params).float()
    assert _flat_relative(gradients(plain, x)[1], g_ref) < 1e-5
    for guard in ("adaptive", "raise"):
        block = compile(scheme, {"f": make}, 1024, "reversible", params=params, guard=guard).float()
        for step in range(2):  # the second step runs on what the first one measured
            try:
                _, g = gradients(block, x)
            except ReconstructionError:
                assert guard == "raise" and step == 0  # refused once, then planned from the measurement
                continue
            assert _flat_relative(g, g_ref) <= 1e-4
        if guard == "adaptive":  # release groups of 23 layers: copies close enough, no repair needed
            assert block.repairs == 0


def test_raise_guard_checks_when_the_lowest_layers_take_no_part():
    """Frozen lower layers and an input without grad: the lowest segments are not in autograd's
    graph and their backward never runs. The rebuild still ends at an exact copy, and the raise
    guard still reads and refuses (it read nothing, and the upper layers' gradients were wrong)."""
    block = compile(
        odenet.load("leapfrog"), {"f": _expanding(3.0)}, 64, "reversible", params={"h": 0.5}, guard="raise"
    )
    block = block.float()
    for n in range(16):
        block.functions["f"][n].requires_grad_(False)
    y = block(torch.randn(4, 8, dtype=torch.float32))  # an input without grad
    with pytest.raises(
        ReconstructionError, match="rebuilding the input of layer 16 of leapfrog: relative error"
    ):
        y.square().sum().backward()


def test_raise_guard_checks_when_only_upper_layers_are_asked_for():
    """torch.autograd.grad of the top layers' parameters only: the backward pass stops above the
    copies; the last rebuilt input is checked against its exact recomputation at the end."""
    leapfrog = odenet.load("leapfrog")
    block = compile(
        leapfrog, {"f": _expanding(3.0)}, 64, "reversible", params={"h": 0.5}, guard="raise"
    ).float()
    y = block(torch.randn(4, 8, dtype=torch.float32, requires_grad=True))
    upper = list(block.functions["f"][20:].parameters())  # the rebuild stops at layer 16, no copy there
    with pytest.raises(ReconstructionError, match="rebuilding the input of layer 16 of leapfrog"):
        torch.autograd.grad(y.square().sum(), upper)
    # close to the output the rebuild is within the tolerance (measured at 48): gradients as accurate
    # as float32 autograd's (this network is chaotic: both are about 1e-4 away from float64)
    exact = compile(leapfrog, {"f": _expanding(3.0)}, 64, params={"h": 0.5})
    exact.load_state_dict(block.state_dict())
    x = torch.randn(4, 8, dtype=torch.float32)
    expected = torch.autograd.grad(
        exact.double()(x.double()).square().sum(), list(exact.functions["f"][56:].parameters())
    )
    errors = []
    for net in (block, exact.float()):
        got = torch.autograd.grad(net(x).square().sum(), list(net.functions["f"][56:].parameters()))
        errors.append(_flat_relative(got, expected))
    assert block.reconstruction_errors[0][0] == 48
    assert errors[0] <= 1.5 * errors[1], errors


def test_kick_drift_kick_with_a_nonlinear_drift_trains_reversibly():
    """The inverse found by solving the stage as an unknown (tests/test_inverse.py) compiles: the
    reversible gradients equal autograd's."""
    from test_inverse import KDK

    scheme = odenet.parse(KDK)
    blocks = []
    for memory in ("autograd", "reversible"):
        torch.manual_seed(0)
        blocks.append(compile(scheme, {"f": lambda i: mlp(3), "g": lambda i: mlp(3)}, 12, memory).double())
    x = torch.randn(4, 3, dtype=torch.float64)
    (y_ref, g_ref), (y, g) = gradients(blocks[0], x), gradients(blocks[1], x)
    assert torch.equal(y, y_ref)
    assert max(relative(a, b) for a, b in zip(g, g_ref, strict=True)) <= 1e-10


class _OfNumber(nn.Module):
    """A function that accepts a plain number (``g(2)``): ``w * a``."""

    def __init__(self, width: int):
        super().__init__()
        self.w = nn.Parameter(torch.linspace(0.1, 0.4, width))

    def forward(self, a):
        return self.w * a


def test_a_call_of_a_number_in_reversible_mode():
    """``g(2)``: the inverse's evaluation made its arguments leaves with ``.detach()``, which a
    number has not (AttributeError); its parameters get autograd's gradient."""
    scheme = odenet.parse(
        "scheme s\nstate x, v\ninput x, v\noutput x, v\nfunction f, g\n"
        "v[n+1] = v[n] + f(x[n]) + g(2)\nx[n+1] = x[n] + f(v[n+1])\n"
    )
    grads = {}
    for memory in ("autograd", "reversible"):
        torch.manual_seed(0)
        block = compile(scheme, {"f": lambda i: mlp(2), "g": lambda i: _OfNumber(2)}, 3, memory)
        x = torch.randn(2, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
        block(x).square().sum().backward()
        grads[memory] = [x.grad, *(p.grad for p in block.parameters())]
    for a, r in zip(grads["autograd"], grads["reversible"], strict=True):
        assert torch.allclose(a, r, rtol=1e-12, atol=1e-14)


def test_a_block_pickled_before_modes_were_objects_loads():
    """Its options were attributes (memory, memory_budget, drift); they become its mode object."""
    torch.manual_seed(0)
    block = odenet.compile(
        "leapfrog", {"f": nn.Linear(4, 4)}, 3, "reversible", guard="raise", memory_budget=0.5
    )
    state = block.__getstate__()
    old = {k: v for k, v in state.items() if k not in ("mode", "last_pass", "intervals", "start_values")}
    old.update(
        memory="reversible",
        memory_budget=0.5,
        solver=odenet.Solver(),
        kept_bytes=7,
        repairs=2,
        _intervals=state["intervals"],
        _foreign_checked=True,
        graph_layers=0,
        _probe=None,
    )

    class Drift:  # what the old DriftControl pickled
        tolerance, guard = None, "raise"

    old["drift"] = Drift()
    loaded = odenet.SchemeBlock.__new__(odenet.SchemeBlock)
    loaded.__setstate__(old)
    assert loaded.mode == odenet.nn.Reversible(guard="raise", budget=0.5)
    assert loaded.kept_bytes == 7 and loaded.repairs == 2
    x = torch.randn(2, 4)
    assert torch.equal(loaded(x), block(x))


@pytest.mark.parametrize("memory", ["autograd", "reversible"])
@pytest.mark.parametrize("name", ["backward_euler", "leapfrog", "verlet"])
def test_fixed_constants_are_exact_in_the_dtype_the_block_runs(name, memory):
    """A block built in float32 and moved with .double() computes with the float64 value of its fixed
    constants (h = 0.1, not 0.1 rounded to float32 = 0.10000000149), exactly as a block built in
    float64: a backward Euler layer solved to 1e-13 was 1e-9 off. Learnable parameters convert as
    torch converts them; a constant the user changed keeps its value."""
    scheme = odenet.load(name)
    if memory == "reversible" and not scheme.is_explicit:
        pytest.skip("an implicit scheme runs in autograd mode only")
    fixed = [p.name for p in scheme.params if not p.learnable]
    torch.manual_seed(0)
    moved = compile(scheme, {"f": lambda n: nn.Linear(4, 4)}, 3, memory).double()
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        built = compile(scheme, {"f": lambda n: nn.Linear(4, 4)}, 3, memory)
    finally:
        torch.set_default_dtype(default)
    weights = {k: v for k, v in moved.state_dict().items() if not k.startswith("fixed_")}
    built.load_state_dict(weights, strict=False)  # the same weights; the constants as each has them
    for p in fixed:
        exact = float(next(q.default for q in scheme.params if q.name == p))
        assert moved.parameter_tensor(p).dtype == torch.float64
        assert moved.parameter_tensor(p).item() == exact
    x = torch.randn(5, 4, dtype=torch.float64)
    assert torch.allclose(moved(x), built(x), rtol=0, atol=1e-14)
    # back to float32 and again to float64: still exact; a value set by hand is kept
    assert moved.float().double().parameter_tensor(fixed[0]).item() == float(
        next(q.default for q in scheme.params if q.name == fixed[0])
    )
    with torch.no_grad():
        moved.parameter_tensor(fixed[0]).fill_(0.25)
    assert moved.float().double().parameter_tensor(fixed[0]).item() == 0.25
