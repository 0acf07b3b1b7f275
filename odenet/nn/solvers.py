"""Root finders that know no scheme: fixed-point iteration, Anderson acceleration and Newton-GMRES
on ``(batch, features)`` matrices, and :class:`Solver`, the options an implicit layer or a
fixed-point inverse solves with (see ``implicit.py`` for how layers use them).

A solve stops when the largest relative residual of one unknown of one sample is at most ``tol``,
stagnates (``PATIENCE`` iterations without a better residual) or meets a non-finite value; it
returns an :class:`Outcome` and leaves the judgement (refuse or accept) to its caller.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

from odenet.errors import ConfigError
from odenet.options import SolverMethod, choices

__all__ = [
    "SOLVER_METHODS",
    "Flat",
    "Outcome",
    "SolveInfo",
    "Solver",
    "check_solver",
    "gmres",
    "relative_residual",
    "solve",
]

SOLVER_METHODS = choices(SolverMethod)


@dataclass(frozen=True)
class Solver:
    """How an implicit layer solves its step and its adjoint system.

    ``method``: ``"anderson"``, ``"newton"`` or ``"fixed_point"`` (see the module doc); ``tol``: the
    relative residual to reach; ``max_iter``: iterations allowed (Newton: corrections, each with
    up to ``krylov`` GMRES steps per restart); ``memory``: Anderson's history. The adjoint solve
    uses the same method with ``backward_tol`` and ``backward_max_iter`` (by default the forward's).
    """

    method: SolverMethod = "anderson"
    tol: float = 1e-6
    max_iter: int = 100
    memory: int = 5
    krylov: int = 30
    backward_tol: float | None = None
    backward_max_iter: int | None = None

    def __post_init__(self):
        if self.method not in SOLVER_METHODS:
            raise ConfigError(
                f"solver method must be one of {', '.join(SOLVER_METHODS)}, not {self.method!r}"
            )
        for name in ("tol", "backward_tol"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1):
                raise ConfigError(f"solver {name} must be a number in (0, 1), not {v!r}")
        for name, low in (("max_iter", 1), ("memory", 1), ("krylov", 1), ("backward_max_iter", 1)):
            v = getattr(self, name)
            if v is None and name == "backward_max_iter":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"solver {name} must be a whole number >= {low}, not {v!r}")

    @property
    def adjoint_max_iter(self) -> int:
        return self.max_iter if self.backward_max_iter is None else self.backward_max_iter


def check_solver(solver) -> Solver:
    """A :class:`Solver` from ``None`` (the defaults), a method's name, or a Solver."""
    if solver is None:
        return Solver()
    if isinstance(solver, str):
        return Solver(method=solver)  # type: ignore[arg-type]
    if isinstance(solver, Solver):
        return solver
    raise ConfigError(
        f"solver must be a method's name ({', '.join(SOLVER_METHODS)}) or a Solver, not {solver!r}"
    )


class SolveInfo(NamedTuple):
    """One solve of one layer: iterations (Newton: corrections), evaluations of ``G`` or of its
    Jacobian products, and the relative residual reached."""

    layer: int
    iterations: int
    evaluations: int
    residual: float


# -- tensors as one (batch, features) matrix ---------------------------------------------------------


class Flat:
    """A tuple of tensors (the unknowns) as one ``(batch, features)`` matrix and back. The batch is
    dimension 0 when every tensor has it; otherwise the whole is one sample."""

    def __init__(self, tensors: tuple[torch.Tensor, ...]):
        self.shapes = [t.shape for t in tensors]
        first = tensors[0]
        batched = all(t.dim() >= 1 and t.shape[0] == first.shape[0] for t in tensors) and first.dim() >= 1
        self.batch = first.shape[0] if batched else 1
        self.sizes = [t.numel() // self.batch for t in tensors]

    def flat(self, tensors) -> torch.Tensor:
        return torch.cat([t.reshape(self.batch, -1) for t in tensors], dim=1)

    def split(self, matrix: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = matrix.split(self.sizes, dim=1)
        return tuple(p.reshape(s) for p, s in zip(parts, self.shapes, strict=True))


def relative_residual(new: torch.Tensor, old: torch.Tensor, sizes: tuple[int, ...] | None = None) -> float:
    """The largest relative change of one unknown of one sample (NaN when a value is not finite):
    each unknown is measured against its own size (at least a millionth of the sample's), so that a
    small state beside a large one is solved as accurately."""
    if not torch.isfinite(new).all():
        return math.nan
    tiny = torch.finfo(new.dtype).tiny
    whole = new.norm(dim=1, keepdim=True)
    parts = (
        zip(new.split(list(sizes), dim=1), old.split(list(sizes), dim=1), strict=True)
        if sizes
        else [(new, old)]
    )
    worst = 0.0
    for a, b in parts:
        scale = torch.maximum(a.norm(dim=1, keepdim=True), 1e-6 * whole).clamp_min(tiny)
        worst = max(worst, float(((a - b).norm(dim=1, keepdim=True) / scale).max()))
    return worst


# -- the solvers, on (batch, features) matrices ------------------------------------------------------


class Outcome(NamedTuple):
    """A solve's result: the solution, what it cost and the relative residual reached (``repr``
    gives the solution's shape, not its values)."""

    value: torch.Tensor
    iterations: int
    evaluations: int
    residual: float
    stagnated: bool = False  # stopped because iterating no longer lowered the residual (rounding)

    def __repr__(self) -> str:
        shape = " x ".join(map(str, self.value.shape))
        return (
            f"Outcome(value: {shape} {str(self.value.dtype).removeprefix('torch.')}, "
            f"iterations={self.iterations}, evaluations={self.evaluations}, residual={self.residual:.3g})"
        )


PATIENCE = 6  # iterations without a better residual after which a solve has stagnated (rounding)
GMRES_PATIENCE = 3  # restarts without a better true residual after which GMRES has stagnated


class _Best:
    """The iterate with the smallest residual so far, and whether the solve has stagnated."""

    def __init__(self, patience: int = PATIENCE):
        self.value: torch.Tensor | None = None
        self.residual, self.since, self.patience = math.inf, 0, patience

    @property
    def stalled(self) -> bool:
        return self.since >= self.patience

    def update(self, value: torch.Tensor, residual: float) -> bool:
        """Record an iterate; True when the last ``patience`` ones did not improve on the best."""
        if residual < self.residual:
            self.value, self.residual, self.since = value, residual, 0
        else:
            self.since += 1
        return self.stalled


def iterate(g: Callable, u: torch.Tensor, tol: float, max_iter: int, sizes=None) -> Outcome:
    best = _Best()
    for k in range(1, max_iter + 1):
        gu = g(u)
        residual = relative_residual(gu, u, sizes)
        u = gu
        if residual <= tol or not math.isfinite(residual):
            return Outcome(u, k, k, residual)
        if best.update(gu, residual):
            break
    return Outcome(best.value if best.value is not None else u, k, k, best.residual, best.stalled)


def anderson(g: Callable, u: torch.Tensor, tol: float, max_iter: int, memory: int, sizes=None) -> Outcome:
    """Anderson acceleration (type II) of ``u <- g(u)``: one mixing for the whole batch, since a
    function may couple the samples (batch normalization), where mixing each sample on its own
    stagnates."""
    shape = u.shape
    xs = u.new_zeros(memory, u.numel())
    gs = u.new_zeros(memory, u.numel())
    best = _Best()
    for k in range(1, max_iter + 1):
        gu = g(u)
        residual = relative_residual(gu, u, sizes)
        if residual <= tol or not math.isfinite(residual):
            return Outcome(gu, k, k, residual)
        if best.update(gu, residual):
            break
        slot = (k - 1) % memory
        xs[slot], gs[slot] = u.reshape(-1), gu.reshape(-1)
        n = min(k, memory)
        if n == 1:
            u = gu
            continue
        r = (gs[:n] - xs[:n]).double()
        gram = r @ r.T
        scale = float(gram.diagonal().mean()) or 1e-300
        gram = gram + 1e-10 * scale * torch.eye(n, dtype=gram.dtype, device=gram.device)
        weights = torch.linalg.solve(gram, torch.ones(n, 1, dtype=gram.dtype, device=gram.device))
        weights = (weights / weights.sum()).to(u.dtype)
        u = (weights.T @ gs[:n]).reshape(shape)
        if not torch.isfinite(u).all():  # a singular mixing: plain iteration instead
            u = gu
    return Outcome(best.value if best.value is not None else u, k, k, best.residual, best.stalled)


def gmres(matvec: Callable, b: torch.Tensor, tol: float, max_matvecs: int, restart: int):
    """Solve ``matvec(x) = b`` (flat vectors) by restarted GMRES to the relative residual ``tol``:
    ``(x, matrix-vector products used, restarts, relative residual, stagnated)``: ``GMRES_PATIENCE``
    restarts in a row that do not lower the best true residual stop it (stagnated: in float32 a
    restart can end a little above the last one and the next still converge), and the best ``x``
    is returned."""
    x = torch.zeros_like(b)
    norm_b = float(b.norm())
    if norm_b == 0.0 or not math.isfinite(norm_b):
        return x, 0, 0, 0.0 if norm_b == 0.0 else math.nan, False
    used, cycles = 0, 0
    best = _Best(GMRES_PATIENCE)
    r = b
    while True:
        beta = float(r.norm())
        relative = beta / norm_b
        stalled = best.update(x, relative)
        if relative <= tol or not math.isfinite(relative):
            return x, used, cycles, relative, False
        if used >= max_matvecs or stalled:
            return best.value, used, cycles, best.residual, stalled
        cycles += 1
        basis = [r / beta]
        hessenberg = torch.zeros(restart + 1, restart, dtype=torch.float64)
        y = torch.zeros(0, dtype=torch.float64)
        for j in range(restart):
            w = matvec(basis[j])
            used += 1
            for i in range(j + 1):  # modified Gram-Schmidt
                hessenberg[i, j] = float(torch.dot(w, basis[i]))
                w = w - hessenberg[i, j].item() * basis[i]
            hessenberg[j + 1, j] = float(w.norm())
            rhs = torch.zeros(j + 2, dtype=torch.float64)
            rhs[0] = beta
            small = hessenberg[: j + 2, : j + 1]
            y = torch.linalg.lstsq(small, rhs[:, None]).solution[:, 0]
            estimate = float((small @ y - rhs).norm()) / norm_b
            breakdown = hessenberg[j + 1, j].item() <= 1e-14 * beta
            if not breakdown:
                basis.append(w / hessenberg[j + 1, j].item())
            if estimate <= tol or breakdown or used >= max_matvecs:
                break
        for coefficient, v in zip(y.tolist(), basis, strict=False):
            x = x + coefficient * v
        r = b - matvec(x)
        used += 1


def newton(
    g: Callable, jvp: Callable, u: torch.Tensor, tol: float, max_iter: int, krylov: int, sizes=None
) -> Outcome:
    """Newton's method on ``u - g(u) = 0``; each correction by GMRES with ``jvp(u, v) = (dg/du) v``,
    damped by backtracking (halving the correction until the residual falls, at most 8 times) so
    that a start outside the region of quadratic convergence does not throw the iterate away."""
    gu = g(u)
    evaluations = 1
    best = _Best()
    residual = relative_residual(gu, u, sizes)
    for k in range(1, max_iter + 1):
        if residual <= tol or not math.isfinite(residual):
            return Outcome(gu, k, evaluations, residual)
        if best.update(gu, residual):
            break
        here = u

        def matvec(v, here=here):
            return v - jvp(here, v.view_as(here)).reshape(-1)

        forcing = max(min(0.1, residual), tol / 10)  # inexact Newton: looser far from the solution
        step, used, *_ = gmres(matvec, (gu - u).reshape(-1), forcing, 4 * krylov, krylov)
        evaluations += used
        norm = float((gu - u).norm())
        scale = 1.0
        for _ in range(9):
            candidate = u + scale * step.view_as(u)
            g_candidate = g(candidate)
            evaluations += 1
            if float((g_candidate - candidate).norm()) < (1 - 1e-4 * scale) * norm or scale < 2**-7:
                break
            scale /= 2
        u, gu = candidate, g_candidate
        residual = relative_residual(gu, u, sizes)
    if residual <= tol:
        return Outcome(gu, max_iter, evaluations, residual)
    value = best.value if best.value is not None else gu
    return Outcome(value, k, evaluations, min(best.residual, residual), best.stalled)


def solve(
    method: str, g: Callable, jvp: Callable | None, u: torch.Tensor, solver: Solver, tol, max_iter, sizes
):
    if method == "fixed_point":
        return iterate(g, u, tol, max_iter, sizes)
    if method == "anderson":
        return anderson(g, u, tol, max_iter, solver.memory, sizes)
    assert jvp is not None
    return newton(g, jvp, u, tol, max_iter, solver.krylov, sizes)
