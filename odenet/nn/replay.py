"""What a pass that runs a layer again owes the user: the forward's random numbers, autocast and buffers.

The ``reversible``, ``adjoint`` and ``checkpoint`` modes evaluate a layer's functions a second time
during backward (to rebuild its input, or to rebuild its graph). For the gradient to be the
gradient of the forward that really happened, that second evaluation must see what the first saw:

- **random numbers** (``nn.Dropout``, any random op on the default generators): each call starts
  from the generator states it started from in the forward, on the CPU and on every accelerator
  device the state lives on; a user's own ``torch.Generator`` objects are not seen;
- **autocast**: the forward's autocast settings (enabled, dtype, per device type), which the
  backward pass does not inherit;
- **buffers** (BatchNorm's running statistics, spectral normalization's power-iteration vectors, a
  user's own): the values they had before the forward's call, and the re-run changes nothing.

A :class:`CallRecord` keeps, for every call ``(layer, key)`` of the forward, the generator states it
started from (only when the call drew random numbers) and the buffers it started from (only those
the call changed: whose version counter moved, plus the running statistics of normalization layers
in training mode, which their kernels write without moving it). :meth:`CallRecord.call_again` runs a
call again under them: the generators are set and then put back, and each changed buffer is
swapped for a fresh copy of its old value and then swapped back, so the live buffers are never
written by a re-run (their version counters do not move either, so no graph that saved them is
invalidated).

Not seen: state a module keeps outside registered buffers (a Python counter, a tensor attribute),
and buffers written through ``.data`` (which bypasses version counters). Such a module can ask
:func:`is_recomputing` and skip its side effects during a re-run. A module switched between
``train()`` and ``eval()`` between forward and backward is re-run in its new mode, as
``torch.utils.checkpoint`` does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

__all__ = ["AutocastState", "CallRecord", "is_recomputing"]

_local = threading.local()


def is_recomputing() -> bool:
    """True while odenet evaluates a layer again during backward (in any memory mode)."""
    return getattr(_local, "recomputing", 0) > 0


class AutocastState:
    """The autocast settings in force when a forward pass ran, for the CPU and the state's device type."""

    def __init__(self, device_type: str):
        types = ["cpu"] if device_type == "cpu" else ["cpu", device_type]
        self.settings = [
            (t, torch.is_autocast_enabled(t), torch.get_autocast_dtype(t))
            for t in types
            if torch.amp.is_autocast_available(t)
        ]
        self.cache_enabled = torch.is_autocast_cache_enabled()
        self.device_type = device_type

    def compute_dtype(self, dtype: torch.dtype) -> torch.dtype:
        """The precision the functions compute in: ``dtype``, or autocast's when it is lower."""
        for t, enabled, autocast_dtype in self.settings:
            if t == self.device_type and enabled and torch.finfo(autocast_dtype).eps > torch.finfo(dtype).eps:
                return autocast_dtype
        return dtype

    @contextlib.contextmanager
    def restored(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for t, enabled, dtype in self.settings:
                stack.enter_context(
                    torch.autocast(t, dtype=dtype, enabled=enabled, cache_enabled=self.cache_enabled)
                )
            yield


def _devices(tensors: Sequence[torch.Tensor]) -> list[torch.device]:
    """The accelerator devices the tensors live on (the CPU generator is always recorded)."""
    return sorted({t.device for t in tensors if t.device.type != "cpu"}, key=str)


def _rng_states(devices: list[torch.device]) -> list[torch.Tensor]:
    states = [torch.get_rng_state()]
    for device in devices:
        module = getattr(torch, device.type)
        states.append(module.get_rng_state() if device.index is None else module.get_rng_state(device.index))
    return states


def _set_rng_states(devices: list[torch.device], states: list[torch.Tensor]) -> None:
    torch.set_rng_state(states[0])
    for device, state in zip(devices, states[1:], strict=True):
        module = getattr(torch, device.type)
        if device.index is None:
            module.set_rng_state(state)
        else:
            module.set_rng_state(state, device.index)


def _buffers(module: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    return [(m, name, b) for m in module.modules() for name, b in m._buffers.items() if b is not None]


def _written_silently(module: nn.Module, name: str) -> bool:
    """A buffer the module's kernel updates in place without moving its version counter: the
    running statistics of a normalization layer in training mode."""
    return module.training and isinstance(module, _NormBase) and name in ("running_mean", "running_var")


_NOTHING: tuple = (None, ())


class CallRecord:
    """Generator states and buffers each call of one forward pass started from (see the module doc).

    ``rng=False`` leaves random numbers alone (``torch.utils.checkpoint`` restores them per segment);
    ``kwargs``: the keyword context every call receives (``SchemeBlock.forward``'s).
    The record is also the switch of a checkpointed segment: :meth:`contexts` gives the pair of
    context managers ``torch.utils.checkpoint`` wants (``context_fn``), which make :meth:`caller`
    record in the forward and replay in the recomputation, as often as it runs.
    """

    def __init__(self, tensors: Sequence[torch.Tensor], rng: bool = True, kwargs: dict | None = None):
        self.devices = _devices(tensors)
        self.rng = rng
        self.kwargs = kwargs or {}
        self.calls: dict[tuple[int, int], tuple[list[torch.Tensor] | None, list]] = {}
        self.replay = False

    def run(self, n: int, key: int, module: nn.Module, args) -> torch.Tensor:
        """Evaluate ``module(*args, **kwargs)`` as call ``key`` of layer ``n`` of the forward, and
        record it."""
        before = [(m, name, b, b._version, b.clone()) for m, name, b in _buffers(module)]
        rng = _rng_states(self.devices) if self.rng else None
        out = module(*args, **self.kwargs)
        changed = [
            (m, name, snapshot)
            for m, name, b, version, snapshot in before
            if m._buffers.get(name) is not b or b._version != version or _written_silently(m, name)
        ]
        drew = rng is not None and not all(
            torch.equal(a, b) for a, b in zip(rng, _rng_states(self.devices), strict=True)
        )
        if changed or drew:
            self.calls[(n, key)] = (rng if drew else None, changed)
        return out

    def call_again(self, n: int, key: int, module: nn.Module, args) -> torch.Tensor:
        """Evaluate ``module(*args)`` again as call ``key`` of layer ``n``, under what that call
        started from in the forward. The generators are put back afterwards even if the forward
        call drew nothing. (A plain method, not a context manager: it runs once per call of every
        layer in the backward pass, where contextlib's generator machinery costs more than the
        work.)"""
        rng, changed = self.calls.get((n, key), _NOTHING)
        saved = _rng_states(self.devices) if self.rng else None
        live = []
        _local.recomputing = getattr(_local, "recomputing", 0) + 1
        try:
            if rng is not None:
                _set_rng_states(self.devices, rng)
            for m, name, snapshot in changed:
                live.append((m, name, m._buffers[name]))
                m._buffers[name] = snapshot.clone()  # the re-run may change its copy, not the original
            return module(*args, **self.kwargs)
        finally:
            for m, name, tensor in live:
                m._buffers[name] = tensor
            if saved is not None:
                _set_rng_states(self.devices, saved)
            _local.recomputing -= 1

    def caller(self, block, n: int):
        """``call(key, name, *args)`` for layer ``n`` of ``block``: records in the forward, replays
        once :attr:`replay` is set (by :meth:`contexts` in a checkpointed recomputation, or by the
        reversible backward pass)."""

        def call(key, name, *args):
            module = block.function(name, n)
            if not self.replay:
                return self.run(n, key, module, args)
            return self.call_again(n, key, module, args)

        return call

    def restore_buffers(self) -> None:
        """Write back into the live buffers the values they had before the recorded calls (an
        implicit layer's final evaluation changes them once, from where the layer started)."""
        with torch.no_grad():
            for _, changed in reversed(list(self.calls.values())):
                for module, name, snapshot in changed:
                    module._buffers[name].copy_(snapshot)

    def restore_rng(self, n: int, key: int) -> None:
        """Set the generators to the states call ``key`` of layer ``n`` started from, if it drew."""
        rng, _ = self.calls.get((n, key), _NOTHING)
        if rng is not None:
            _set_rng_states(self.devices, rng)

    def nbytes(self) -> int:
        """Memory held by the record: generator states and buffer snapshots."""
        total = 0
        for rng, changed in self.calls.values():
            total += sum(s.nbytes for s in rng or ())
            total += sum(snapshot.nbytes for _, _, snapshot in changed)
        return total

    def contexts(self) -> tuple[_Switch, _Switch]:
        return _Switch(self, False), _Switch(self, True)


class _Switch:
    """Sets a record to recording or replaying for the duration of a block; reusable, re-entrant."""

    def __init__(self, record: CallRecord, replay: bool):
        self.record, self.value, self.previous = record, replay, []

    def __enter__(self) -> None:
        self.previous.append(self.record.replay)
        self.record.replay = self.value

    def __exit__(self, *exc) -> None:
        self.record.replay = self.previous.pop()
