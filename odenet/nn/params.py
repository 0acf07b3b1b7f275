"""Learnable scheme parameters kept inside their declared interval by a smooth map.

A parameter declared ``learnable in (low, high)`` is stored unconstrained (``raw``) and used as

- ``low + (high - low) * sigmoid(raw)`` for a bounded interval,
- ``low + softplus(raw)`` or ``high - softplus(raw)`` for a half-line,
- ``raw`` itself when no interval is given,

so gradient steps can never leave the interval. ``unconstrain`` is the inverse map, used to start
``raw`` at the declared default.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional


def _finite(bound) -> float | None:
    value = float(bound)
    return value if math.isfinite(value) else None


def constrain(raw: torch.Tensor, interval) -> torch.Tensor:
    if interval is None:
        return raw
    low, high = (_finite(b) for b in interval)
    if low is not None and high is not None:
        return low + (high - low) * torch.sigmoid(raw)
    if low is not None:
        return low + functional.softplus(raw)
    if high is not None:
        return high - functional.softplus(raw)
    return raw


def unconstrain(value: float, interval) -> float:
    if interval is None:
        return value
    low, high = (_finite(b) for b in interval)
    if low is not None and high is not None:
        u = (value - low) / (high - low)
        return math.log(u / (1 - u))
    distance = value - low if low is not None else (high - value if high is not None else None)
    if distance is None:
        return value
    return distance + math.log(-math.expm1(-distance))  # softplus^-1, stable for large distances
