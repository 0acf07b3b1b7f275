"""The one engine of the modes that rebuild activations in the backward pass.

Reversible, adjoint and fixed-point modes run the stack as a few ``autograd.Function`` groups of
layers. A group's forward runs its layers without a graph; only the top group saves its output.
Its backward rebuilds its layers' inputs from their outputs, last to first, takes each layer's
vector-Jacobian product (``vjp.py``), and hands the rebuilt input to the group below through the
pass object (groups do not save their inputs). A mode supplies a :class:`RebuildPass`: how a group
runs forward, how the backward pass starts from the saved top, how a group's layers are rebuilt and
differentiated, and what is checked once the pass ends. The engine does the rest, the same for all:
the parameters each group hands autograd, the refusal of second-order gradients and of tensors
changed in place between the passes, and the order of the groups.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from odenet.errors import DoubleBackwardError
from odenet.nn.layers import NO_CONTEXT, Context, Layers
from odenet.nn.replay import AutocastState, CallRecord

if TYPE_CHECKING:
    from odenet.nn.modes.base import MemoryMode

__all__ = [
    "RebuildPass",
    "check_unchanged",
    "function_params",
    "parameter_bytes",
    "run_groups",
    "shortest_group",
    "to_host",
]

SEGMENT = 16  # layers per autograd.Function at most with guard="raise" and in fixed point, and the
# shortest adaptive group (fewer where the layers' parameters are large against the state)
HELD_GRADIENTS = 16 * 2**20  # bytes of parameter gradients a group may always hold


class RebuildPass(abc.ABC):
    """One forward pass through a stack and its backward pass (see the module doc).

    ``layers`` is the block (``modes.base.Layers``), ``mode`` the mode object that runs it (its
    ``foreign_checked`` flag is set once a backward pass has walked the functions' graphs),
    ``groups`` the ``(start, stop)`` of each ``autograd.Function``, lowest first. ``context``: the
    functions' keyword arguments; the pass calls them with its detached copy (``context.leaves``),
    and every group hands autograd the original tensors that require grad, as it does the shared
    parameters: their gradients are summed over the layers, and nothing of them is copied."""

    def __init__(
        self,
        layers: Layers,
        mode: MemoryMode,
        state: Sequence[torch.Tensor],
        stop: int,
        context: Context = NO_CONTEXT,
    ):
        self.layers, self.mode, self.stop = layers, mode, stop
        self.dtype, self.device = state[0].dtype, state[0].device
        self.autocast = AutocastState(self.device.type)
        self.context = context.detached()
        self.record = CallRecord(state, kwargs=self.context.kwargs)
        self.function_params = function_params(layers)
        self.groups: list[tuple[int, int]] = []
        self.versions: list[tuple[torch.Tensor, int]] = []  # what backward needs unchanged
        self.lowest = 0  # the lowest group that takes part in autograd's graph
        # the state the next group rebuilds from: the saved top, then what each group hands the one
        # below (held here only, not by the frames of the backward pass, so that it can be freed)
        self.handoff: tuple[torch.Tensor, ...] | None = None

    @abc.abstractmethod
    def forward_group(
        self, start: int, stop: int, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, ...]:
        """Layers ``[start, stop)`` without a graph; returns their output."""

    @abc.abstractmethod
    def begin_backward(self, saved: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """A new backward pass starts at the top group (it may run more than once): reset what it
        measures, replay the record, and return the state the top group rebuilds from."""

    @abc.abstractmethod
    def backward_group(
        self, start: int, stop: int, grads: list, params: list, param_grads: list
    ) -> list[torch.Tensor]:
        """Rebuild and differentiate layers ``stop-1 .. start`` from :attr:`handoff` (their output),
        leaving there the state to hand down: returns the gradients of the group's input and adds
        those of ``params`` into ``param_grads``."""

    def prepare(self) -> None:  # noqa: B027 - a hook: most passes need nothing here
        """Called once the groups and :attr:`lowest` are known, before the first group runs."""

    def check_unchanged(self) -> None:
        check_unchanged(self.layers.scheme.name, self.versions)

    def graph_retained(self) -> bool:
        """Whether the backward pass running now keeps the graph for another (``retain_graph=True``):
        what only a second pass through this graph would read can be freed at once when it does not.
        Asked of autograd's engine (the flag torch's own compiled autograd reads); a torch without it
        is answered "retained", which only keeps memory. Not inferred from the top group's saved
        tensors: reading them runs the user's saved-tensor hooks (a non-reentrant checkpoint's raises
        on a second read, which read as "not retained" left a retained graph's second pass
        unguarded)."""
        engine_flag = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
        return True if engine_flag is None else bool(engine_flag())

    def double_backward_error(self) -> DoubleBackwardError:
        return DoubleBackwardError(
            f"memory='{self.mode.name}' cannot give second-order gradients (create_graph=True): it "
            "rebuilds activations outside autograd's graph; use memory='checkpoint' or memory='autograd' "
            f"for {self.layers.scheme.name}'s block"
        )


class _Group(torch.autograd.Function):
    """Layers ``[start, stop)`` of the stack, one group (see the module doc)."""

    @staticmethod
    def forward(ctx, run: RebuildPass, start, stop, n_state, *tensors):
        state = run.forward_group(start, stop, tensors[:n_state])
        # an output that is an input (one layer, history passing through) must be a new tensor
        inputs = {id(t) for t in tensors}
        state = tuple(t.clone() if id(t) in inputs else t for t in state)
        ctx.run, ctx.start, ctx.stop, ctx.n_state = run, start, stop, n_state
        ctx.params = tensors[n_state:]
        ctx.top = stop == run.stop
        if ctx.top:
            ctx.save_for_backward(*state)
        return state

    @staticmethod
    def backward(ctx, *grads):
        run: RebuildPass = ctx.run
        if torch.is_grad_enabled():
            raise run.double_backward_error()
        if ctx.top:  # a new backward pass through this graph
            run.check_unchanged()
            run.handoff = run.begin_backward(ctx.saved_tensors)
        assert run.handoff is not None
        out_grads = [torch.zeros_like(s) if g is None else g for s, g in zip(run.handoff, grads, strict=True)]
        needs = ctx.needs_input_grad[4 + ctx.n_state :]
        params = [p for p, need in zip(ctx.params, needs, strict=True) if need]
        param_grads: list[torch.Tensor | None] = [None] * len(params)
        with run.autocast.restored():
            in_grads = run.backward_group(ctx.start, ctx.stop, out_grads, params, param_grads)
        run.mode.foreign_checked = True
        returned = iter(param_grads)
        return (None, None, None, None, *in_grads, *(next(returned) if need else None for need in needs))


def run_groups(run: RebuildPass, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Layers ``[0, run.stop)`` as ``run.groups``: each group hands autograd its own layers'
    parameters and the shared ones (shared functions, the scheme's learnable parameters)."""
    layers = run.layers
    shared = [p for name in layers.functions if layers.shared[name] for p in run.function_params[name][0]]
    shared += list(layers.raw_params.values())
    shared += [original for original, _ in run.context.leaves]
    groups = []
    for low, high in run.groups:
        own = [
            p
            for n in range(low, high)
            for name in layers.functions
            if not layers.shared[name]
            for p in run.function_params[name][n]
        ]
        groups.append(list({id(p): p for p in own + shared if p.requires_grad}.values()))
    # the lowest group in autograd's graph ends the rebuild
    tracked = any(t.requires_grad for t in state)
    run.lowest = next(
        (low for (low, _), params in zip(run.groups, groups, strict=True) if tracked or params), 0
    )
    kept = [*state, *layers.parameters(), *layers.fixed_params(), *run.context.tensors()]
    run.versions = [(t, t._version) for t in kept]
    run.prepare()
    for (low, high), params in zip(run.groups, groups, strict=True):
        state = _Group.apply(run, low, high, len(state), *state, *params)
    return tuple(state)


def check_unchanged(name: str, versions) -> None:
    """Refuse, as autograd does, a backward pass after the input, a parameter or a fixed scheme
    parameter was changed in place since the forward pass (the rebuild would use new values);
    ``versions``: ``(tensor, version at the forward)`` pairs."""
    for tensor, version in versions:
        if tensor._version != version:
            raise RuntimeError(
                f"a tensor {name}'s block needs for its backward pass (its input, a parameter, a fixed "
                f"scheme parameter or a context tensor, shape {tuple(tensor.shape)}) was modified "
                "in place after the forward pass; run the forward again, or clone the input "
                "before modifying it"
            )


def function_params(layers: Layers) -> dict[str, list[list[torch.Tensor]]]:
    """Each function's parameters per layer, listed once per pass (walking modules is slow)."""
    return {
        name: [list(layers.functions[name].parameters())] * layers.depth
        if layers.shared[name]
        else [list(m.parameters()) for m in layers.functions[name]]
        for name in layers.functions
    }


def parameter_bytes(layers: Layers, function_params) -> int:
    """Bytes of the functions' own trainable parameters over all layers (shared ones left out: their
    gradient is one tensor however many layers a group holds)."""
    return sum(
        p.nbytes
        for name, per_layer in function_params.items()
        if not layers.shared[name]
        for params in per_layer
        for p in params
        if p.requires_grad
    )


def shortest_group(state_bytes: int, parameter_bytes_per_layer: float) -> int:
    """Layers per ``autograd.Function`` at least: SEGMENT, fewer where their parameters' gradients,
    which a Function returns all at once when its backward ends, would pass both SEGMENT states and
    HELD_GRADIENTS (a layer of 8 MiB of weights on a state of 1 MiB: 2 layers, not 16, which held
    128 MiB of gradients: more than autograd's whole activation memory, measured). Below that,
    groups stay long: their count sets the per-group costs (a host read each, with the guard)."""
    if parameter_bytes_per_layer <= 0:
        return SEGMENT
    allowed = max(SEGMENT * state_bytes, HELD_GRADIENTS)
    return max(1, min(SEGMENT, int(allowed // parameter_bytes_per_layer)))


def to_host(tensor: torch.Tensor) -> list[float]:
    """A deliberate host read (allowed under CUDA's sync debug mode, which is there to find the
    reads nobody meant)."""
    if not tensor.is_cuda:
        return tensor.tolist()
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(0)
    try:
        return tensor.tolist()
    finally:
        torch.cuda.set_sync_debug_mode(mode)
