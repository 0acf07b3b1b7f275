"""``odenet.compile``: a scheme becomes a trainable ``torch.nn.Module`` of any depth.

Layer ``n`` is one step of the scheme with layer ``n``'s sub-networks for the function symbols and
layer ``n``'s values of the learnable parameters. The generated step (see ``odenet.codegen``) is the
same in every memory mode; the modes differ only in what is kept for the backward pass:

============  ================================================================================
autograd      everything (plain PyTorch); any explicit scheme
checkpoint    the inputs of about sqrt(depth) segments; exact gradients; any explicit scheme
reversible    only the output: each layer's input is rebuilt by the derived inverse; exact
              gradients; explicitly reversible schemes; drift-controlled
adjoint       only the output: each input is rebuilt approximately by a step with ``-h`` (Sander
              et al. 2022); approximate gradients; any explicit scheme with a parameter ``h``
fixed_point   the output and a small integer buffer: states held in fixed point, each input
              rebuilt bit for bit (Maclaurin et al. 2015); parameters rounded to 16 binary
              digits; schemes whose updates read c*old + held terms
implicit      an implicit scheme's layers each solve their step, keep one evaluation per layer
              and differentiate the solution by the implicit function theorem (what
              ``"autograd"`` means for an implicit scheme)
============  ================================================================================

Each mode is an object of ``odenet.nn.modes`` that owns its options and runs the layers; the block
is what it runs them on (``modes.base.Layers``): the layer step, its inverses (``inverses.py``),
the layers' parameters and functions, and the scheme's generated code (``code.py``). What the last
pass did is in ``block.last_pass`` (a ``PassReport``).

With ``memory_budget`` the reversible and adjoint modes keep the graphs of as many of the top layers
as the budget allows and rebuild the others: a time-memory trade from the mode (budget 0) to
autograd (budget 1).

Every mode that evaluates a layer again during backward replays what the forward's evaluation saw:
random numbers, autocast settings and buffers (see ``replay.py``). Under ``torch.compile`` the
memory-saving modes run as they are (compiled code around them, none inside): they manage their own
graphs. A block pickles by its scheme's text and generates its code again when loaded.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

import torch
from torch import nn

from odenet.codegen import StepCode
from odenet.errors import ConfigError, UnsupportedSchemeError
from odenet.ir import Scheme, format_scheme, value
from odenet.nn.code import scheme_code
from odenet.nn.generated import in_state_dtype
from odenet.nn.implicit import implicit_layer
from odenet.nn.inverses import exact_inverse_step, negative_step
from odenet.nn.layers import NO_CONTEXT, Context
from odenet.nn.modes import MemoryMode, PassReport, legacy, resolve
from odenet.nn.params import constrain, unconstrain
from odenet.nn.solvers import Solver
from odenet.nn.specs import as_scheme, build_functions
from odenet.options import Guard, Memory, SolverMethod, choices

__all__ = ["MEMORY_MODES", "SchemeBlock", "compile"]

MEMORY_MODES = choices(Memory)

FunctionSpec = nn.Module | Callable[[int], nn.Module]


class SchemeBlock(nn.Module):
    """A stack of ``depth`` steps of ``scheme``. Build it with :func:`odenet.compile`."""

    def __init__(
        self,
        scheme: Scheme | str | os.PathLike,
        functions: Mapping[str, FunctionSpec],
        depth: int,
        memory: Memory | MemoryMode = "autograd",
        params: Mapping[str, float] | None = None,
        drift_tolerance: float | None = None,
        guard: Guard = "adaptive",
        memory_budget: float | int | None = None,
        solver: Solver | SolverMethod | None = None,
    ):
        super().__init__()
        scheme = as_scheme(scheme)
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"depth must be a whole number >= 1, not {depth!r}")
        mode = resolve(
            memory,
            not scheme.is_explicit,
            drift_tolerance=drift_tolerance,
            guard=guard,
            memory_budget=memory_budget,
            solver=solver,
        )
        self.scheme = scheme
        self.depth = depth
        self.functions, self.shared = build_functions(scheme, functions, depth)
        self._build_params(params or {}, depth)
        self.code = scheme_code(scheme)
        self.last_pass = PassReport(mode.name)
        self.mode = mode.bind(self)
        # where each output state sits in the state vector (forward never touches sympy)
        position = {symbol: i for i, symbol in enumerate(scheme.state_vector)}
        self._output_index = [position[value(s)] for s in scheme.outputs]

    # -- construction ---------------------------------------------------------------------------
    def __getstate__(self):
        """Pickled by the scheme's text: generated functions are made again on load."""
        state = dict(self.__dict__)
        del state["code"]
        state["scheme"] = format_scheme(self.scheme)
        return state

    def __setstate__(self, state):
        from odenet.language import parse

        scheme = parse(state["scheme"])
        # pickled before modes were objects: its options as attributes
        mode, report, state = legacy(state, scheme) if "mode" not in state else (None, None, state)
        super().__setstate__({**state, "scheme": scheme})
        self.code = scheme_code(scheme)
        if mode is not None:
            self.last_pass, self.mode = report, mode.bind(self)

    def _build_params(self, overrides: Mapping[str, float], depth: int) -> None:
        self._param_names = [p.name for p in self.scheme.params]
        self.scheme.check_param_names(overrides)
        self.raw_params = nn.ParameterDict()
        self.intervals: dict = {}  # each parameter's interval (None: unbounded)
        self.start_values: dict[str, float] = {}  # the values the parameters started from
        self.exact_values: dict[str, float] = {}  # the fixed constants' values, in float64
        for p in self.scheme.params:
            start = float(overrides.get(p.name, p.default))
            self.intervals[p.name] = p.interval
            self.start_values[p.name] = start
            if p.interval is not None and not (float(p.interval[0]) < start < float(p.interval[1])):
                raise ConfigError(
                    f"parameter {p.name} = {start} lies outside its interval "
                    f"({p.interval[0]}, {p.interval[1]})"
                )
            if p.learnable:
                raw = unconstrain(start, p.interval)
                self.raw_params[p.name] = nn.Parameter(
                    torch.full((depth,), raw, dtype=torch.get_default_dtype())
                )
            else:
                self.register_buffer(f"fixed_{p.name}", torch.tensor(start, dtype=torch.get_default_dtype()))
                self.exact_values[p.name] = start  # rebuilt from this in every dtype (_apply)

    def _apply(self, fn, recurse=True):
        """``.to(dtype)``, ``.double()``...: a fixed constant is rebuilt from its exact value in the new
        dtype (``h = 0.1`` in float64 is 0.1, not float32's 0.10000000149), unless it holds another
        value (set by hand, loaded), which converts as any buffer does; parameters convert as usual."""
        before = {name: self.parameter_tensor(name) for name in self.exact_values}
        result = super()._apply(fn, recurse)
        for name, old in before.items():
            new, exact = self.parameter_tensor(name), self.exact_values[name]
            if new is old or not (old.is_floating_point() and new.is_floating_point()) or old.is_meta:
                continue
            if old.detach().cpu().item() == torch.tensor(exact, dtype=old.dtype).item():
                with torch.no_grad():
                    new.fill_(exact)
        return result

    # -- what the mode sees (modes.base.Layers) --------------------------------------------------
    @property
    def memory(self) -> str:
        """The memory mode's name (``block.mode`` is the mode object, with its options)."""
        return self.mode.name

    @memory.setter
    def memory(self, value) -> None:
        raise ConfigError(
            f"a block's memory mode is fixed when it is built (it is {self.mode.name!r}); compile a new "
            f"block with memory={value!r} and load this one's state_dict into it"
        )

    @property
    def implicit(self) -> bool:
        return not self.scheme.is_explicit

    @property
    def solver(self) -> Solver:
        """How an implicit layer or a fixed-point inverse solves (the mode's solver, if it has one)."""
        solver = getattr(self.mode, "solver", None)
        return solver if isinstance(solver, Solver) else Solver()

    def layer_params(self, n: int) -> dict[str, torch.Tensor]:
        """The parameter values of layer ``n`` (learnable ones through their interval map)."""
        values = {}
        for name in self._param_names:
            if name in self.raw_params:
                values[name] = constrain(self.raw_params[name][n], self.intervals[name])
            else:
                values[name] = getattr(self, f"fixed_{name}")
        return values

    def parameter_tensor(self, name: str) -> torch.Tensor:
        """The tensor behind scheme parameter ``name``: its raw values per layer (learnable) or its
        fixed value (a 0-dimensional buffer)."""
        return self.raw_params[name] if name in self.raw_params else getattr(self, f"fixed_{name}")

    def parameter_values(self, name: str) -> torch.Tensor:
        """Scheme parameter ``name``'s value at every layer, detached: shape ``(depth,)``."""
        if name in self.raw_params:
            return constrain(self.raw_params[name].detach(), self.intervals[name])
        return getattr(self, f"fixed_{name}").detach().expand(self.depth)

    def fixed_params(self) -> list[torch.Tensor]:
        """The buffers of the scheme's fixed parameters."""
        return [getattr(self, f"fixed_{name}") for name in self._param_names if name not in self.raw_params]

    def function(self, name: str, n: int) -> nn.Module:
        return self.functions[name] if self.shared[name] else self.functions[name][n]

    def layer_modules(self, n: int) -> list[nn.Module]:
        return [self.function(name, n) for name in self.functions]

    def caller(self, n: int, context: Context = NO_CONTEXT) -> Callable:
        """``call(key, name, *args)``: layer ``n``'s module for ``name`` on ``args`` and the context."""
        kwargs = context.kwargs

        def call(key, name, *args):
            return self.function(name, n)(*args, **kwargs)

        return call

    def checked(self, call: Callable, state, n: int) -> Callable:
        """``call`` for layer ``n``'s step: each result a tensor shaped like the state (where the
        step's arithmetic reads it), in the state's dtype (see ``generated.in_state_dtype``)."""
        return in_state_dtype(call, state, n, self.code.forward.shaped)

    def step(
        self,
        n: int,
        state: tuple[torch.Tensor, ...],
        call: Callable | None = None,
        context: Context = NO_CONTEXT,
    ) -> tuple[torch.Tensor, ...]:
        """Layer ``n`` applied to a state vector (plain autograd). ``call(key, name, *args)``, if
        given, evaluates the function calls instead of layer ``n``'s modules (to observe them); an
        implicit layer solves its step (``implicit.py``) and uses ``call`` for its last evaluation,
        at the solution. ``context``: the keyword arguments of the functions (where ``call`` is not
        given, or the layer is implicit)."""
        if self.implicit:
            return implicit_layer(self, n, state, self.solver, call, context)
        call = call or self.caller(n, context)
        return self.code.step(state, self.layer_params(n), self.checked(call, state, n))

    def steps(
        self, start: int, stop: int, state: tuple[torch.Tensor, ...], context: Context = NO_CONTEXT
    ) -> tuple[torch.Tensor, ...]:
        """Layers ``start .. stop-1`` applied in turn (plain autograd)."""
        for n in range(start, stop):
            state = self.step(n, state, context=context)
        return tuple(state)

    def inverse_step(
        self, n: int, new_state, call=None, tol: float | None = None, context: Context = NO_CONTEXT
    ):
        """The input of layer ``n`` from its output, by the derived inverse (state vectors), or by
        solving the fixed-point inverse to ``tol`` (by default the mode's rebuild tolerance) where
        there is no explicit one (Euler, Heun); see ``inverses.py``."""
        if tol is None and self.code.inverse.step is None:  # only a fixed-point inverse reads it
            tol = self.mode.rebuild_tolerance(new_state[0].dtype)
        return exact_inverse_step(self, n, new_state, call, tol, self.solver, context)

    def approximate_inverse_step(self, n: int, new_state, call=None, context: Context = NO_CONTEXT):
        """The input of layer ``n`` rebuilt approximately by the step with ``-h`` (``inverses.py``)."""
        return negative_step(self, n, new_state, call, context)

    def split_input(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        k = len(self.scheme.inputs)
        if k == 1:
            return (x,)
        if x.dim() < 2 or x.shape[1] % k:
            raise ConfigError(
                f"scheme {self.scheme.name} splits its input into {k} states "
                f"({', '.join(self.scheme.inputs)}) "
                f"along dimension 1, which needs a size divisible by {k}; got shape {tuple(x.shape)}"
            )
        return tuple(x.chunk(k, dim=1))

    def initial_state(self, x: torch.Tensor, context: Context = NO_CONTEXT) -> tuple[torch.Tensor, ...]:
        inputs = self.split_input(x)
        call = in_state_dtype(self.caller(0, context), inputs, 0)
        return self.code.start(inputs, self.layer_params(0), call)

    def output(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        parts = [state[i] for i in self._output_index]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, **context) -> torch.Tensor:
        """The block's output for input ``x``. Keyword arguments are the functions' context: each
        function call of each layer receives them unchanged, ``f(value, **context)`` (an attention
        mask, position embeddings, a time or class embedding); every context tensor that requires
        grad gets its gradient, in every memory mode."""
        bound = Context(context)
        return self.output(self.run(self.initial_state(x, bound), bound))

    def run(self, state: tuple[torch.Tensor, ...], context: Context = NO_CONTEXT) -> tuple[torch.Tensor, ...]:
        """All ``depth`` layers on a full state vector, in this block's memory mode."""
        return self.mode.run(self, state, context)

    def inverse(self, y: torch.Tensor, *, graph: bool = False, **context) -> torch.Tensor:
        """The block's input from its output ``y``, when the output is the whole state (no hidden
        state, no history) and the scheme is reversible; keyword arguments are the functions'
        context, as in the forward call.

        By default no graph is built (``torch.no_grad``: the cheap path, to inspect a trained block
        or to map outputs back). ``graph=True`` builds autograd's graph through the derived inverse,
        so a loss of the rebuilt input can be differentiated (with respect to ``y``, the block's
        parameters and the context); it needs an explicit inverse: a fixed-point one (Euler, Heun)
        is found by iteration, through which no exact gradient flows."""
        hidden = [s for s in self.scheme.states if s not in self.scheme.outputs or self.scheme.history[s]]
        if hidden or list(self.scheme.outputs) != list(self.scheme.inputs):
            raise UnsupportedSchemeError(
                f"scheme {self.scheme.name}: inverse(y) needs the output to be the whole state "
                "and the input; "
                f"{', '.join(hidden) if hidden else 'the input'} is not recoverable from the output alone"
            )
        if graph and self.code.inverse.step is None:
            raise UnsupportedSchemeError(
                f"scheme {self.scheme.name}: inverse(y, graph=True) differentiates the derived inverse, "
                "and this scheme's inverse is a fixed point found by iteration (no exact gradient "
                "flows through the iterations); call inverse(y) without a graph"
            )
        k = len(self.scheme.outputs)
        state = tuple(y.chunk(k, dim=1)) if k > 1 else (y,)
        bound = Context(context)
        with torch.set_grad_enabled(graph):
            for n in reversed(range(self.depth)):
                state = self.inverse_step(n, state, context=bound)
        return state[0] if k == 1 else torch.cat(state, dim=1)

    def extra_repr(self) -> str:
        return (
            f"scheme={self.scheme.name}, depth={self.depth}, memory={self.mode.name}{self.mode.extra_repr()}"
        )

    # -- read-only views kept for one release (the pass report and the code object hold them) ------
    forward_code = property(lambda self: self.code.forward, doc="The generated step (``code.forward``).")
    init_code = property(lambda self: self.code.init, doc="The generated start (``code.init``).")
    inverse_code = property(lambda self: self.code.inverse.code, doc="The generated inverse step, or None.")
    inverse_error = property(lambda self: self.code.inverse.error, doc="Why there is no explicit inverse.")
    fixed_point_inverse_error = property(
        lambda self: self.code.fixed_point_inverse[1], doc="Why the inverse is not a fixed point (or None)."
    )
    call_count = property(lambda self: self.code.call_count, doc="Distinct function calls per step.")
    memory_budget = property(lambda self: getattr(self.mode, "budget", None), doc="The mode's budget.")
    drift = property(lambda self: getattr(self.mode, "drift", None), doc="Reversible mode's drift plan.")
    solves = property(lambda self: self.last_pass.solves)
    backward_solves = property(lambda self: self.last_pass.backward_solves)
    rebuilds = property(lambda self: self.last_pass.rebuilds)
    reconstruction_errors = property(lambda self: self.last_pass.reconstruction_errors)
    kept_bytes = property(lambda self: self.last_pass.kept_bytes)
    graph_layers = property(lambda self: self.last_pass.graph_layers)
    graph_bytes = property(lambda self: self.last_pass.graph_bytes)
    repairs = property(lambda self: self.last_pass.repairs)

    def vjp_code(self, learnable: tuple[str, ...], cached: bool) -> StepCode:
        return self.code.vjp(learnable, cached)[0]

    def vjp(self, learnable: tuple[str, ...], cached: bool) -> Callable:
        return self.code.vjp(learnable, cached)[1]


def compile(
    scheme: Scheme | str | os.PathLike,
    functions: Mapping[str, FunctionSpec],
    depth: int,
    memory: Memory | MemoryMode = "autograd",
    params: Mapping[str, float] | None = None,
    drift_tolerance: float | None = None,
    guard: Guard = "adaptive",
    memory_budget: float | int | None = None,
    solver: Solver | SolverMethod | None = None,
) -> SchemeBlock:
    """Compile ``scheme`` (a Scheme, a library name, a path or scheme text) into a trainable block of
    ``depth`` layers.

    ``functions`` maps each function symbol to a factory ``layer_index -> nn.Module`` (separate
    weights per layer) or to one ``nn.Module`` shared by all layers. ``memory`` is a mode's name
    (``"autograd"``, ``"checkpoint"``, ``"reversible"``, ``"adjoint"``, ``"fixed_point"``) or a mode
    object of :mod:`odenet.nn.modes` with its options (``Reversible(guard="raise")``), in which case
    the keywords below stay unset; ``params`` overrides the parameters' defaults.
    ``drift_tolerance`` is the accepted relative error of an input rebuilt in reversible mode
    (default: 100 eps of the dtype); ``guard`` says what happens when a rebuilt input passes it:
    ``"adaptive"`` recomputes exactly, ``"raise"`` raises ``ReconstructionError``.
    ``memory_budget`` (reversible and adjoint modes) keeps the graphs of the top layers, as many as
    fit, on top of what the mode keeps anyway: a float in [0, 1] is a fraction of the layers (of
    autograd's activation memory), an int a number of bytes of saved tensors (layers counted at the
    size of layer 0's graph, measured). An implicit scheme (its step reads values it computes:
    backward Euler, coupled stages) compiles with ``memory="autograd"``: each layer solves its step
    with ``solver`` (a :class:`~odenet.nn.solvers.Solver`, or a method's name: ``"anderson"``,
    ``"newton"``, ``"fixed_point"``) and its backward pass solves the adjoint system (the implicit
    function theorem). See docs/compile.md.
    """
    return SchemeBlock(
        scheme, functions, depth, memory, params, drift_tolerance, guard, memory_budget, solver
    )
