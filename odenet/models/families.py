"""Residual-function families: the sub-networks that play ``f``, ``g``, ... in a compiled scheme.

Each family maps a state of ``width`` features (``mlp`` layout: ``[batch, width]``) or channels
(``conv`` layout: ``[batch, width, H, W]``; ``conv1d``: ``[batch, width, L]``) to a tensor of the
same shape; the convolutions are 3x3 (``conv``) or of length 3 (``conv1d``), padded to keep the size:

================  ======================================================================================
``mlp``           ``W2 s(W1 y + b1) + b2`` (two linear maps or convolutions)
``bn``            ``W2 relu(BN(W1 y))``: the conv-BN-ReLU-conv residual branch of a ResNet (BatchNorm1d
                  with linear maps in the ``mlp`` layout)
``chang``         ``K^T s(K y + b)``: one kernel and its transpose (Chang et al. 2018). With a
                  monotone ``s`` the Jacobian ``K^T diag(s') K`` is symmetric positive semidefinite
``antisymmetric`` ``s((W - W^T - eps I) y + b)``: a skew-symmetric map shifted by ``-eps I``, whose
                  eigenvalues lie on ``Re = -eps`` (Haber & Ruthotto 2017; Chang et al. 2019). In the
                  convolutional layouts ``W^T`` is the transposed convolution, the adjoint of ``W``
================  ======================================================================================

``contraction=c`` (``mlp`` and ``chang``) makes a function contractive, as invertible residual
networks do (Behrmann et al. 2019): every weight is spectrally normalized (``torch``'s
``spectral_norm``, one power-iteration step per training call) and the output is multiplied by
``c``, so that its Lipschitz constant is at most ``c`` (the activations are 1-Lipschitz; the power
iteration's estimate approaches the norm from below, so early in training it may pass ``c`` a
little). A step ``h*c < 1`` then makes the inverse of an explicit step such as Euler's a fixed
point that iteration finds, which ``memory="reversible"`` uses; the iteration refuses loudly
(``ConvergenceError``) where it does not converge.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 - the usual spelling

from odenet.errors import ConfigError
from odenet.options import Activation, Family, Layout, choices, spatial_dims

__all__ = ["ACTIVATIONS", "make_function"]

ACTIVATIONS: dict[Activation, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
}


class MLP(nn.Module):
    """``W2 s(W1 y + b1) + b2``."""

    def __init__(self, width: int, hidden: int, layout: str, activation: str):
        super().__init__()
        self.first = _linear(width, hidden, layout)
        self.second = _linear(hidden, width, layout)
        self.activation = activation

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.second(ACTIVATIONS[self.activation](self.first(y)))


class BNBranch(nn.Module):
    """``W2 relu(BN(W1 y))``: the residual branch of a ResNet (conv-BN-ReLU-conv)."""

    def __init__(self, width: int, hidden: int, layout: str):
        super().__init__()
        self.first = _linear(width, hidden, layout, bias=False)
        self.norm = nn.BatchNorm2d(hidden) if spatial_dims(layout) == 2 else nn.BatchNorm1d(hidden)
        self.second = _linear(hidden, width, layout)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.second(torch.relu(self.norm(self.first(y))))


class KernelTranspose(nn.Module):
    """``K^T s(K y + b)`` with one kernel ``K`` (Chang et al. 2018, eq. 5-8)."""

    def __init__(self, width: int, hidden: int, layout: str, activation: str):
        super().__init__()
        self.layout = layout
        self.activation = activation
        self.kernel = nn.Parameter(torch.empty((hidden, width) + (3,) * spatial_dims(layout)))
        self.bias = nn.Parameter(torch.zeros(hidden))
        nn.init.kaiming_uniform_(self.kernel, a=5**0.5)  # nn.Linear's and nn.Conv2d's default

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        s = ACTIVATIONS[self.activation]
        dims = spatial_dims(self.layout)
        if dims:
            inner = s(_CONV[dims](y, self.kernel, self.bias, padding=1))
            return _CONV_TRANSPOSE[dims](inner, self.kernel, padding=1)
        return F.linear(s(F.linear(y, self.kernel, self.bias)), self.kernel.t())


class Antisymmetric(nn.Module):
    """``s((W - W^T - eps I) y + b)``."""

    def __init__(self, width: int, layout: str, activation: str, eps: float = 0.01):
        super().__init__()
        self.layout = layout
        self.activation = activation
        self.eps = eps
        self.weight = nn.Parameter(torch.empty((width, width) + (3,) * spatial_dims(layout)))
        self.bias = nn.Parameter(torch.zeros(width))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def linear(self, y: torch.Tensor) -> torch.Tensor:
        """``(W - W^T - eps I) y`` (no bias): a linear map with eigenvalues on ``Re = -eps``."""
        w = self.weight
        dims = spatial_dims(self.layout)
        if dims:
            skew = _CONV[dims](y, w, padding=1) - _CONV_TRANSPOSE[dims](y, w, padding=1)
        else:
            skew = F.linear(y, w - w.t())
        return skew - self.eps * y

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        bias = self.bias.reshape((-1,) + (1,) * spatial_dims(self.layout))
        return ACTIVATIONS[self.activation](self.linear(y) + bias)


class Contractive(nn.Module):
    """``c * f(y)`` for a function whose weights are spectrally normalized: Lipschitz constant <= c."""

    def __init__(self, function: nn.Module, contraction: float):
        super().__init__()
        self.function = function
        self.contraction = contraction

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.contraction * self.function(y)

    def extra_repr(self) -> str:
        return f"contraction={self.contraction}"


def _contractive(function: nn.Module, family: str, contraction: float) -> nn.Module:
    from torch.nn.utils.parametrizations import spectral_norm

    if isinstance(contraction, bool) or not isinstance(contraction, (int, float)) or not 0 < contraction < 1:
        raise ConfigError(f"contraction must be a number in (0, 1), not {contraction!r}")
    if family == "mlp":
        function.first = spectral_norm(function.first)
        function.second = spectral_norm(function.second)
    elif family == "chang":
        spectral_norm(function, name="kernel")  # K^T s(K y): Lipschitz constant |K|^2 <= 1
    else:
        raise ConfigError(
            f"contraction is offered for the mlp and chang families, not {family!r} (batch normalization "
            "and the shifted skew map have no Lipschitz bound from their weights' norms)"
        )
    return Contractive(function, float(contraction))


_CONV = {1: F.conv1d, 2: F.conv2d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


def _linear(n_in: int, n_out: int, layout: str, bias: bool = True) -> nn.Module:
    dims = spatial_dims(layout)
    if dims == 2:
        return nn.Conv2d(n_in, n_out, 3, padding=1, bias=bias)
    if dims == 1:
        return nn.Conv1d(n_in, n_out, 3, padding=1, bias=bias)
    return nn.Linear(n_in, n_out, bias=bias)


def make_function(
    family: Family,
    width: int,
    hidden: int,
    layout: Layout,
    activation: Activation = "tanh",
    contraction: float | None = None,
) -> nn.Module:
    """One residual function of ``family`` on states of ``width`` features or channels; with
    ``contraction``, one whose Lipschitz constant is at most that number (see the module doc)."""
    if contraction is not None:
        function = make_function(family, width, hidden, layout, activation)
        return _contractive(function, family, contraction)
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation must be one of {', '.join(ACTIVATIONS)}, not {activation!r}")
    if family == "mlp":
        return MLP(width, hidden, layout, activation)
    if family == "bn":
        return BNBranch(width, hidden, layout)
    if family == "chang":
        return KernelTranspose(width, hidden, layout, activation)
    if family == "antisymmetric":
        return Antisymmetric(width, layout, activation)
    raise ConfigError(f"family must be one of {', '.join(choices(Family))}, not {family!r}")
