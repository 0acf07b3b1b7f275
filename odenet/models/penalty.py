"""Stability-aware training: regularizers on each layer's linear stability. :class:`StabilityPenalty`
keeps each layer's ``h*lambda`` inside the scheme's stability interval (below);
:class:`GrowthPenalty` keeps the growth per step of each layer's joint linearization at most 1.

The analysis gives the interval of the real axis where the test equation ``f(u) = lambda*u`` keeps a
step power-bounded (``[-2, 0]`` in ``h*lambda`` for Euler, ``[0, 4]`` in ``h**2*lambda`` for
leapfrog, written with ``- h**2*f``; only ``{0}`` for the two-step midpoint rule, which is stable on
an interval of the imaginary axis instead). In a trained network the role of ``lambda`` is played by
the eigenvalues of each function's Jacobian at the points where the layer evaluates it (what
``odenet stability`` measures exactly). The penalty bounds them through the field of values of
``J``, which holds every eigenvalue: the real parts of ``J``'s eigenvalues lie between the smallest
and the largest eigenvalue of its symmetric part ``S = (J + J^T) / 2``. Per example, at a few
examples of the batch:

* ``low`` and ``high``: those two ends, each by ``steps`` power-iteration steps (on ``S``, whose
  products are one Jacobian-vector and one vector-Jacobian product, then on ``S`` shifted by the end
  found first), read as Rayleigh quotients;
* ``rho = |J^T v|`` at the first unit vector: about the spectral radius.

The penalty is the mean over layers, functions and examples of
``max(0, lower - scale*low)**2 + max(0, scale*high - upper)**2 + max(0, scale*rho - reach)**2``, where
``[lower, upper]`` is the real stability interval, ``scale`` is ``h``, ``h**2`` or 1 at the layer's
own parameter values (the region's variable over ``lambda``) and ``reach`` is how far the stability
region extends from 0 along the axes (the largest finite end of the real and imaginary intervals; no
bound when an interval is unbounded). It is zero when the estimated extent sits inside the interval,
and differentiable in the weights (the last products keep their graphs; the points themselves are
detached, so earlier layers are not pushed through them). A first version estimated only the
dominant eigenvalue (a Rayleigh quotient on ``J``); on a tanh network with Euler at ``h = 1`` it left
every layer with half its eigenvalues outside the region (positive real parts beside a dominant
negative one), which is why the whole real extent is bounded. It is a proxy: the verdict of
``odenet stability`` (every eigenvalue, the exact region) is what says whether it worked; where
the region is thin around the real axis (leapfrog's is the segment ``[0, 4]`` of ``h**2*lambda``),
bounded real parts do not keep complex eigenvalues inside.

The functions are evaluated in eval mode (BatchNorm with its running statistics, no dropout), as
``odenet stability`` linearizes them, so the penalty's forward pass moves no running statistic.
The intervals are those of the analysis at the model's configured parameter values; learnable
coefficients other than the step are not followed as they train.
"""

from __future__ import annotations

import contextlib

import sympy
import torch

from odenet.errors import ConfigError
from odenet.models.classifier import Classifier
from odenet.models.spectra import LinearizedStep, first_calls

__all__ = ["GrowthPenalty", "StabilityPenalty"]


class StabilityPenalty:
    """``penalty(x)``: the regularizer above for ``model`` at the inputs ``x`` (the first ``samples``
    of them). Build once per training run (it analyzes the scheme)."""

    def __init__(self, model: Classifier, samples: int = 8, steps: int = 4):
        from odenet.analysis import analyze

        if samples < 1 or steps < 1:
            raise ConfigError(
                f"the stability penalty needs samples >= 1 and steps >= 1, not {samples}, {steps}"
            )
        self.model = model
        self.samples = samples
        self.steps = steps
        block = model.stages[0]
        params = {k: float(v.detach()) for k, v in block.layer_params(0).items()}
        stability = analyze(model.scheme, params).stability
        if stability.real_interval is None:
            raise ConfigError(
                f"--stability-penalty: scheme {model.scheme.name} is not stable even at lambda = 0 with "
                f"its parameters {params}, so there is no stability interval to keep the layers inside"
            )
        # ends in the region's variable (scale * lambda): independent of h where h factors out
        self.lower, self.upper = (None if e is None else float(e) for e in stability.real_interval)
        ends = [e for i in (stability.real_interval, stability.imag_interval) if i is not None for e in i]
        unbounded = any(e is None for e in ends)
        self.reach = None if unbounded else max(abs(float(e)) for e in ends)
        self.variable = stability.variable
        self._scales: dict[tuple, float] = {}

    def scale(self, params: dict[str, torch.Tensor]) -> float:
        """The region's variable over ``lambda`` (``h``, ``h**2`` or 1) at one layer's parameters."""
        values = {name: float(value.detach()) for name, value in params.items()}
        key = tuple(sorted((k, float(f"{v:.7g}")) for k, v in values.items()))
        if key not in self._scales:
            from odenet.analysis.stability import LAMBDA

            subs = {sympy.Symbol(k, real=True): v for k, v in key}
            self._scales[key] = float(self.variable.subs(LAMBDA, 1).evalf(subs=subs))
        return self._scales[key]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        terms = []
        with _evaluating(model):
            for (stage, n), calls in first_calls(model, x[: self.samples]).items():
                block = model.stages[stage]
                scale = self.scale(block.layer_params(n))
                for name, args in calls.items():
                    if len(args) != 1:
                        continue  # a function of several arguments has no single Jacobian to bound
                    low, high, rho = _extent(block.function(name, n), args[0], self.steps)
                    term = torch.zeros_like(low)
                    if self.lower is not None:
                        term = term + torch.relu(self.lower - scale * low).square()
                    if self.upper is not None:
                        term = term + torch.relu(scale * high - self.upper).square()
                    if self.reach is not None:
                        term = term + torch.relu(scale * rho - self.reach).square()
                    terms.append(term.mean())
        if not terms:
            return x.new_zeros(())
        return torch.stack(terms).mean()


@contextlib.contextmanager
def _evaluating(model: Classifier):
    """``model`` in eval mode for the block, its own mode restored after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _extent(module: torch.nn.Module, point: torch.Tensor, steps: int) -> tuple[torch.Tensor, ...]:
    """Per example: the ends ``low``, ``high`` of the real extent of the field of values of the
    Jacobian ``J`` of ``module`` at ``point`` (the extreme eigenvalues of its symmetric part ``S``;
    every eigenvalue of ``J`` has its real part between them), each by ``steps`` power-iteration
    steps (on ``S``, then on ``S`` shifted by the end found first), and ``rho = |J^T v|`` at the
    first unit vector. The returned values are differentiable in the module's weights."""
    dims = tuple(range(1, point.dim()))

    def normalized(u: torch.Tensor) -> torch.Tensor:
        return u / u.flatten(1).norm(dim=1).clamp_min(1e-30).reshape((-1,) + (1,) * len(dims))

    generator = torch.Generator(device=point.device).manual_seed(0)
    starts = torch.randn((2, *point.shape), generator=generator, device=point.device, dtype=point.dtype)
    leaf = point.detach().requires_grad_(True)
    with torch.enable_grad():
        out = module(leaf)
        dual = torch.zeros_like(out, requires_grad=True)
        (transposed,) = torch.autograd.grad(out, leaf, dual, create_graph=True)  # J^T dual: linear in dual

        def symmetric(v: torch.Tensor) -> torch.Tensor:  # S v = (J v + J^T v) / 2, without a graph
            (jt,) = torch.autograd.grad(out, leaf, v, retain_graph=True)
            (j,) = torch.autograd.grad(transposed, dual, v, retain_graph=True)  # double backward: J v
            return (j + jt) / 2

        v = normalized(starts[0])
        for _ in range(steps):
            v = normalized(symmetric(v))
        first = (v * symmetric(v)).sum(dim=dims).reshape((-1,) + (1,) * len(dims))
        w = normalized(starts[1])
        for _ in range(steps):
            w = normalized(symmetric(w) - first * w)
        (u,) = torch.autograd.grad(out, leaf, v, create_graph=True)
        (z,) = torch.autograd.grad(out, leaf, w, create_graph=True)
    # <v, S v> = <v, J^T v>: the Rayleigh quotients, with their graphs to the weights
    ends = torch.stack([(u * v).sum(dim=dims), (z * w).sum(dim=dims)])
    return ends.min(dim=0).values, ends.max(dim=0).values, u.flatten(1).norm(dim=1)


class GrowthPenalty:
    """``penalty(x)``: the mean over layers and examples of ``max(0, g - 1)**2``, where ``g`` estimates
    the growth per step of each layer's joint linearization (the step's Jacobian in its state with
    every function replaced by its Jacobian at its evaluation point: what ``odenet stability``
    judges) by ``steps`` power-iteration steps on the linearized step, ``g = |L v|`` for the last
    unit iterate ``v``. Above the spectral radius for a non-normal ``L`` (``|L v| <= ||L||``): a
    conservative target. Explicit schemes only; the same eval-mode evaluation and fixed random
    start as :class:`StabilityPenalty`."""

    def __init__(self, model: Classifier, samples: int = 8, steps: int = 4):
        if samples < 1 or steps < 1:
            raise ConfigError(
                f"the stability penalty needs samples >= 1 and steps >= 1, not {samples}, {steps}"
            )
        if not model.scheme.is_explicit:
            raise ConfigError(
                f"--stability-target growth: scheme {model.scheme.name} is implicit, and the growth of "
                "its linearized step (through the solve) is not offered; use --stability-target interval"
            )
        self.model = model
        self.samples = samples
        self.steps = steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        model = self.model
        states: dict[tuple[int, int], tuple] = {}
        terms = []
        with _evaluating(model):
            for (stage, n), calls in first_calls(model, x[: self.samples], states).items():
                step = LinearizedStep(model.stages[stage], n, states[stage, n], calls)
                terms.append(torch.relu(_growth(step, self.steps) - 1).square().mean())
        if not terms:
            return x.new_zeros(())
        return torch.stack(terms).mean()


def _growth(step: LinearizedStep, steps: int) -> torch.Tensor:
    """Per example: ``|L v|`` after ``steps`` power-iteration steps on the linearized step ``L``
    (differentiable in the weights)."""
    generator = torch.Generator(device=step.device).manual_seed(0)
    v = torch.randn(step.batch, step.dim, generator=generator, device=step.device, dtype=step.dtype)
    for _ in range(steps):
        v = step(v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)).detach()
    return step(v / v.norm(dim=1, keepdim=True).clamp_min(1e-30), graph=True).norm(dim=1)
