"""Implicit layers: each layer solves its step, and its gradient comes from the implicit function theorem.

References, independent of odenet's generated code and solvers: each library method written by hand
from its textbook formula and solved by plain iteration unrolled under autograd until it stops
changing (float64), and torchdeq's DEQ on the same function. Every implicit library scheme is
enrolled automatically in the conditions PyTorch users bring (dropout, batch normalization, frozen
weights, pickling, torch.compile, autocast, no_grad), against the same iteration unrolled with the
layer's random numbers and buffers held fixed.
"""

from __future__ import annotations

import json
import math
import pickle

import pytest
import torch
from helpers import IMPLICIT, LIBRARY
from torch import nn

import odenet
from odenet.nn import ConvergenceError, DoubleBackwardError, Solver, compile
from odenet.nn.layers import NO_CONTEXT, Context
from odenet.nn.memory import saved_tensor_bytes

WIDTH, BATCH, DEPTH = 6, 5, 3
METHODS = ["fixed_point", "anderson", "newton"]
TIGHT = {"tol": 1e-13, "max_iter": 400}


def _mlp(seed: int, width: int = WIDTH) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width)).double()


def _factory(seed: int = 0):
    return lambda i: _mlp(seed + i)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


def _assert_gradients(got, expected, tolerance: float = 1e-8) -> None:
    """Each gradient within ``tolerance`` relative; a gradient that is zero in exact arithmetic (a
    bias before batch normalization) is compared with a millionth of the largest one instead."""
    scale = max(float(w.norm()) for w in expected)
    for g, w in zip(got, expected, strict=True):
        assert float((g - w).norm()) <= tolerance * max(float(w.norm()), 1e-6 * scale)


# -- the textbook formulas, solved by unrolled iteration ----------------------------------------------

SQRT3 = math.sqrt(3)
GAUSS = ((1 / 4, 1 / 4 - SQRT3 / 6), (1 / 4 + SQRT3 / 6, 1 / 4))


def _unrolled(start, update, iterations=300):
    """Iterate ``u <- update(u)`` from ``start`` under autograd until it stops changing."""
    u = start
    for _ in range(iterations):
        new = update(u)
        if float((new - u).detach().abs().max()) == 0.0:
            return new
        u = new
    return u


def _reference_step(name, f, x, h):
    if name == "backward_euler":  # x+ = x + h f(x+)
        return _unrolled(x, lambda u: x + h * f(u))
    if name == "implicit_midpoint":  # x+ = x + h f((x + x+)/2)
        return _unrolled(x, lambda u: x + h * f((x + u) / 2))
    if name == "trapezoidal":  # x+ = x + h/2 (f(x) + f(x+))
        fx = f(x)
        return _unrolled(x, lambda u: x + h / 2 * (fx + f(u)))
    if name == "gauss_legendre2":  # stages k = f(x + h A k), Jacobi iteration on both at once
        (a11, a12), (a21, a22) = GAUSS
        k = torch.cat([f(x), f(x)], dim=1)
        n = x.shape[1]

        def stages(k):
            k1, k2 = k[:, :n], k[:, n:]
            return torch.cat([f(x + h * (a11 * k1 + a12 * k2)), f(x + h * (a21 * k1 + a22 * k2))], dim=1)

        k = _unrolled(k, stages)
        return x + h / 2 * (k[:, :n] + k[:, n:])
    raise AssertionError(name)


TEXTBOOK = ["backward_euler", "implicit_midpoint", "trapezoidal", "gauss_legendre2"]


def test_every_textbook_method_is_a_library_scheme_and_implicit():
    assert set(TEXTBOOK) <= set(IMPLICIT)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", TEXTBOOK)
def test_gradients_match_autograd_through_the_unrolled_textbook_solve(name, method):
    """Output, input gradient and every weight's gradient within 1e-8 (float64), h = 0.5."""
    h = 0.5
    block = compile(LIBRARY[name], {"f": _factory()}, DEPTH, params={"h": h}, solver=Solver(method, **TIGHT))
    torch.manual_seed(1)
    x = torch.randn(BATCH, WIDTH, dtype=torch.float64, requires_grad=True)
    target = torch.randn(BATCH, WIDTH, dtype=torch.float64)
    out = block(x)
    loss = ((out - target) ** 2).sum()
    weights = list(block.parameters())
    grads = torch.autograd.grad(loss, [x, *weights])

    references = [_mlp(i) for i in range(DEPTH)]
    state = x
    for f in references:
        state = _reference_step(name, f, state, h)
    reference_loss = ((state - target) ** 2).sum()
    expected = torch.autograd.grad(reference_loss, [x, *[p for f in references for p in f.parameters()]])
    assert _relative(out, state) < 1e-12
    _assert_gradients(grads, expected)
    # every solve stopped at its tolerance, and the adjoint was solved once per layer
    assert len(block.solves) == DEPTH and all(s.residual <= 1e-13 for s in block.solves)
    assert sorted(s.layer for s in block.backward_solves) == list(range(DEPTH))


def test_a_learnable_step_gets_the_implicit_gradient():
    """d/dh through backward Euler's solve, against finite differences of the converged layer."""
    scheme = odenet.parse(
        "scheme be\nstate x\nparam h = 0.3 learnable in (0, 1)\nx[n+1] = x[n] + h*f(x[n+1])"
    )
    block = compile(scheme, {"f": _factory()}, 2, solver=Solver("newton", **TIGHT)).double()
    x = torch.randn(BATCH, WIDTH, dtype=torch.float64)
    block(x).sum().backward()
    raw = block.raw_params["h"]
    analytic = raw.grad.clone()
    numeric = torch.zeros_like(analytic)
    for i in range(2):
        with torch.no_grad():
            raw[i] += 1e-6
            up = block(x).sum()
            raw[i] -= 2e-6
            down = block(x).sum()
            raw[i] += 1e-6
        numeric[i] = (up - down) / 2e-6
    assert _relative(analytic, numeric) < 1e-7


def test_torchdeq_agrees_on_the_solution_and_the_gradient(float64_by_default):
    """One backward Euler layer is the equilibrium z = x + h f(z): torchdeq's DEQ with implicit
    differentiation on the same function gives the same solution and the same gradients."""
    torchdeq = pytest.importorskip("torchdeq")
    h = 0.7
    f = _mlp(3)
    block = compile(
        LIBRARY["backward_euler"], {"f": f}, 1, params={"h": h}, solver=Solver("anderson", **TIGHT)
    )
    torch.manual_seed(2)
    x = torch.randn(BATCH, WIDTH, dtype=torch.float64, requires_grad=True)
    ours = block(x)
    ours_grads = torch.autograd.grad(ours.square().sum(), [x, *f.parameters()])

    deq = torchdeq.get_deq(
        f_solver="anderson",
        b_solver="anderson",
        f_max_iter=300,
        b_max_iter=300,
        f_tol=1e-14,
        b_tol=1e-14,
        f_stop_mode="rel",
        b_stop_mode="rel",
        ift=True,
    )
    deq.train()
    (theirs,), info = deq(lambda z: x + h * f(z), torch.zeros_like(x))  # float64 by default: both
    assert float(info["rel_lowest"].max()) < 1e-13
    theirs_grads = torch.autograd.grad(theirs.square().sum(), [x, *f.parameters()])
    assert _relative(ours, theirs) < 1e-11
    _assert_gradients(ours_grads, theirs_grads)


# -- every implicit scheme, under the conditions users bring ------------------------------------------


def _generic_reference(block, x, h_values=None, context=NO_CONTEXT):
    """The block's layers by plain iteration of the scheme's own fixed-point map under autograd,
    each iteration from the layer's starting random numbers and buffers, the last one kept."""
    from odenet.nn.generated import in_state_dtype

    step, start = block.code.implicit.step, block.code.implicit.start
    state = block.initial_state(x, context)
    for n in range(block.depth):
        params = block.layer_params(n)
        rng = torch.get_rng_state()
        modules = block.layer_modules(n)
        buffers = [
            (m, k, b, b.clone())
            for module in modules
            for m in module.modules()
            for k, b in m._buffers.items()
        ]
        guess = tuple(torch.zeros_like(state[0]) if i is None else state[i] for i in start)
        previous = None
        for _ in range(400):
            torch.set_rng_state(rng)
            for m, k, _, saved in buffers:  # a fresh copy each time: no graph sees a buffer change
                m._buffers[k] = saved.clone()
            guess = step(state, guess, params, in_state_dtype(block.caller(n, context), state))
            flat = torch.cat([g.detach().reshape(-1) for g in guess])
            if previous is not None and float((flat - previous).abs().max()) == 0.0:
                break
            previous = flat
        with torch.no_grad():
            for m, k, live, _ in buffers:  # the last evaluation's changes, on the live buffers
                live.copy_(m._buffers[k])
                m._buffers[k] = live
        state = tuple(guess[i] if new else state[i] for new, i in block.code.implicit.assemble)
    return block.output(state)


def _with_dropout(i):
    torch.manual_seed(i)
    return nn.Sequential(
        nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Dropout(0.3), nn.Linear(WIDTH, WIDTH)
    ).double()


def _with_batchnorm(i):
    torch.manual_seed(i)
    return nn.Sequential(
        nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH)
    ).double()


CONDITIONS = {
    "plain": _factory(),
    "dropout": _with_dropout,
    "batchnorm": _with_batchnorm,
    "shared": _mlp(7),
}


class _Conditioned(nn.Module):
    """A function of the state and keyword context (a scale that is not a leaf, a shift)."""

    def __init__(self, i):
        super().__init__()
        torch.manual_seed(i)
        self.net = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH)).double()

    def forward(self, x, *, scale, shift, mask=None):
        return self.net(x * scale) + shift


@pytest.mark.parametrize("name", IMPLICIT)
def test_context_gets_the_implicit_gradient(name):
    """Keyword context reaches every call of every solve, and the implicit-function backward gives
    its tensors the gradient of the unrolled iteration."""
    scheme = LIBRARY[name]
    block = compile(
        scheme,
        {fn.name: _Conditioned for fn in scheme.functions},
        DEPTH,
        params={"h": 0.4},
        solver=Solver("anderson", **TIGHT),
    )
    torch.manual_seed(5)
    x = torch.randn(8, WIDTH, dtype=torch.float64, requires_grad=True)
    base = torch.randn(8, WIDTH, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(WIDTH, dtype=torch.float64, requires_grad=True)
    context = {"scale": torch.sigmoid(base), "shift": shift, "mask": None}
    inputs = [x, base, shift, *block.parameters()]
    out = block(x, **context)
    grads = torch.autograd.grad(out.square().sum(), inputs)
    context = {"scale": torch.sigmoid(base), "shift": shift, "mask": None}  # a new graph to base
    expected_out = _generic_reference(block, x, context=Context(context))
    expected = torch.autograd.grad(expected_out.square().sum(), inputs)
    assert _relative(out, expected_out) < 1e-11
    assert grads[1].abs().max() > 0 and grads[2].abs().max() > 0
    _assert_gradients(grads, expected)


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
@pytest.mark.parametrize("name", IMPLICIT)
def test_every_implicit_scheme_matches_the_unrolled_iteration(name, condition):
    scheme = LIBRARY[name]
    functions = {fn.name: CONDITIONS[condition] for fn in scheme.functions}
    block = compile(scheme, functions, DEPTH, params={"h": 0.4}, solver=Solver("anderson", **TIGHT))
    torch.manual_seed(5)
    x = torch.randn(8, WIDTH, dtype=torch.float64, requires_grad=True)
    weights = list(block.parameters())
    state = torch.random.get_rng_state()
    buffers = [b.clone() for b in block.buffers()]
    out = block(x)
    after_rng, after_buffers = torch.random.get_rng_state(), [b.clone() for b in block.buffers()]
    grads = torch.autograd.grad(out.square().sum(), [x, *weights])

    torch.random.set_rng_state(state)
    with torch.no_grad():
        for b, saved in zip(block.buffers(), buffers, strict=True):
            b.copy_(saved)
    expected_out = _generic_reference(block, x)
    expected = torch.autograd.grad(expected_out.square().sum(), [x, *weights])
    assert _relative(out, expected_out) < 1e-11
    _assert_gradients(grads, expected)
    # random numbers and buffers moved as by one evaluation per layer
    assert torch.equal(torch.random.get_rng_state(), after_rng)
    for b, want in zip(block.buffers(), after_buffers, strict=True):
        assert torch.allclose(b, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", IMPLICIT)
def test_frozen_layers_and_inference(name):
    scheme = LIBRARY[name]
    block = compile(scheme, {fn.name: _factory() for fn in scheme.functions}, DEPTH, solver=Solver(**TIGHT))
    for p in block.functions.parameters():
        p.requires_grad_(False)
    for p in block.functions[scheme.functions[0].name][DEPTH - 1].parameters():
        p.requires_grad_(True)
    x = torch.randn(4, WIDTH, dtype=torch.float64)
    out = block(x)
    out.sum().backward()
    top = list(block.functions[scheme.functions[0].name][DEPTH - 1].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in top)
    assert all(p.grad is None for p in block.functions[scheme.functions[0].name][0].parameters())
    with torch.no_grad():
        again = block(x)
    assert not again.requires_grad and torch.allclose(again, out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", IMPLICIT)
def test_pickled_blocks_solve_the_same(name):
    scheme = LIBRARY[name]
    block = compile(
        scheme, {fn.name: _factory() for fn in scheme.functions}, 2, solver=Solver("newton", **TIGHT)
    )
    x = torch.randn(3, WIDTH, dtype=torch.float64)
    loaded = pickle.loads(pickle.dumps(block))
    assert loaded.solver == block.solver
    assert torch.equal(loaded(x), block(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own internals, not odenet's
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_compile_runs_the_solves_as_they_are():
    block = compile(LIBRARY["backward_euler"], {"f": _factory()}, 2, solver=Solver(**TIGHT))
    x = torch.randn(3, WIDTH, dtype=torch.float64, requires_grad=True)
    (expected,) = torch.autograd.grad(block(x).sum(), x)
    compiled = torch.compile(block, backend="aot_eager")
    (got,) = torch.autograd.grad(compiled(x).sum(), x)
    assert _relative(got, expected) < 1e-12


def test_autocast_solves_to_the_precision_of_the_functions():
    """bfloat16 functions: the solve stops at bfloat16's eps (a float32 tolerance could never be met),
    and the result is as close to float32's as bfloat16 rounding allows."""
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH))
    block = compile(LIBRARY["backward_euler"], {"f": f}, 2, solver=Solver(tol=1e-6))
    x = torch.randn(4, WIDTH, requires_grad=True)
    (exact,) = torch.autograd.grad(block(x).sum(), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.dtype == torch.float32
    assert all(s.residual <= torch.finfo(torch.bfloat16).eps for s in block.solves)
    (low,) = torch.autograd.grad(out.sum(), x)
    assert _relative(low, exact) < 0.05


def test_double_backward_is_refused():
    block = compile(LIBRARY["backward_euler"], {"f": _factory()}, 1)
    x = torch.randn(3, WIDTH, dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(block(x).sum(), x)  # first-order gradients are fine
    assert torch.isfinite(first).all() and first.abs().sum() > 0
    with pytest.raises(DoubleBackwardError, match="second-order"):
        torch.autograd.grad(block(x).sum(), x, create_graph=True)


def test_a_solve_that_does_not_converge_names_the_layer_and_the_residual():
    """h*Lip(f) = 3: plain iteration diverges; the error says where, and nothing is returned."""
    f = nn.Linear(WIDTH, WIDTH, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(3 * torch.eye(WIDTH))
    block = compile(LIBRARY["backward_euler"], {"f": f}, 2, params={"h": 1.0}, solver=Solver("fixed_point"))
    with pytest.raises(ConvergenceError, match=r"layer 0: the step's solve did not converge") as caught:
        block(torch.randn(2, WIDTH, dtype=torch.float64))
    assert caught.value.layer == 0 and caught.value.residual > 0.1  # it diverged, and stopped early
    assert caught.value.solve == "step"
    assert caught.value.iterations < 100
    # Newton solves the same linear step in one correction: x+ = x / (1 - 3)
    block = compile(
        LIBRARY["backward_euler"], {"f": f}, 1, params={"h": 1.0}, solver=Solver("newton", tol=1e-12)
    )
    x = torch.randn(2, WIDTH, dtype=torch.float64)
    assert _relative(block(x), x / -2) < 1e-12
    assert block.solves[0].iterations <= 3


def test_an_adjoint_solve_that_does_not_converge_is_refused_in_the_backward_pass():
    """f = 0.9 u at h 1: the step's fixed-point iteration contracts by 0.9 and converges in its 400
    iterations; the adjoint's, w = g + 0.9 w from w = g and allowed 3, stops at w = (1 + 0.9 + 0.81 +
    0.729) g, its last change 0.729 g: relative residual 0.729 / 3.439. The backward pass refuses
    with solve "adjoint" and leaves no gradient behind."""
    f = nn.Linear(WIDTH, WIDTH, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(0.9 * torch.eye(WIDTH, dtype=torch.float64))
    solver = Solver("fixed_point", tol=1e-10, max_iter=400, backward_max_iter=3)
    block = compile(LIBRARY["backward_euler"], {"f": f}, 1, params={"h": 1.0}, solver=solver)
    x = torch.randn(2, WIDTH, dtype=torch.float64, requires_grad=True)
    out = block(x)
    assert _relative(out, x / 0.1) < 1e-8  # x+ = x / (1 - 0.9)
    with pytest.raises(ConvergenceError, match=r"layer 0: the adjoint solve \(backward pass\)") as caught:
        out.sum().backward()
    assert caught.value.solve == "adjoint" and caught.value.layer == 0
    assert caught.value.residual == pytest.approx(0.729 / 3.439, rel=1e-9)
    assert caught.value.iterations == 3
    assert x.grad is None


def test_the_backward_pass_keeps_one_evaluation_per_layer_not_the_iterations():
    """Saved tensors do not grow with the iterations a solve takes (tolerance 1e-3 vs 1e-13)."""
    x = torch.randn(BATCH, WIDTH, dtype=torch.float64, requires_grad=True)
    sizes, iterations = [], []
    for tol in (1e-3, 1e-13):
        block = compile(
            LIBRARY["backward_euler"], {"f": _factory()}, 4, solver=Solver("fixed_point", tol=tol)
        )
        with saved_tensor_bytes() as counter:
            block(x)
        sizes.append(counter.bytes)
        iterations.append(sum(s.iterations for s in block.solves))
    assert iterations[1] > 3 * iterations[0]
    assert sizes[0] == sizes[1]
    explicit = compile(LIBRARY["euler"], {"f": _factory()}, 4)
    with saved_tensor_bytes() as counter:
        explicit(x)
    assert sizes[0] <= 2 * counter.bytes  # one evaluation of f per layer, as an explicit step keeps


def test_bad_solver_options_are_refused():
    with pytest.raises(odenet.ConfigError, match="solver method"):
        Solver("broyden")  # type: ignore[arg-type]
    with pytest.raises(odenet.ConfigError, match="tol"):
        Solver(tol=0)
    with pytest.raises(odenet.ConfigError, match="max_iter"):
        Solver(max_iter=0)
    with pytest.raises(odenet.ConfigError, match="solver must be"):
        compile(LIBRARY["backward_euler"], {"f": nn.Identity()}, 1, solver=3)  # type: ignore[arg-type]
    with pytest.raises(odenet.UnsupportedSchemeError, match="memory='reversible' is not offered"):
        compile(LIBRARY["backward_euler"], {"f": nn.Identity()}, 1, memory="reversible")


# -- what implicitness buys: A-stability on a stiff problem -------------------------------------------


def test_stiff_linear_problem_backward_euler_stays_bounded_where_forward_euler_blows_up(float64_by_default):
    """f(x) = lambda x with h*lambda = -100: the analysis puts -100 inside backward Euler's
    stability region and outside forward Euler's; 30 layers of each agree (Newton solves the
    linear step in one correction; fixed-point iteration could not, h*Lip(f) = 100)."""
    h, lam = 0.1, -1000.0
    f = nn.Linear(WIDTH, WIDTH, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(lam * torch.eye(WIDTH))
    x = torch.randn(4, WIDTH, dtype=torch.float64)
    implicit = compile(
        LIBRARY["backward_euler"], {"f": f}, 30, params={"h": h}, solver=Solver("newton", tol=1e-12)
    )
    explicit = compile(LIBRARY["euler"], {"f": f}, 30, params={"h": h})
    with torch.no_grad():
        bounded, exploded = implicit(x), explicit(x)
    assert float(bounded.norm()) < float(x.norm())  # each step multiplies by 1/(1 + 100)
    assert _relative(bounded, x / 101.0**30) < 1e-10
    assert float(exploded.norm()) > 1e50 * float(x.norm())  # each step multiplies by 1 - 100 = -99
    # the analysis predicts it: spectral radius of the step's amplification at lambda (h = 0.1)
    assert odenet.analyze(LIBRARY["backward_euler"]).stability.radius([lam])[0] == pytest.approx(1 / 101)
    assert odenet.analyze(LIBRARY["euler"]).stability.radius([lam])[0] == pytest.approx(99)


# -- explicit schemes whose inverse is a fixed point: memory="reversible" solves for each input -------


def test_the_fixed_point_inverse_of_euler_and_heun_is_the_textbook_iteration():
    """Euler: x[n] = x[n+1] - h f(x[n]); Heun: x[n] = x[n+1] - h/2 (f(x[n]) + f(x[n] + h f(x[n])));
    in reversed time (X[m] = x[n+1], X[m+1] = x[n]), as the analysis derives them."""
    from odenet.analysis.inverse import fixed_point_inverse

    for name, text in (
        ("euler", "X[m] - h*f(X[m+1])"),
        ("heun", "X[m] - h/2*(f(X[m+1]) + f(X[m+1] + h*f(X[m+1])))"),
    ):
        inverse = fixed_point_inverse(LIBRARY[name])
        rhs = text.replace("X[m+1]", "x[n+1]").replace("X[m]", "x[n]")
        expected = odenet.parse(f"scheme e\nstate x\nparam h = 0.1\nx[n+1] = {rhs}")
        assert not inverse.is_explicit
        assert (inverse.update_residuals["x"] - expected.update_residuals["x"]).expand() == 0
    with pytest.raises(odenet.NotReversibleError, match="singular"):
        fixed_point_inverse(LIBRARY["ab2"])


def _contractive(seed_base: int = 0):
    from odenet.models import make_function

    def make(i):
        torch.manual_seed(seed_base + i)
        return make_function("mlp", WIDTH, 2 * WIDTH, "mlp", contraction=0.9).double()

    return make


@pytest.mark.parametrize("guard", ["adaptive", "raise"])
@pytest.mark.parametrize("name", ["euler", "heun", "rk4"])
def test_reversible_with_a_fixed_point_inverse_equals_autograd_on_a_contractive_network(name, guard):
    """h = 0.5 and Lip(f) <= 0.9: each input is rebuilt by iteration; gradients within 1e-8 (float64)
    of plain autograd's in training mode (the spectral norms' power iterations replayed), depth 24."""
    scheme = LIBRARY[name]
    reference = compile(scheme, {"f": _contractive()}, 24, params={"h": 0.5}).double()
    block = compile(scheme, {"f": _contractive()}, 24, "reversible", params={"h": 0.5}, guard=guard).double()
    block.load_state_dict(reference.state_dict())
    x = torch.randn(BATCH, WIDTH, dtype=torch.float64, requires_grad=True)
    got = torch.autograd.grad(block(x).square().sum(), [x, *block.parameters()])
    expected = torch.autograd.grad(reference(x).square().sum(), [x, *reference.parameters()])
    _assert_gradients(got, expected)
    for a, b in zip(block.buffers(), reference.buffers(), strict=True):  # power-iteration vectors
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    assert sorted(r.layer for r in block.rebuilds) == list(range(24))
    assert all(r.iterations < 40 for r in block.rebuilds)


def test_a_rebuild_that_does_not_converge_raises_instead_of_a_wrong_gradient():
    """f = 3 x with h = 1: Euler's inverse x = y - 3x is no contraction. Plain iteration diverges and
    the backward pass refuses; Anderson acceleration (GMRES-like on a linear map) still finds the
    inverse, and the gradient is the exact 4**3."""
    f = nn.Linear(WIDTH, WIDTH, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(3 * torch.eye(WIDTH))
    x = torch.randn(2, WIDTH, dtype=torch.float64, requires_grad=True)
    block = compile(LIBRARY["euler"], {"f": f}, 3, "reversible", params={"h": 1.0}, solver="fixed_point")
    out = block(x)
    with pytest.raises(
        ConvergenceError, match=r"layer 2: the fixed-point rebuild of its input.*h\*Lip\(f\) < 1"
    ) as caught:
        out.sum().backward()
    assert caught.value.solve == "rebuild"
    assert x.grad is None
    block = compile(LIBRARY["euler"], {"f": f}, 3, "reversible", params={"h": 1.0}, solver="anderson")
    block(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, 64.0), rtol=1e-12)


def test_reversible_memory_with_a_fixed_point_inverse_is_flat_in_depth():
    """Saved tensors of the raise guard: the same at depth 8 and 64 (the output and the input only).
    In eval mode: in training, spectral normalization's power-iteration vectors (one per weight and
    layer, not per example) are recorded for the replay, as in every re-running mode."""
    x = torch.randn(BATCH, WIDTH, dtype=torch.float64, requires_grad=True)
    sizes = []
    for depth in (8, 64):
        block = compile(LIBRARY["heun"], {"f": _contractive()}, depth, "reversible", guard="raise").double()
        block.eval()
        params = list(block.parameters())
        with saved_tensor_bytes(exclude=params) as counter:
            out = block(x)
        sizes.append(counter.bytes + block.kept_bytes)
        out.sum().backward()
    assert sizes[0] == sizes[1]


@pytest.mark.slow  # two command-line processes and a training run: the full suite, not the fast target
def test_odenet_train_backward_euler_from_the_command_line(tmp_path):
    """The command line trains an implicit network with its defaults (one epoch of the rings)."""
    from conftest import cli

    out = tmp_path / "run"
    result = cli(
        "train", "backward_euler", "--data", "rings", "--epochs", "1", "--depth", "4", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["scheme"] == "backward_euler" and metrics["test_accuracy"] > 0.5
    evaluated = cli("evaluate", str(out / "checkpoint.pt"))
    assert evaluated.returncode == 0, evaluated.stderr
    result = cli("train", "backward_euler", "--data", "rings", "--epochs", "1", "--solver", "broyden")
    assert result.returncode == 2 and "--solver" in result.stderr


# -- found by review: each seen failing on the first version ------------------------------------------


def test_frozen_layers_under_the_trained_ones_solve_no_adjoint():
    """Layers 0-2 frozen and an input without grad: only layer 3 needs a gradient, so only layer 3
    solves an adjoint system; with every layer frozen the output does not require grad (as torch)."""
    block = compile(LIBRARY["backward_euler"], {"f": _factory()}, 4, solver=Solver(**TIGHT))
    for n in range(3):
        block.functions["f"][n].requires_grad_(False)
    x = torch.randn(3, WIDTH, dtype=torch.float64)
    block(x).sum().backward()
    assert [s.layer for s in block.backward_solves] == [3]
    block.requires_grad_(False)
    assert not block(x).requires_grad


def test_a_small_state_beside_a_large_one_is_solved_to_the_tolerance():
    """x ~ 1e3 and v ~ 1 in one step: each unknown is measured against its own size (the first
    version measured the whole sample, and v was off by 7.9e-5 at tol 1e-6)."""
    scheme = odenet.parse(
        "scheme two_scale\nstate x, v\nparam h = 0.5\ninput x, v\noutput x, v\n"
        "x[n+1] = x[n] + h*0.001*v[n+1]\nv[n+1] = v[n] + h*f(v[n+1])"
    )
    f = _mlp(0, 4)
    x = torch.cat([1000 * torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)], 1)
    out = {}
    for tol in (1e-6, 1e-14):
        block = compile(scheme, {"f": f}, 1, solver=Solver("fixed_point", tol=tol, max_iter=500))
        with torch.no_grad():
            out[tol] = block(x)
    assert _relative(out[1e-6][:, 4:], out[1e-14][:, 4:]) < 1e-5


def test_newton_without_forward_mode_derivatives_says_what_to_use():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = nn.MultiheadAttention(4, 2, batch_first=True)

        def forward(self, x):
            return 0.3 * torch.tanh(self.attention(x, x, x, need_weights=False)[0])

    f, x = Attention(), torch.randn(2, 3, 4)
    block = compile(LIBRARY["backward_euler"], {"f": f}, 1, params={"h": 0.5}, solver="newton")
    try:
        got = block(x)
    except odenet.UnsupportedSchemeError as exc:  # torch 2.13 on the CPU: no forward-mode derivative
        assert "solver='anderson'" in str(exc) and "torch.func.jvp" in str(exc)
    else:  # a torch that has one: then Newton agrees with Anderson
        expected = compile(LIBRARY["backward_euler"], {"f": f}, 1, params={"h": 0.5})(x)
        assert _relative(got, expected) < 1e-5


class _RoundingNoise(nn.Module):
    """tanh with a relative error of 64 float32 eps whose sign alternates from call to call: a map
    whose evaluations carry rounding noise, on every machine alike (a plain float32 map reached
    its fixed point exactly on one CPU's kernels and stalled an eps away on another's). Times
    h = 0.1, the noise moves the step's map by a few eps of the state: above the tolerance, below
    100 eps."""

    def __init__(self):
        super().__init__()
        self.sign = 1.0

    def forward(self, u):
        self.sign = -self.sign
        return torch.tanh(u) * (1 + self.sign * 64 * torch.finfo(torch.float32).eps)


def test_a_tolerance_below_the_dtypes_rounding_is_named():
    block = compile(LIBRARY["backward_euler"], {"f": _RoundingNoise()}, 1, solver=Solver(tol=1e-12)).float()
    with pytest.raises(ConvergenceError, match="below what float32 rounding allows"):
        block(torch.randn(3, WIDTH))


class _Halving(nn.Module):
    """f(u) = u / 2: backward Euler's iteration at h = 1 contracts by a half per step."""

    def forward(self, u):
        return u / 2


def test_a_solve_that_runs_out_of_iterations_is_not_blamed_on_rounding():
    """A solve stopped by max_iter, still improving, at a residual below 100 eps is short of
    iterations, not of precision: the message says so and does not advise a wider dtype (the first
    version blamed rounding for any residual below 100 eps; backward Euler at h = 1 on MNIST-1D ran
    out of its 100 iterations at 3.5e-6 and was told to raise a tolerance the command line has not)."""
    torch.manual_seed(0)
    x = torch.randn(BATCH, WIDTH)
    solver = Solver("fixed_point", tol=2e-7, max_iter=16)  # a half per iteration: 4e-6 after 16
    block = compile(LIBRARY["backward_euler"], {"f": _Halving()}, 1, params={"h": 1.0}, solver=solver).float()
    with pytest.raises(ConvergenceError, match="raise max_iter") as raised:
        block(x)
    assert 2e-7 < raised.value.residual < 100 * torch.finfo(torch.float32).eps
    assert raised.value.iterations == 16 and "rounding" not in str(raised.value)
    more = Solver("fixed_point", tol=2e-7, max_iter=60)  # as the message advises: x+ = x + x+/2 = 2x
    block = compile(LIBRARY["backward_euler"], {"f": _Halving()}, 1, params={"h": 1.0}, solver=more)
    assert torch.allclose(block.float()(x), 2 * x, rtol=1e-6, atol=0)


def test_a_newton_adjoint_solve_stalled_by_rounding_is_named():
    """GMRES on the adjoint system in float32 stalls at the rounding: a restart that does not lower
    the true residual stops it (the next would repeat it), and the message names the rounding, not
    max_iter (the first version ran all max_iter*krylov products and advised raising max_iter)."""
    torch.manual_seed(0)
    solver = Solver("newton", tol=1e-5, backward_tol=1e-12)
    block = compile(LIBRARY["backward_euler"], {"f": _factory()}, 1, params={"h": 0.5}, solver=solver).float()
    x = torch.randn(BATCH, WIDTH, requires_grad=True)
    with pytest.raises(ConvergenceError, match="below what float32 rounding allows") as raised:
        block(x).square().sum().backward()
    assert raised.value.residual < 100 * torch.finfo(torch.float32).eps
    assert raised.value.iterations < solver.max_iter * solver.krylov


def test_restarted_gmres_that_makes_no_progress_stops_after_its_patience():
    """The rotation A = [[0, 1], [-1, 0]] with b = e1: A b is orthogonal to b, so GMRES(1) picks the
    coefficient 0 in every restart and the true residual stays |b| (the textbook case of restarted
    GMRES stagnating). It stops after GMRES_PATIENCE = 3 restarts without a better residual, each
    1 Arnoldi product and 1 true residual, and says it stagnated; GMRES(2) solves the same system
    exactly in one restart, x = (0, 1)."""
    from odenet.nn.solvers import GMRES_PATIENCE, gmres

    a = torch.tensor([[0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    x, used, cycles, relative, stagnated = gmres(lambda v: a @ v, b, 1e-10, 100, 1)
    assert GMRES_PATIENCE == 3 and (cycles, used, relative, stagnated) == (3, 6, 1.0, True)
    assert torch.equal(x, torch.zeros(2, dtype=torch.float64))  # the best x: the start
    x, used, cycles, relative, stagnated = gmres(lambda v: a @ v, b, 1e-10, 100, 2)
    assert (cycles, used, stagnated) == (1, 3, False) and relative < 1e-12  # rounding of any BLAS
    assert torch.allclose(x, torch.tensor([0.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-12)


def test_a_newton_solve_whose_gmres_cannot_progress_is_told_to_raise_krylov():
    """Backward Euler with f(u) = W u, W = [[1, 1], [-1, 1]], at h 1: Newton's system I - W is a
    quarter turn, on which GMRES with a basis of 1 vector makes no progress (A b is orthogonal to b).
    Newton stops improving and the error says to raise krylov; raising max_iter, which the first
    version advised, would change nothing. krylov = 2 solves it: x+ = (I - W)^-1 x."""
    f = nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        f.weight.copy_(torch.tensor([[1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64))
    x = torch.randn(3, 2, dtype=torch.float64)
    block = compile(
        LIBRARY["backward_euler"], {"f": f}, 1, params={"h": 1.0}, solver=Solver("newton", krylov=1)
    )
    with pytest.raises(ConvergenceError, match=r"stopped improving: raise krylov \(1 now\)") as raised:
        block(x)
    assert "max_iter" not in str(raised.value) and raised.value.solve == "step"
    block = compile(
        LIBRARY["backward_euler"], {"f": f}, 1, params={"h": 1.0}, solver=Solver("newton", krylov=2)
    )
    expected = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - f.weight, x.T).T
    assert _relative(block(x), expected) < 1e-12


def test_a_fixed_point_inverse_under_autocast_is_refused():
    """bfloat16 functions move the inverse's map by more than the guard's tolerance near the input:
    every rebuild would be repaired (the first version: repairs = 1 on every backward, nothing
    saved) or refused after the forward; refused before it instead."""
    block = compile(LIBRARY["euler"], {"f": _contractive()}, 4, "reversible", params={"h": 0.5}).float()
    with (
        torch.autocast("cpu", dtype=torch.bfloat16),
        pytest.raises(odenet.UnsupportedSchemeError, match="autocast"),
    ):
        block(torch.randn(3, WIDTH))


def test_inverse_of_a_fixed_point_scheme_moves_batchnorm_statistics_once_per_call():
    """block.inverse(y) in training mode: the iterations replay the first evaluation (the first
    version updated the running statistics at every iteration: 63 times for 3 layers)."""

    def f(i):
        torch.manual_seed(i)
        return nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.BatchNorm1d(WIDTH), nn.Tanh()).double()

    block = compile(LIBRARY["euler"], {"f": f}, 3, "reversible")
    x = torch.randn(8, WIDTH, dtype=torch.float64)
    with torch.no_grad():
        y = block(x)
    before = [m.num_batches_tracked.item() for m in block.modules() if isinstance(m, nn.BatchNorm1d)]
    block.inverse(y)
    after = [m.num_batches_tracked.item() for m in block.modules() if isinstance(m, nn.BatchNorm1d)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1]


def test_emit_prints_the_implicit_map_and_the_fixed_point_inverse():
    from conftest import cli

    out = cli("compile", "backward_euler", "--emit").stdout
    assert "def implicit_step(state, guess, p, call):" in out and 'call(0, "f", x_np1_guess)' in out
    assert "def step(" not in out  # the explicit step's printing would read x[n+1] before it exists
    out = cli("compile", "heun", "--emit").stdout
    assert "def fixed_point_inverse(state, guess, p, call):" in out and "def vjp(" in out
