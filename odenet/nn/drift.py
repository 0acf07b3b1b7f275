"""Drift control of ``memory="reversible"``: where to keep exact copies of the state so that rebuilt
inputs stay accurate (see ``modes/reversible.py`` for the guard that measures them).

An inverse that divides (momentum: ``v[n] = (v[n+1] - (1-gamma) f(x[n]))/gamma``) multiplies
rounding error by its backward amplification ``a`` (spectral radius of ``M(0)^-1``) per layer, and
any inverse multiplies it by the growth of the backward dynamics, which depends on the functions'
Jacobians. :class:`DriftControl` plans exact copies so that the growth it expects (``a`` per layer,
or the growth the guard measured on earlier passes, whichever is larger) keeps the error under a
quarter of the tolerance between two copies (a sixteenth with the raise guard).
"""

from __future__ import annotations

import math

import numpy as np
import sympy
import torch

from odenet.errors import ConfigError
from odenet.nn.layers import Layers
from odenet.nn.rebuild import to_host
from odenet.nn.replay import AutocastState
from odenet.options import Guard, choices

__all__ = ["DEFAULT_GROWTH", "GUARDS", "PLAN_MARGIN", "DriftControl", "check_guard", "check_tolerance"]

GUARDS = choices(Guard)

# Accepted relative error of a rebuilt state, by default: rounding may grow 100-fold (two digits)
# before a copy restores the state (1.2e-5 in float32, 2.2e-14 in float64).
DEFAULT_GROWTH = 100.0
# Copies are planned for an error of tolerance / PLAN_MARGIN, so that the guard rarely has to act:
# the amplification a = rho(M(0)^-1) ignores the functions (momentum, gamma = 0.9, float32: measured
# growth 1.17 per layer where a = 1.11) and the rounding added at every layer; where it
# underestimates more than that, the guard measures it and the plan learns. The raise guard cannot
# repair, so it plans with a wider margin.
PLAN_MARGIN = {"adaptive": 4.0, "raise": 16.0}


class DriftControl:
    """Where to keep exact copies of the state so that rebuilt inputs stay accurate."""

    def __init__(self, layers: Layers, tolerance: float | None, guard: str = "adaptive"):
        self.tolerance = check_tolerance(tolerance)
        self.guard = check_guard(guard)
        self.depth = layers.depth
        self.reset()

    def reset(self) -> None:
        """Forget the measured growth and the cached amplifications."""
        self._matrix = None
        self._amplifications: np.ndarray | None = None
        self._source: tuple | None = None
        self.learned = np.ones(self.depth)  # growth per layer measured by the guard

    def __getstate__(self):
        return {**self.__dict__, "_matrix": None}  # sympy matrix: rebuilt on first use

    # -- the backward amplification of each layer, a(n) = rho(M(0)^-1) ----------------------------
    def _names(self, layers: Layers) -> list[str]:
        """The parameters M(0) depends on."""
        if self._matrix is None:
            from odenet.analysis.stability import LAMBDA, amplification_matrix

            self._matrix = amplification_matrix(layers.scheme).subs(LAMBDA, 0)
        return sorted(s.name for s in self._matrix.free_symbols)

    def device_values(self, layers: Layers) -> torch.Tensor:
        """The values of those parameters for every layer, on their device, as one float64 vector."""
        parts = [layers.parameter_values(name).to(torch.float64) for name in self._names(layers)]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)

    def refresh(self, layers: Layers, values) -> None:
        """Compute the amplifications from the parameters' values (``device_values``, on the host)."""
        from odenet.analysis.numeric import evaluate

        names = self._names(layers)
        matrix, depth = self._matrix, self.depth
        values = np.asarray(values, dtype=float)
        env = {
            sympy.Symbol(name, real=True): values[i * depth : (i + 1) * depth] for i, name in enumerate(names)
        }
        size = matrix.shape[0]
        stacked = np.empty((depth, size, size))
        for i in range(size):
            for j in range(size):
                stacked[:, i, j] = evaluate(matrix[i, j], env, {})
        with np.errstate(all="ignore"):
            determinants = np.linalg.det(stacked)
        out = np.full(depth, math.inf)
        regular = np.abs(determinants) > 1e-300
        if regular.any():
            out[regular] = np.abs(np.linalg.eigvals(np.linalg.inv(stacked[regular]))).max(axis=-1)
        self._amplifications = out
        self._source = self._identity(layers)

    def _identity(self, layers: Layers) -> tuple:
        tensors = [layers.parameter_tensor(name) for name in self._names(layers)]
        return tuple((id(t), t.data_ptr(), t.device, t.dtype, t._version) for t in tensors)

    def amplifications(self, layers: Layers) -> np.ndarray:
        """Backward amplification of each layer at the current parameter values. Learnable
        parameters are read from the device at every call (once per forward pass that plans; an
        optimizer step may move them without telling: fused optimizers leave version counters
        alone); fixed ones only when the tensors were replaced or written (``to()``,
        ``load_state_dict``)."""
        learnable = any(name in layers.raw_params for name in self._names(layers))
        if learnable or self._amplifications is None or self._source != self._identity(layers):
            self.refresh(layers, to_host(self.device_values(layers)))
        assert self._amplifications is not None
        return self._amplifications

    # -- the plan and what the guard learns ------------------------------------------------------
    def tolerance_for(self, dtype: torch.dtype, autocast: AutocastState | None = None) -> float:
        """The accepted relative error of a rebuilt state: ``drift_tolerance``, or 100 eps of the
        state's dtype. Under autocast to a lower precision the functions' own rounding sets the
        gradient's accuracy, and a rebuild may add a tenth of it: at least eps(compute dtype) / 10
        (a rebuild off by a whole eps made float16 gradients 1.8 times autograd's error)."""
        if self.tolerance is not None:
            return self.tolerance
        tolerance = DEFAULT_GROWTH * torch.finfo(dtype).eps
        compute = dtype if autocast is None else autocast.compute_dtype(dtype)
        return max(tolerance, torch.finfo(compute).eps / 10)

    def boundaries(self, layers: Layers, dtype: torch.dtype, tolerance: float | None = None) -> set[int]:
        """Layer boundaries (the input of layer j is boundary j) at which to keep an exact copy."""
        eps = torch.finfo(dtype).eps
        target = (self.tolerance_for(dtype) if tolerance is None else tolerance) / PLAN_MARGIN[self.guard]
        rates = np.maximum(self.amplifications(layers), self.learned)
        keep = {0}
        accumulated = 1.0
        for n in reversed(range(self.depth)):  # backward order: error grows from the output
            if accumulated * rates[n] * eps > target:
                keep.add(n + 1)
                accumulated = 1.0
            accumulated *= rates[n]
        keep.discard(self.depth)
        return keep

    def learn(self, intervals, eps: float, tolerance: float) -> None:
        """Remember the growth per layer of every interval ``(low, high, error)`` whose measured
        error passed the planned one, so that later plans keep copies closer together."""
        for low, high, error in intervals:
            if not error <= tolerance / PLAN_MARGIN[self.guard]:  # NaN included
                growth = (error / eps) ** (1 / (high - low)) if math.isfinite(error) else math.inf
                self.learned[low:high] = np.maximum(self.learned[low:high], growth)


def check_guard(guard) -> Guard:
    if guard not in GUARDS:
        raise ConfigError(f"guard must be one of {', '.join(GUARDS)}, not {guard!r}")
    return guard


def check_tolerance(tolerance) -> float | None:
    if tolerance is not None and not float(tolerance) > 0:
        raise ConfigError(f"drift_tolerance must be a number > 0, not {tolerance!r}")
    return None if tolerance is None else float(tolerance)
