"""``odenet.profile``: what one training step of any ``nn.Module`` holds, measured so a user can check it.

The complaint users of memory-saving libraries repeat most is that they cannot verify the claim:
parameters counted as activations, an allocator's cache counted as use. :func:`profile` separates
the numbers and says how each is measured:

- ``activation_bytes``: the tensors autograd saved for the backward pass during the forward
  (saved-tensor hooks), each storage once, those that exist anyway excluded: the parameters
  (frozen ones too), buffers, inputs and context (an input sliced from a data set would otherwise
  count the whole data set's storage);
- ``kept_bytes``: what odenet's memory modes keep besides (exact copies, replay records, fixed
  point's buffers: the blocks' ``last_pass.kept_bytes``); 0 for other modules;
- ``parameter_bytes`` and ``gradient_bytes``: the trainable parameters and their gradients;
- ``peak_bytes``: the largest amount of tensor memory alive at once during the step beyond what was
  alive before it (the inputs, parameters and buffers). On CUDA, ``torch.cuda.max_memory_allocated``
  less the allocation before the step; on the CPU, where the allocator keeps no statistics, a count
  of tensor storage created during the step and still alive, every operation watched (a
  ``TorchDispatchMode``) and every storage's release seen (a finalizer). Neither is what ``top``
  or ``nvidia-smi`` show: those count the process's pages, which include the interpreter, the
  libraries, and the memory allocators keep after tensors are freed (CUDA's caching allocator,
  glibc's heap);
- ``seconds``: one more step, not instrumented (CUDA synchronized).

The step is a warm-up step, then the measured one, then the timed one; each is forward, loss,
backward, with the gradients set to None before it. The module's gradients, its buffers (running
statistics; a buffer the module replaced is put back as the object it was), the inputs' gradients
and the random-number generators are put back as they were afterwards. Sparse tensors (a sparse
embedding's gradient) are not counted in the peak.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import weakref
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from odenet.nn.memory import saved_tensor_bytes

__all__ = ["Profile", "profile"]

MIB = 2**20


@dataclasses.dataclass(frozen=True)
class Profile:
    """One training step's memory and time (see the module doc for how each is measured)."""

    activation_bytes: int
    kept_bytes: int
    parameter_bytes: int
    gradient_bytes: int
    peak_bytes: int
    seconds: float
    device: str
    peak_measure: str  # how peak_bytes was measured

    def __repr__(self) -> str:
        rows = [
            ("activations saved for backward", self.activation_bytes),
            ("kept by odenet's memory mode", self.kept_bytes),
            ("parameters", self.parameter_bytes),
            ("gradients", self.gradient_bytes),
            ("peak during the step, beyond its start", self.peak_bytes),
        ]
        lines = [f"Profile of one training step on {self.device} ({self.seconds * 1e3:.1f} ms)"]
        lines += [f"  {label:<40} {value / MIB:10.2f} MiB" for label, value in rows]
        lines.append(f"  (peak: {self.peak_measure})")
        return "\n".join(lines)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class _LiveStorage(TorchDispatchMode):
    """Counts the bytes of tensor storage created under it and still alive, and their peak."""

    def __init__(self):
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        # an output on an input's storage (a view, an in-place result) is new memory only if that
        # storage was created under the watch: the parameters' transposes are not
        inputs = _tensors([*args, *(kwargs or {}).values()])
        given = {id(t.untyped_storage()) for t in inputs if t.layout == torch.strided}
        for tensor in _tensors(out):
            if tensor.layout != torch.strided:  # sparse: no single storage to watch
                continue
            storage = tensor.untyped_storage()
            key = id(storage)
            size = storage.nbytes()
            if key not in self.sizes and key in given:
                continue
            if key not in self.sizes:
                self.sizes[key] = 0
                weakref.finalize(storage, self._free, key)
            self.live += size - self.sizes[key]  # a storage resized in place counts at its new size
            self.sizes[key] = size
            self.peak = max(self.peak, self.live)
        return out

    def _free(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, Mapping):  # a model output such as transformers' ModelOutput
        return [t for v in value.values() for t in _tensors(v)]
    return []


def _nbytes(tensor: torch.Tensor) -> int:
    """Bytes held by a tensor: a sparse one's indices and values."""
    if tensor.layout == torch.strided:
        return tensor.nbytes
    tensor = tensor.coalesce()
    return tensor.indices().nbytes + tensor.values().nbytes


def _default_loss(output) -> torch.Tensor:
    tensor = output if isinstance(output, torch.Tensor) else _tensors(output)[0]
    return tensor.float().square().mean()


def profile(
    module: nn.Module,
    *inputs,
    loss: Callable[[object], torch.Tensor] | None = None,
    **context,
) -> Profile:
    """Measure one training step of ``module(*inputs, **context)``: ``loss(output)`` (default: the
    mean square of the output, or of its first tensor) and its backward pass. Works for any
    module; for odenet's blocks ``kept_bytes`` adds what their memory modes keep."""
    from odenet.errors import ConfigError

    loss = loss or _default_loss
    params = [p for p in module.parameters() if p.requires_grad]
    given = [t for t in _tensors([list(inputs), context]) if t.layout == torch.strided]
    if not torch.is_grad_enabled():
        raise ConfigError(
            "profile measures a training step: call it with gradients enabled (not under no_grad)"
        )
    if not params and not any(t.requires_grad for t in given):
        raise ConfigError("profile measures a training step, and nothing here requires grad")
    device = next((t.device for t in [*params, *given]), torch.device("cpu"))
    cuda = device.type == "cuda"
    grads = [p.grad for p in params]
    leaves = [(t, t.grad) for t in given if t.is_leaf and t.requires_grad]
    buffers = [
        (m, name, b, b.detach().clone())
        for m in module.modules()
        for name, b in m.named_buffers(recurse=False)
    ]
    existing = [*module.parameters(), *(b for _, _, b, _ in buffers), *given]
    devices = [device] if cuda else []

    def step() -> None:
        for p in params:
            p.grad = None
        loss(module(*inputs, **context)).backward()

    with torch.random.fork_rng(devices=devices):
        try:
            step()  # warm-up: lazy initialization, allocator pools, an odenet block's drift plan
            for p in params:
                p.grad = None
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            watcher = _LiveStorage() if not cuda else None
            watching = watcher if watcher is not None else contextlib.nullcontext()
            with saved_tensor_bytes(exclude=existing) as saved, watching:
                output = module(*inputs, **context)
                value = loss(output)
            kept = sum(m.last_pass.kept_bytes for m in module.modules() if hasattr(m, "last_pass"))
            with watching:
                value.backward()
            del output, value
            if watcher is not None:
                peak = watcher.peak
            else:
                torch.cuda.synchronize(device)
                peak = torch.cuda.max_memory_allocated(device) - before
            gradient_bytes = sum(_nbytes(p.grad) for p in params if p.grad is not None)
            if cuda:
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step()
            if cuda:
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
        finally:
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            for t, g in leaves:
                t.grad = g
            with torch.no_grad():
                for m, name, b, saved_value in buffers:
                    b.copy_(saved_value)
                    setattr(m, name, b)  # the object it was, if the module replaced it
    return Profile(
        activation_bytes=saved.bytes,
        kept_bytes=kept,
        parameter_bytes=sum(p.nbytes for p in params),
        gradient_bytes=gradient_bytes,
        peak_bytes=peak,
        seconds=seconds,
        device=str(device),
        peak_measure=(
            "torch.cuda.max_memory_allocated" if cuda else "live tensor storage, every operation watched"
        ),
    )
