"""Measuring memory honestly: the bytes autograd saves for backward, and the process's resident set.

The benchmarks, the experiments and ``odenet compile``'s demo all measure with these, so their
figures mean the same thing.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterable

import torch

__all__ = ["peak_rss_mib", "reset_peak_rss", "rss_mib", "saved_tensor_bytes"]


class saved_tensor_bytes:  # noqa: N801 - used as a context manager, like torch's own hooks
    """Count the bytes of the tensors autograd saves for backward while the context is active,
    each storage once; storages of ``exclude`` (parameters, which exist anyway) are not counted.
    A compiled block's own copies are not autograd's: add ``SchemeBlock.kept_bytes``. With
    ``compose``, saved-tensor hooks already set (a user's offload) still pack and unpack."""

    def __init__(self, exclude: Iterable[torch.Tensor] = (), compose: bool = False):
        self.bytes = 0
        self._seen: set[int] = {p.untyped_storage().data_ptr() for p in exclude}
        self._compose = compose

    def _count(self, tensor: torch.Tensor) -> None:
        key = tensor.untyped_storage().data_ptr()
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += tensor.untyped_storage().nbytes()

    def __enter__(self) -> saved_tensor_bytes:
        outer = torch._C._autograd._top_saved_tensors_default_hooks(False) if self._compose else None
        pack_outer, unpack = outer if outer is not None else (None, lambda t: t)

        def pack(tensor):
            self._count(tensor)
            return tensor if pack_outer is None else pack_outer(tensor)

        self._hooks = torch.autograd.graph.saved_tensors_hooks(pack, unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)


def peak_rss_mib() -> float:
    """Peak resident memory of this process since it started or since :func:`reset_peak_rss`, in
    MiB (Linux's VmHWM; elsewhere the peak since the start: macOS reports bytes)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def reset_peak_rss() -> bool:
    """Start the peak over from the resident memory now (Linux: ``/proc/self/clear_refs``); False
    where the system cannot, and then the peak still counts from the process's start."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def rss_mib() -> float:
    """Resident memory of this process now, in MiB (Linux's /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except OSError:
        return peak_rss_mib()
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
