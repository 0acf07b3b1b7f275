"""Batch normalization in passes that recompute a layer.

A BatchNorm layer in training mode normalizes with the batch's statistics and updates its running
statistics. When the backward pass re-runs a layer (``reversible``, ``adjoint``, ``checkpoint``),
the batch statistics are recomputed from the same input (rebuilt exactly, or up to the adjoint's
error), which is what the gradient needs; but the running statistics would be updated a second time
and drift from plain autograd's. :func:`frozen_running_stats` restores them after the re-run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["frozen_running_stats"]


@contextmanager
def frozen_running_stats(modules: Iterable[nn.Module]) -> Iterator[None]:
    """Inside the context, BatchNorm layers of ``modules`` compute as usual; on exit their running
    statistics are what they were on entry."""
    saved = []
    for module in modules:
        for sub in module.modules():
            if isinstance(sub, _BatchNorm) and sub.track_running_stats and sub.running_mean is not None:
                buffers = (sub.running_mean, sub.running_var, sub.num_batches_tracked)
                saved.append((sub, [b.clone() for b in buffers]))
    try:
        yield
    finally:
        with torch.no_grad():
            for sub, (mean, var, count) in saved:
                sub.running_mean.copy_(mean)
                sub.running_var.copy_(var)
                sub.num_batches_tracked.copy_(count)
