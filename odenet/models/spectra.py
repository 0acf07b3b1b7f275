"""Stability of a trained network: its layers' Jacobian spectra against the scheme's stability region.

Linear stability asks where the test function ``f(u) = lambda*u`` keeps a step power-bounded. For a
trained layer the role of ``lambda`` is played by the eigenvalues of the Jacobian ``df/dy`` of the
layer's function at the points where the layer evaluates it: each eigenvalue ``mu`` is placed at
``scale*mu`` (``h*mu``, ``h**2*mu`` or ``mu``, the way the scheme uses it, with the layer's own
parameter values) and tested against the region of the scheme at that layer's parameters (spectral
radius of the amplification matrix ``M(mu) <= 1``). This is the frozen-coefficient linearization
that the analysis of the scheme assumes; it is a diagnostic of the trained network, not a proof of
its nonlinear stability.

A scheme with several functions (``hamiltonian``'s ``f`` and ``g``) or a function of several
arguments has no single ``lambda`` per layer: the test equation gives every function the same one,
a trained layer does not. There the layer is judged by its *joint linearization*: the matrix the
analysis builds from the step, with each function replaced by its Jacobian (at that function's
first evaluation point) instead of ``lambda``, i.e. the Jacobian of the layer's whole step with
respect to its state (history included) under frozen coefficients; the layer is stable when that
matrix's spectral radius is at most 1. Its eigenvalues are computed exactly up to ``exact_limit``
state dimensions, else the largest in modulus by ARPACK on matrix-vector products (each a
Jacobian-vector product through the functions). Each function's eigenvalues are still placed on
the region, as a diagnostic. For one function of one argument the two tests agree (the joint
matrix is the amplification matrix evaluated at ``J``); ``joint=True`` computes it there too.

Where the functions are evaluated: the first call of each function in a layer (for every library
scheme that is the function at the layer's input state, e.g. ``f(y[n])``), on a sample of test inputs
pushed through the trained network. Eigenvalues are exact (a dense Jacobian, ``torch.func.jacrev``)
up to ``exact_limit`` dimensions; above it, the extreme ones (largest modulus, leftmost, rightmost)
are estimated by ARPACK's Arnoldi iteration on vector-Jacobian products (``J^T`` has ``J``'s
eigenvalues), to a relative residual of 1e-6, from a fixed start vector.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import sympy
import torch

from odenet.analysis.stability import LAMBDA, NumericSpectrum, amplification_matrix, step_scaling
from odenet.errors import ConvergenceError
from odenet.extras import require
from odenet.ir import Scheme
from odenet.ir.printing import format_expr
from odenet.models.classifier import Classifier
from odenet.models.picture import spectra_html
from odenet.nn.layers import Context, map_tensors

__all__ = ["EXACT_LIMIT", "LayerSpectrum", "TrainedStability", "default_samples", "trained_stability"]

EXACT_LIMIT = 256
OUTSIDE_TOL = 1e-6  # spectral radius above 1 + this counts as outside (rounding on the boundary)


@dataclass(frozen=True, repr=False)
class LayerSpectrum:
    """The Jacobian eigenvalues of one layer's functions, pooled over the sample points (the arrays
    are read-only; ``repr`` counts them rather than printing them)."""

    layer: int  # counted over all stages
    stage: int
    params: Mapping[str, float]  # the layer's scheme parameters (read-only)
    scale: float  # the region's variable is scale * eigenvalue
    eigenvalues: np.ndarray  # complex, unscaled
    outside: np.ndarray  # bool, per eigenvalue
    method: str  # "exact" or "arnoldi"
    # the joint linearization (module doc): eigenvalues of the step's Jacobian with every function
    # replaced by its own, pooled over the samples (the largest in modulus only, by Arnoldi, for
    # wide states); None where it was not computed
    amplification: np.ndarray | None = None
    region_growth: float = 0.0  # max over the eigenvalues of rho(M(mu)) on the layer's region

    def __post_init__(self):
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        for array in (self.eigenvalues, self.outside, self.amplification):
            if array is not None:
                array.setflags(write=False)

    def __repr__(self) -> str:
        joint = (
            "" if self.max_amplification is None else f", joint spectral radius {self.max_amplification:.4g}"
        )
        return (
            f"LayerSpectrum(layer {self.layer}, stage {self.stage}: {self.eigenvalues.size} eigenvalues "
            f"({self.method}), max |scaled| {self.scale * self.max_abs_eigenvalue:.4g}, "
            f"{100 * self.outside_fraction:.1f}% outside{joint})"
        )

    @property
    def joint(self) -> bool:
        """Whether the joint linearization judges this layer (rather than each eigenvalue on the region)."""
        return self.amplification is not None

    @property
    def judged(self) -> np.ndarray:
        """What the verdict counts, per value: amplification factors of modulus above 1 (joint), or
        function eigenvalues outside the region."""
        if self.amplification is not None:
            return np.abs(self.amplification) > 1 + OUTSIDE_TOL
        return self.outside

    @property
    def outside_fraction(self) -> float:
        judged = self.judged
        return float(judged.mean()) if judged.size else 0.0

    @property
    def growth(self) -> float:
        """The largest amplification this layer's linearization allows per step: the joint matrix's
        spectral radius, or else the largest spectral radius of the scheme's amplification matrix
        over the function eigenvalues (1 or below: inside the region)."""
        if self.amplification is not None:
            return self.max_amplification or 0.0
        return self.region_growth

    @property
    def max_amplification(self) -> float | None:
        """The spectral radius of the joint linearization (None where it was not computed)."""
        if self.amplification is None:
            return None
        return float(np.abs(self.amplification).max()) if self.amplification.size else 0.0

    @property
    def max_abs_eigenvalue(self) -> float:
        return float(np.abs(self.eigenvalues).max()) if self.eigenvalues.size else 0.0


@dataclass(frozen=True, repr=False)
class TrainedStability:
    """Every layer's spectrum against the scheme's region. ``repr`` is one line (the scheme, stable
    or not, how many layers and inputs); ``str`` is :attr:`verdict`."""

    scheme: Scheme
    variable: str  # what the region depends on, e.g. "h**2*lambda"
    samples: int
    layers: tuple[LayerSpectrum, ...]
    region: NumericSpectrum | None = None  # at the middle layer's parameters, for the plot
    region_scale: float = 1.0

    @property
    def stable(self) -> bool:
        return all(not layer.judged.any() for layer in self.layers)

    def __repr__(self) -> str:
        bad = len(self.unstable_layers)
        state = "stable" if not bad else f"unstable in {bad} of {len(self.layers)} layers"
        return (
            f"TrainedStability({self.scheme.name}: {state}; {len(self.layers)} layers, "
            f"{self.samples} test inputs, region in {self.variable})"
        )

    def __str__(self) -> str:
        return self.verdict

    def _repr_html_(self) -> str:
        """A notebook's display: the verdict, a row per layer and the spectra over the region."""
        return spectra_html(self)

    @property
    def verdict(self) -> str:
        """One sentence: stable, or which layers leave the region and how far."""
        bad = self.unstable_layers
        name = self.scheme.name
        where = f"{self.samples} test inputs, {len(self.layers)} layers"
        if not bad and self.layers and all(layer.joint for layer in self.layers):
            return (
                f"stable: every layer's joint linearization (each function of {name} replaced "
                f"by its Jacobian) has spectral radius at most 1 ({where})"
            )
        if not bad:
            return (
                f"stable: every eigenvalue of every layer's Jacobian lies in the stability region of "
                f"{name} ({where})"
            )
        if all(layer.joint for layer in self.layers):
            worst = max(bad, key=lambda layer: layer.max_amplification or 0.0)
            return (
                f"unstable: {len(bad)} of {len(self.layers)} layers of {name} have a joint "
                f"linearization (every function replaced by its Jacobian) with spectral radius above 1 "
                f"(worst: layer {worst.layer}, {worst.max_amplification:.4g}; {where})"
            )
        worst = max(bad, key=lambda layer: layer.outside_fraction)
        return (
            f"unstable: {len(bad)} of {len(self.layers)} layers have Jacobian eigenvalues outside the "
            f"stability region of {name} (worst: layer {worst.layer}, "
            f"{100 * worst.outside_fraction:.1f}% outside; {where})"
        )

    @property
    def unstable_layers(self) -> tuple[LayerSpectrum, ...]:
        return tuple(layer for layer in self.layers if layer.judged.any())

    def to_json(self) -> dict:
        return {
            "scheme": self.scheme.name,
            "variable": self.variable,
            "samples": self.samples,
            "layers": [
                {
                    "layer": layer.layer,
                    "stage": layer.stage,
                    "outside_fraction": layer.outside_fraction,
                    "max_abs_eigenvalue": layer.max_abs_eigenvalue,
                    "max_abs_scaled": layer.scale * layer.max_abs_eigenvalue,
                    "eigenvalues": int(layer.eigenvalues.size),
                    "method": layer.method,
                    "params": dict(layer.params),
                    "joint": layer.joint,
                    "max_amplification": layer.max_amplification,
                    "growth": layer.growth,
                }
                for layer in self.layers
            ],
            "stable": self.stable,
        }


class _Regions:
    """The scheme's amplification matrix at each layer's parameter values (cached by value)."""

    def __init__(self, scheme: Scheme):
        self.scheme = scheme
        self.matrix = amplification_matrix(scheme)
        charpoly = self.matrix.charpoly(sympy.Symbol("zeta")).as_expr()
        self.variable, _ = step_scaling(scheme, charpoly)
        self._cache: dict[tuple, tuple[NumericSpectrum, float]] = {}

    def at(self, params: dict[str, float]) -> tuple[NumericSpectrum, float]:
        key = tuple(sorted((k, round(v, 12)) for k, v in params.items()))
        if key not in self._cache:
            subs = {sympy.Symbol(k, real=True): sympy.Float(v, 30) for k, v in params.items()}
            numeric = NumericSpectrum(self.matrix.subs(subs))
            scale = float(self.variable.subs(LAMBDA, 1).subs(subs))
            self._cache[key] = (numeric, scale)
        return self._cache[key]


def _exact_eigenvalues(module, points: torch.Tensor, contexts: list[dict] | None = None) -> np.ndarray:
    """Eigenvalues of the module's Jacobian at each point; ``contexts``: each point's keyword
    arguments (a block called with context), evaluated point by point."""
    dim = math.prod(points.shape[1:])
    if contexts is None:

        def single(p):
            return module(p.unsqueeze(0)).squeeze(0)

        jac = torch.func.vmap(torch.func.jacrev(single))(points)
    else:
        jac = torch.stack(
            [
                torch.func.jacrev(lambda p, kw=kw: module(p.unsqueeze(0), **kw).squeeze(0))(point)
                for point, kw in zip(points, contexts, strict=True)
            ]
        )
    return torch.linalg.eigvals(jac.detach().reshape(len(points), dim, dim)).numpy().ravel()


def per_sample(context: Mapping, batch: int, i: int, rows: int = 1) -> dict:
    """Sample ``i``'s keyword context, for ``rows`` copies of it: a tensor whose first dimension is
    the batch is sliced (an attention mask per sample); any other value is given whole (position
    embeddings shared by the batch, numbers, None)."""
    return map_tensors(dict(context), lambda t: t[i : i + 1].expand(rows, *t.shape[1:]), _of_batch(batch))


def _of_batch(batch: int):
    """Whether a context tensor is per example: its first dimension is the batch."""
    return lambda t: t.dim() > 0 and t.shape[0] == batch


def _arnoldi_eigenvalues(
    module, points: torch.Tensor, k: int = 4, contexts: list[dict] | None = None
) -> np.ndarray:
    """Extreme eigenvalues of the Jacobian at each point, from matrix-vector products: the ``k``
    of largest modulus of ``J`` (radius ``r``), of ``J - r I`` (the leftmost, shifted back) and of
    ``J + r I`` (the rightmost). Only largest-modulus problems: ARPACK converges on them in a few
    dozen products, where asking for the smallest real part directly stalls on clustered spectra."""
    linalg = require("scipy.sparse.linalg", "estimating the spectra of layers wider than EXACT_LIMIT")

    shape = points.shape[1:]
    dim = math.prod(shape)
    found = []

    def largest(matvec) -> np.ndarray:
        return _largest_modulus(linalg, matvec, dim, k, maxiter=20 * dim)

    for i, p in enumerate(points):
        # J^T has J's eigenvalues, and J^T v is one vector-Jacobian product on a graph built once
        leaf = p.unsqueeze(0).detach().requires_grad_(True)
        with torch.enable_grad():
            out = module(leaf, **(contexts[i] if contexts is not None else {}))

        def product(v, leaf=leaf, out=out):
            cotangent = torch.from_numpy(np.ascontiguousarray(v.real, dtype=np.float64)).reshape(out.shape)
            (grad,) = torch.autograd.grad(out, leaf, cotangent, retain_graph=True)
            return grad.reshape(-1).numpy()

        top = largest(product)
        found.append(top)
        radius = float(np.abs(top).max(initial=0.0))
        if radius > 0:
            for shift in (radius, -radius):  # leftmost, then rightmost
                found.append(largest(lambda v, s=shift, product=product: product(v) - s * v) + shift)
    return np.concatenate(found) if found else np.zeros(0, complex)


TIGHT_RESTARTS = 300  # Arnoldi restarts allowed at the tight tolerance before the loose one is tried


def _largest_modulus(linalg, matvec, dim: int, k: int, maxiter: int | None = None) -> np.ndarray:
    """The ``k`` eigenvalues of largest modulus of the ``dim x dim`` operator ``matvec`` (ARPACK;
    what it found when it does not converge).

    The tolerance is tight (1e-6) because a loose one lets ARPACK declare convergence before an
    eigenvalue weakly present in the start vector emerges: at 1e-3 a clustered spectrum (moduli
    0.547, 0.541, 0.522) lost its largest member in about 1 run in 150. Where 1e-6 does not
    converge within ``TIGHT_RESTARTS`` restarts (moduli all equal, as a symplectic step's on the
    unit circle) 1e-3 is tried with ``maxiter``; the converged eigenvalues of the better attempt
    are returned, and none at all is refused (an empty answer reads as radius 0: "stable"). The
    start vector is fixed, so one network always gets one estimate (ARPACK's own start depends on
    how many calls the process made before)."""
    operator = linalg.LinearOperator((dim, dim), matvec=matvec, dtype=np.float64)
    start = np.random.default_rng(0).standard_normal(dim)
    wanted = min(k, dim - 2)
    partial = np.zeros(0, complex)
    tight = TIGHT_RESTARTS if maxiter is None else min(maxiter, TIGHT_RESTARTS)
    for tol, restarts in ((1e-6, tight), (1e-3, maxiter)):
        try:
            return linalg.eigs(
                operator,
                k=wanted,
                which="LM",
                return_eigenvectors=False,
                tol=tol,
                maxiter=restarts,
                v0=start,
            )
        except linalg.ArpackNoConvergence as exc:
            if exc.eigenvalues.size > partial.size:
                partial = exc.eigenvalues
    if partial.size == 0:
        raise ConvergenceError(
            f"ARPACK found none of the {wanted} largest eigenvalues of a {dim}-dimensional Jacobian "
            "(a spectrum of many equal moduli converges slowly); compute the spectrum exactly "
            f"instead: trained_stability(..., exact_limit={dim}) in Python",
            solve="eigenvalues",
        )
    return partial


def first_calls(
    model: Classifier, x: torch.Tensor, states: dict | None = None
) -> dict[tuple[int, int], dict[str, tuple]]:
    """For each layer ``(stage, layer in the stage)``: the arguments of the first call of each
    function, from one forward pass of ``x`` (and each layer's input state into ``states``)."""
    seen: dict[tuple[int, int], dict[str, tuple]] = {}

    def observe(stage: int, layer: int, name: str, args: tuple) -> None:
        seen.setdefault((stage, layer), {}).setdefault(name, args)

    def before_layer(stage: int, layer: int, state: tuple) -> None:
        if states is not None:
            states[stage, layer] = state

    with torch.no_grad():
        model.features(x, observe, before_layer)
    return seen


class LinearizedStep:
    """Layer ``n``'s step linearized at frozen points: every call of a function replaced by that
    function's Jacobian at its first evaluation point (``calls``), so that ``step(rows)`` is the
    joint linearization applied to each example's state perturbation (one row each, flattened over
    the state's parts). The step must be linear in its state apart from the calls, as every scheme
    of the language is. Jacobian products by the double-backward trick (every operation with a
    gradient has one; forward-mode AD does not cover them all), on one graph per function built
    here: ``state`` and ``calls`` hold one row per example the rows will be."""

    def __init__(self, block, n: int, state: tuple, calls: dict[str, tuple], context: Mapping | None = None):
        self.block = block
        self.params = {k: v.detach() for k, v in block.layer_params(n).items()}
        self.shapes = [s.shape[1:] for s in state]
        self.sizes = [math.prod(shape) for shape in self.shapes]
        self.dim = sum(self.sizes)
        self.batch, self.device, self.dtype = len(state[0]), state[0].device, state[0].dtype
        self.parts = {}
        with torch.enable_grad():
            for name, args in calls.items():
                leaves = tuple(a.detach().contiguous().requires_grad_(True) for a in args)
                out = block.function(name, n)(*leaves, **(context or {}))
                dual = torch.zeros_like(out, requires_grad=True)
                self.parts[name] = (torch.autograd.grad(out, leaves, dual, create_graph=True), dual)

    def __call__(self, rows: torch.Tensor, graph: bool = False) -> torch.Tensor:
        """The linearized step on ``rows`` (examples x state size); with ``graph``, differentiable in
        the functions' weights."""

        def call(key, name, *args):
            transposed, dual = self.parts[name]
            (product,) = torch.autograd.grad(transposed, dual, args, retain_graph=True, create_graph=graph)
            return product  # J args

        batch = len(rows)
        parts = tuple(
            p.reshape(batch, *shape) for p, shape in zip(rows.split(self.sizes, 1), self.shapes, strict=True)
        )
        with torch.enable_grad() if graph else torch.no_grad():
            new = self.block.code.step(parts, self.params, call)
        return torch.cat([s.reshape(batch, -1) for s in new], dim=1)


def _joint_amplification(
    block, n: int, state: tuple, calls: dict[str, tuple], exact_limit: int, context: Mapping | None = None
) -> np.ndarray:
    """Eigenvalues of layer ``n``'s joint linearization at each sample (pooled). Exact up to
    ``exact_limit`` state dimensions; above, the largest in modulus (ARPACK). ``context``: the
    block's keyword arguments (taken per sample, :func:`per_sample`)."""
    from odenet.errors import ConfigError

    found = []
    for i in range(len(state[0])):

        def at(rows: int, i=i) -> LinearizedStep:  # sample i's linearization, for that many rows
            def repeat(t: torch.Tensor) -> torch.Tensor:
                return t[i : i + 1].expand(rows, *t.shape[1:])

            frozen = {name: tuple(repeat(a) for a in args) for name, args in calls.items()}
            sample = per_sample(context, len(state[0]), i, rows) if context else None
            return LinearizedStep(block, n, tuple(repeat(s) for s in state), frozen, sample)

        check = at(3)
        dim, dtype = check.dim, state[0].dtype
        probe = torch.randn(2, dim, dtype=dtype, generator=torch.Generator().manual_seed(i))
        image = check(torch.stack([probe[0] + 2 * probe[1], probe[0], probe[1]]))
        mixed = image[0] - image[1] - 2 * image[2]
        if float(mixed.abs().max()) > 1e-8 * (1 + float(image[1:].abs().max())):
            raise ConfigError(
                f"scheme {block.scheme.name}: the step is not linear in its state apart from the "
                "function calls, so it has no joint linearization (amplification matrix) to judge"
            )
        if dim <= exact_limit:
            matrix = at(dim)(torch.eye(dim, dtype=dtype)).T
            found.append(torch.linalg.eigvals(matrix).numpy())
        else:
            found.append(_largest_eigenvalues(at(1), dim, dtype))
    return np.concatenate(found) if found else np.zeros(0, complex)


def _largest_eigenvalues(linear, dim: int, dtype: torch.dtype, k: int = 4) -> np.ndarray:
    linalg = require("scipy.sparse.linalg", "the joint linearization of wide trained layers")

    def matvec(v):
        row = torch.from_numpy(np.ascontiguousarray(v.real, dtype=np.float64)).to(dtype).reshape(1, dim)
        return linear(row).reshape(-1).double().numpy()

    return _largest_modulus(linalg, matvec, dim, k)


def default_samples(model: Classifier, example: torch.Tensor) -> int:
    """How many inputs to linearize at: 16 where exact spectra are cheap, 4 where the states are
    wider than ``EXACT_LIMIT`` and Arnoldi estimates cost more per input."""
    seen = first_calls(model, example[:1])
    size = max((math.prod(a[0].shape[1:]) for calls in seen.values() for a in calls.values()), default=0)
    return 16 if size <= EXACT_LIMIT else 4


class _Stack(torch.nn.Module):
    """A compiled block with its keyword context, seen as a one-stage classifier's features."""

    def __init__(self, block):
        super().__init__()
        self.block = block
        self.context: dict = {}  # set once the block is copied in float64

    @property
    def scheme(self) -> Scheme:
        return self.block.scheme

    @property
    def stages(self) -> list:
        return [self.block]

    def features(self, x, observe, before_layer=None):
        block, context = self.block, Context(self.context)
        state = block.initial_state(x, context)
        for n in range(block.depth):
            if before_layer is not None:
                before_layer(0, n, state)

            def call(key, name, *args, n=n):
                observe(0, n, name, args)
                return block.function(name, n)(*args, **context.kwargs)

            # an implicit layer's solve calls the functions with the context too (not only ``call``)
            state = block.step(n, state, call, context)
        return block.output(state)


class _Captured(Exception):  # noqa: N818 - not an error: the forward pass stops once the block's input is seen
    pass


def block_call(model: torch.nn.Module, block, *args, **kwargs) -> tuple[torch.Tensor, dict]:
    """The input and keyword arguments ``block`` receives when ``model(*args, **kwargs)`` runs (the
    model runs up to the block, without gradients)."""
    seen: list = []

    def hook(module, hook_args, hook_kwargs):
        kwargs = dict(hook_kwargs)
        x = hook_args[0] if hook_args else kwargs.pop("x", None)
        seen.append((x, kwargs))
        raise _Captured

    handle = block.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not seen:
        from odenet.errors import ConfigError

        raise ConfigError(
            "the model's forward pass did not call the block given: pass a block inside the model"
        )
    return seen[0]


def _float64(value):
    """``value`` with its tensors detached, the floating-point ones in float64."""
    return map_tensors(value, lambda t: t.detach().double() if t.is_floating_point() else t.detach())


def first_examples(context: Mapping, batch: int, count: int) -> dict:
    """The context of the first ``count`` examples of a batch of ``batch``: a tensor whose first
    dimension is the batch is cut; others are given whole."""
    return map_tensors(dict(context), lambda t: t[:count], _of_batch(batch))


def trained_stability(
    model,
    x: torch.Tensor,
    exact_limit: int = EXACT_LIMIT,
    joint: bool | None = None,
    *,
    context: Mapping | None = None,
    block=None,
    samples: int | None = None,
) -> TrainedStability:
    """The spectra of the layers at the inputs ``x`` (a few examples), against the scheme's
    stability region.

    ``model`` is a classifier odenet built (``x``: its inputs), or a compiled block
    (:class:`~odenet.nn.SchemeBlock`) inside any model, with ``x`` the block's input and
    ``context`` its keyword arguments (``block(x, **context)``); or any model with ``block`` a block
    inside it, ``x`` the model's input: the block's input and keyword arguments are then taken from
    one forward pass of the model. A context tensor whose first dimension is the batch is taken per
    example (an attention mask); others are given whole (position embeddings), so give a table
    shared by the batch a leading dimension of 1. ``samples``: judge at the first ``samples``
    examples only (which tensors are per example is decided on the whole batch). ``joint``: judge the
    layers by their joint linearization (default: where the scheme has several functions or a
    function of several arguments; implicit schemes are judged on the region)."""
    if block is not None:
        if context:
            from odenet.errors import ConfigError

            raise ConfigError("with block=..., the block's context comes from the model's forward pass")
        x, context = block_call(model, block, x)
        model = block
    if samples is not None:
        context = first_examples(context or {}, len(x), samples)
        x = x[:samples]
    if not isinstance(model, Classifier):
        from odenet.nn import SchemeBlock

        if not isinstance(model, SchemeBlock):
            from odenet.errors import ConfigError

            raise ConfigError(
                "trained_stability takes a classifier odenet built, a compiled block (odenet.compile) with "
                f"its input, or a model and block=the block inside it; not a {type(model).__name__} alone"
            )
        model = _Stack(model)
    context = _float64(dict(context or {}))
    model = copy.deepcopy(model).double().eval()
    if isinstance(model, _Stack):
        model.context = context
    elif context:
        from odenet.errors import ConfigError

        raise ConfigError("a classifier odenet built takes no context: its blocks are called with x alone")
    x = x.double()
    regions = _Regions(model.scheme)
    # each example's keyword context, for every layer's function (points have the batch's length)
    contexts = [per_sample(context, len(x), i) for i in range(len(x))] if context else None
    states: dict[tuple[int, int], tuple] = {}
    seen = first_calls(model, x, states)
    if joint is None:
        several = len(model.scheme.functions) > 1 or any(
            len(args) > 1 for calls in seen.values() for args in calls.values()
        )
        joint = several and model.scheme.is_explicit
    elif joint and not model.scheme.is_explicit:
        from odenet.errors import ConfigError

        raise ConfigError(
            f"scheme {model.scheme.name} is implicit: its joint linearization (through the solve) is not "
            "offered; its layers are judged by their functions' eigenvalues on the region"
        )
    order = [(s, n, block) for s, block in enumerate(model.stages) for n in range(block.depth)]
    layers = []
    middle = None
    for layer_index, (stage, n, block) in enumerate(order):
        # parameters are stored in the training dtype: 7 significant digits say what float32 holds
        params = {k: float(f"{float(v.detach()):.7g}") for k, v in block.layer_params(n).items()}
        numeric, scale = regions.at(params)
        values, method = [], "exact"
        for name, args in seen.get((stage, n), {}).items():
            if len(args) != 1:
                continue  # functions of several arguments have no single Jacobian to place
            module = block.function(name, n)
            points = args[0].detach()
            if math.prod(points.shape[1:]) <= exact_limit:
                values.append(_exact_eigenvalues(module, points, contexts))
            else:
                values.append(_arnoldi_eigenvalues(module, points, contexts=contexts))
                method = "arnoldi"
        eigenvalues = np.concatenate(values) if values else np.zeros(0, complex)
        radii = numeric.radius(eigenvalues) if eigenvalues.size else np.zeros(0)
        outside = radii > 1 + OUTSIDE_TOL
        amplification = None
        if joint:
            calls = seen.get((stage, n), {})
            amplification = _joint_amplification(block, n, states[stage, n], calls, exact_limit, context)
        layers.append(
            LayerSpectrum(
                layer_index,
                stage,
                params,
                scale,
                eigenvalues,
                outside,
                method,
                amplification,
                float(radii.max(initial=0.0)),
            )
        )
        if layer_index == len(order) // 2:
            middle = (numeric, scale)
    region, region_scale = middle if middle is not None else (None, 1.0)
    return TrainedStability(
        model.scheme, format_expr(regions.variable), len(x), tuple(layers), region, region_scale
    )
