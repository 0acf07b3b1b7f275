"""``odenet.compile``: a scheme becomes a trainable ``torch.nn.Module`` of any depth.

Layer ``n`` is one step of the scheme with layer ``n``'s sub-networks for the function symbols and
layer ``n``'s values of the learnable parameters. The generated step (see ``odenet.codegen``) is the
same in every memory mode; the modes differ only in what is kept for the backward pass:

============  ================================================================================
autograd      everything (plain PyTorch); any explicit scheme
checkpoint    the inputs of about sqrt(depth) segments; exact gradients; any explicit scheme
reversible    only the output: each layer's input is rebuilt by the derived inverse; exact
              gradients; explicitly reversible schemes; drift-controlled (see ``reversible.py``)
adjoint       only the output: each input is rebuilt approximately by a step with ``-h`` (Sander
              et al. 2022); approximate gradients; any explicit scheme with a parameter ``h``
fixed_point   the output and a small integer buffer: states held in fixed point, each input
              rebuilt bit for bit (Maclaurin et al. 2015); parameters rounded to 16 binary
              digits; schemes whose updates read c*old + held terms (``fixed_point.py``)
============  ================================================================================

An implicit scheme's layers each solve their step (``implicit.py``): in ``autograd`` mode they keep
one evaluation per layer and differentiate the solution by the implicit function theorem.

With ``memory_budget`` the reversible and adjoint modes keep the graphs of as many of the top layers
as the budget allows and rebuild the others: a time-memory trade from the mode (budget 0) to
autograd (budget 1).

Every mode that evaluates a layer again during backward replays what the forward's evaluation saw:
random numbers, autocast settings and buffers (see ``replay.py``). Under ``torch.compile`` the
memory-saving modes run as they are (compiled code around them, none inside): they manage their own
graphs. A block pickles by its scheme's text and generates its code again when loaded.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from odenet.codegen import StepCode
from odenet.errors import ConfigError, OdenetError, UnsupportedSchemeError
from odenet.ir import Scheme, format_scheme, value
from odenet.ir.reversal import reverse_history
from odenet.nn.code import scheme_code
from odenet.nn.generated import in_state_dtype as _in_state_dtype
from odenet.nn.params import constrain, unconstrain
from odenet.nn.replay import CallRecord
from odenet.nn.solvers import Solver, check_solver
from odenet.options import Guard, Memory, SolverMethod, choices

__all__ = ["MEMORY_MODES", "SchemeBlock", "compile"]

MEMORY_MODES = choices(Memory)

FunctionSpec = nn.Module | Callable[[int], nn.Module]


class SchemeBlock(nn.Module):
    """A stack of ``depth`` steps of ``scheme``. Build it with :func:`odenet.compile`."""

    def __init__(
        self,
        scheme: Scheme,
        functions: Mapping[str, FunctionSpec],
        depth: int,
        memory: Memory = "autograd",
        params: Mapping[str, float] | None = None,
        drift_tolerance: float | None = None,
        guard: Guard = "adaptive",
        memory_budget: float | int | None = None,
        solver: Solver | SolverMethod | None = None,
    ):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"depth must be a whole number >= 1, not {depth!r}")
        if memory not in MEMORY_MODES:
            raise ConfigError(f"memory must be one of {', '.join(MEMORY_MODES)}, not {memory!r}")
        self.implicit = not scheme.is_explicit
        if self.implicit and memory != "autograd":
            eq, symbol = scheme.implicit_references[0]
            raise UnsupportedSchemeError(
                f"scheme {scheme.name} is implicit ({eq.target} depends on {symbol}, which it computes): "
                f"each layer solves its step and differentiates the solution implicitly, which "
                f"memory='autograd' does (it keeps one evaluation per layer, not the solver's "
                f"iterations); memory={memory!r} is not offered for implicit schemes"
            )
        self.solver = check_solver(solver)
        self.solves: list = []  # implicit layers: SolveInfo of each layer in the last forward
        self.backward_solves: list = []  # and of each adjoint solve in the last backward
        self.rebuilds: list = []  # fixed-point inverses: SolveInfo of each rebuilt input, last backward
        self.scheme = scheme
        self.depth = depth
        self.memory = memory
        self._build_functions(functions, depth)
        self._build_params(params or {}, depth)
        self._generate()
        if (
            memory == "reversible"
            and self.inverse_code is None
            and self.fixed_point_inverse_error is not None
        ):
            raise UnsupportedSchemeError(
                f"memory='reversible' needs an inverse, and {self.inverse_error} "
                f"Nor is it a fixed point: {self.fixed_point_inverse_error} "
                "Use memory='checkpoint' (exact gradients, memory O(sqrt(depth))) or memory='adjoint' "
                "(approximate gradients, memory O(1))."
            )
        if memory == "fixed_point":
            from odenet.nn.fixed_point import check_start

            # refuses a scheme whose updates are not c*old + held terms, or whose coefficients at
            # the starting parameters are not multiples of 2**-16 (exp(-mu*h) never is)
            check_start(scheme, {p.name: float((params or {}).get(p.name, p.default)) for p in scheme.params})
        if memory == "adjoint" and scheme.step not in self._param_names:
            raise UnsupportedSchemeError(
                f"memory='adjoint' rebuilds each layer's input by a step with -{scheme.step}, and scheme "
                f"{scheme.name} has no step parameter {scheme.step}; declare one ('step h = 0.1') or use "
                "memory='checkpoint'"
            )
        if memory == "adjoint":
            from odenet.analysis.inverse import negative_step_problem

            problem = negative_step_problem(scheme)
            if problem is not None:
                raise UnsupportedSchemeError(
                    f"memory='adjoint' rebuilds each layer's input by a step with -{scheme.step}, and in "
                    f"scheme {scheme.name} {problem}; use memory='checkpoint'"
                )
        from odenet.nn.reversible import DriftControl, check_budget

        self.memory_budget = check_budget(memory_budget, memory)
        self.drift = DriftControl(self, drift_tolerance, guard)
        self.graph_layers = 0  # layers whose graphs the last forward kept (memory_budget)
        self.graph_bytes: int | None = None  # what those graphs saved, where a budget in bytes measured it
        self._probe: tuple | None = None  # (input's description, bytes layer 0's graph saves)
        self.reconstruction_errors: list[tuple[int, float]] = []  # (layer, relative error) after backward
        self.kept_bytes = 0  # bytes kept for backward beyond the output in the last forward (copies, replay)
        self.repairs = 0  # release groups whose inputs the adaptive guard recomputed exactly
        self._foreign_checked = False  # the first backward pass checks what the functions reach
        # where each output state sits in the state vector (forward never touches sympy)
        position = {symbol: i for i, symbol in enumerate(scheme.state_vector)}
        self._output_index = [position[value(s)] for s in scheme.outputs]

    # -- construction ---------------------------------------------------------------------------
    def _generate(self) -> None:
        """The scheme's generated code (one object per scheme, see ``code.py``)."""
        self.code = scheme_code(self.scheme)

    @property
    def forward_code(self) -> StepCode:
        return self.code.forward

    @property
    def init_code(self) -> StepCode:
        return self.code.init

    def __getstate__(self):
        """Pickled by the scheme's text: generated functions are made again on load."""
        state = dict(self.__dict__)
        del state["code"]
        state["_probe"] = None
        state["scheme"] = format_scheme(self.scheme)
        return state

    def __setstate__(self, state):
        from odenet.language import parse

        earlier = {
            "memory_budget": None,
            "graph_layers": 0,
            "graph_bytes": None,
            "_probe": None,
            "implicit": False,
            "solves": [],
            "backward_solves": [],
            "rebuilds": [],
            "solver": Solver(),
        }  # older pickles
        super().__setstate__({**earlier, **state, "scheme": parse(state["scheme"])})
        self._generate()

    def _build_functions(self, functions: Mapping[str, FunctionSpec], depth: int) -> None:
        expected = [f.name for f in self.scheme.functions]
        given = list(functions)
        if sorted(given) != sorted(expected):
            missing = [n for n in expected if n not in functions]
            extra = [n for n in given if n not in expected]
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing)}")
            if extra:
                problems.append(f"unexpected {', '.join(extra)}")
            raise ConfigError(
                f"scheme {self.scheme.name} needs functions {', '.join(expected)}: {'; '.join(problems)}. "
                "Give each a factory (layer index -> nn.Module) or one shared nn.Module"
            )
        self.functions = nn.ModuleDict()
        self.shared: dict[str, bool] = {}
        for name in expected:
            spec = functions[name]
            if isinstance(spec, nn.Module):
                self.functions[name] = spec
                self.shared[name] = True
            elif callable(spec):
                modules = [spec(i) for i in range(depth)]
                for i, module in enumerate(modules):
                    if not isinstance(module, nn.Module):
                        raise ConfigError(
                            f"the factory for {name} returned {type(module).__name__} for layer {i}, "
                            "expected an nn.Module"
                        )
                self.functions[name] = nn.ModuleList(modules)
                self.shared[name] = False
            else:
                raise ConfigError(
                    f"function {name}: expected an nn.Module or a factory (layer index -> nn.Module), "
                    f"not {type(spec).__name__}"
                )

    def _build_params(self, overrides: Mapping[str, float], depth: int) -> None:
        self._param_names = [p.name for p in self.scheme.params]
        self.scheme.check_param_names(overrides)
        self.raw_params = nn.ParameterDict()
        self._intervals = {}
        for p in self.scheme.params:
            start = float(overrides.get(p.name, p.default))
            self._intervals[p.name] = p.interval
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

    @property
    def fixed_point_inverse_error(self) -> OdenetError | None:
        """Why the step's inverse is not a fixed point that iteration can find (None when it is)."""
        return self.code.fixed_point_inverse[1]

    def _assemble(self, state, unknowns) -> tuple[torch.Tensor, ...]:
        """The next state vector of an implicit step from its unknowns' values and the old vector."""
        return tuple(unknowns[i] if new else state[i] for new, i in self.code.implicit.assemble)

    @property
    def call_count(self) -> int:
        """How many distinct function calls one forward step makes (keys 0 .. call_count - 1)."""
        return self.code.call_count

    def vjp_code(self, learnable: tuple[str, ...], cached: bool) -> StepCode:
        """The source of :meth:`vjp`."""
        return self.code.vjp(learnable, cached)[0]

    def vjp(self, learnable: tuple[str, ...], cached: bool) -> Callable:
        """The step's generated vector-Jacobian product (see :func:`odenet.codegen.generate_vjp`)."""
        return self.code.vjp(learnable, cached)[1]

    @property
    def inverse_code(self) -> StepCode | None:
        """The generated inverse step, or None when the scheme has no explicit inverse."""
        return self.code.inverse.code

    @property
    def inverse_error(self) -> OdenetError | None:
        """Why the scheme has no explicit inverse (None when it has one)."""
        return self.code.inverse.error

    # -- pieces used by every mode --------------------------------------------------------------
    def layer_params(self, n: int) -> dict[str, torch.Tensor]:
        """The parameter values of layer ``n`` (learnable ones through their interval map)."""
        values = {}
        for name in self._param_names:
            if name in self.raw_params:
                values[name] = constrain(self.raw_params[name][n], self._intervals[name])
            else:
                values[name] = getattr(self, f"fixed_{name}")
        return values

    def function(self, name: str, n: int) -> nn.Module:
        return self.functions[name] if self.shared[name] else self.functions[name][n]

    def layer_modules(self, n: int) -> list[nn.Module]:
        return [self.function(name, n) for name in self.functions]

    def caller(self, n: int) -> Callable:
        def call(key, name, *args):
            return self.function(name, n)(*args)

        return call

    def step(
        self, n: int, state: tuple[torch.Tensor, ...], call: Callable | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Layer ``n`` applied to a state vector (plain autograd). ``call(key, name, *args)``, if
        given, evaluates the function calls instead of layer ``n``'s modules (to observe them); an
        implicit layer solves its step (``implicit.py``) and uses ``call`` for its last evaluation,
        at the solution."""
        if self.implicit:
            from odenet.nn.implicit import implicit_layer

            return implicit_layer(self, n, state, call)
        return self.code.step(state, self.layer_params(n), self.checked(call or self.caller(n), state, n))

    def steps(self, start: int, stop: int, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """Layers ``start .. stop-1`` applied in turn (plain autograd)."""
        for n in range(start, stop):
            state = self.step(n, state)
        return tuple(state)

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

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        inputs = self.split_input(x)
        return self.code.start(inputs, self.layer_params(0), _in_state_dtype(self.caller(0), inputs, 0))

    def checked(self, call: Callable, state, n: int) -> Callable:
        """``call`` for layer ``n``'s step: each result a tensor shaped like the state (where the
        step's arithmetic reads it), in the state's dtype (see ``generated.in_state_dtype``)."""
        return _in_state_dtype(call, state, n, self.forward_code.shaped)

    def output(self, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
        parts = [state[i] for i in self._output_index]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)

    # -- forward ----------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.run(self.initial_state(x)))

    def run(self, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """All ``depth`` layers on a full state vector, in this block's memory mode."""
        if self.implicit:
            return _run_implicit(self, state)
        if self.memory == "autograd":
            return self.steps(0, self.depth, state)
        return _run_saving_memory(self, state)

    def _run_checkpointed(self, state):
        """Segments of about sqrt(depth) layers through ``torch.utils.checkpoint`` (non-reentrant:
        random numbers, autocast and second-order gradients as torch does them); each segment's
        record replays the buffers its calls started from in the recomputation."""
        size = max(1, math.isqrt(self.depth))
        for start in range(0, self.depth, size):
            stop = min(start + size, self.depth)
            if not torch.is_grad_enabled():
                state = self.steps(start, stop, state)
                continue
            record = CallRecord(state, rng=False)

            def segment(*s, start=start, stop=stop, record=record):
                for n in range(start, stop):
                    s = self.step(n, s, record.caller(self, n))
                return tuple(s)

            state = checkpoint(segment, *state, use_reentrant=False, context_fn=record.contexts)
        return tuple(state)

    # -- inverse ----------------------------------------------------------------------------------
    def inverse_step(self, n: int, new_state, call=None):
        """The input of layer ``n`` from its output, by the derived inverse (state vectors), or by
        solving the fixed-point inverse (to the drift tolerance) where there is no
        explicit one (Euler, Heun)."""
        inverse, _, error = self.code.inverse
        reversed_state = reverse_history(self.scheme, new_state)
        if inverse is None:
            if self.fixed_point_inverse_error is not None:
                raise UnsupportedSchemeError(str(error))
            from odenet.nn.implicit import fixed_point_inverse_step, recording_caller

            caller = call or recording_caller(self, n, new_state)  # inverse(): buffers change once
            call = self.checked(caller, new_state, n)
            tol = self.drift.tolerance_for(new_state[0].dtype)
            out = fixed_point_inverse_step(self, n, reversed_state, call, tol)
        else:
            out = inverse(
                reversed_state, self.layer_params(n), self.checked(call or self.caller(n), new_state, n)
            )
        return reverse_history(self.scheme, out)

    def approximate_inverse_step(self, n: int, new_state, call=None):
        """The input of layer ``n`` rebuilt approximately: the forward step with ``-h`` (the scheme's
        step parameter, whatever its name), in reversed
        time (Sander et al. 2022). Exact for time-symmetric schemes such as leapfrog."""
        params = dict(self.layer_params(n))
        params[self.scheme.step] = -params[self.scheme.step]
        reversed_state = reverse_history(self.scheme, new_state)
        out = self.code.step(reversed_state, params, self.checked(call or self.caller(n), new_state, n))
        return reverse_history(self.scheme, out)

    @property
    def negative_step_points(self) -> dict[int, int]:
        """Which calls of the step with ``-h`` (:meth:`approximate_inverse_step`) evaluate a function
        at one of the forward step's points, read at the rebuilt input: ``{its key: the forward
        call's key}``. Leapfrog's ``f(y[n])`` is its own; Verlet's two calls are the forward's two,
        crossed. Such an evaluation serves the layer's vector-Jacobian product too (the adjoint's
        backward pass evaluates it once), and replays the forward call's random numbers."""
        return self.code.negative_step_points

    @torch.no_grad()
    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """The block's input from its output, when the output is the whole state (no hidden state,
        no history) and the scheme is explicitly reversible."""
        hidden = [s for s in self.scheme.states if s not in self.scheme.outputs or self.scheme.history[s]]
        if hidden or list(self.scheme.outputs) != list(self.scheme.inputs):
            raise UnsupportedSchemeError(
                f"scheme {self.scheme.name}: inverse(y) needs the output to be the whole state "
                "and the input; "
                f"{', '.join(hidden) if hidden else 'the input'} is not recoverable from the output alone"
            )
        k = len(self.scheme.outputs)
        state = tuple(y.chunk(k, dim=1)) if k > 1 else (y,)
        for n in reversed(range(self.depth)):
            state = self.inverse_step(n, state)
        return state[0] if k == 1 else torch.cat(state, dim=1)

    def extra_repr(self) -> str:
        budget = "" if self.memory_budget is None else f", memory_budget={self.memory_budget}"
        solver = f", solver={self.solver.method}, tol={self.solver.tol:g}" if self.implicit else ""
        return f"scheme={self.scheme.name}, depth={self.depth}, memory={self.memory}{budget}{solver}"


@torch.compiler.disable
def _run_saving_memory(block: SchemeBlock, state):
    """checkpoint, reversible, adjoint, fixed point: opaque to torch.compile (they manage their own
    graphs; nothing here is traced, so a first call that derives the inverse recompiles nothing)."""
    if block.memory == "reversible" and block.inverse_code is None:
        _refuse_lower_precision(block, state)
    block.rebuilds = []
    if block.memory == "checkpoint":
        return block._run_checkpointed(state)
    if block.memory == "fixed_point":
        from odenet.nn.fixed_point import run_fixed_point

        return run_fixed_point(block, state)
    from odenet.nn.reversible import run_reversible

    return run_reversible(block, state, exact=block.memory == "reversible")


def _refuse_lower_precision(block: SchemeBlock, state) -> None:
    """A fixed-point inverse cannot rebuild inputs under autocast to a lower precision: the
    functions' rounding makes the map jump by an eps of that precision near the input, so the
    iteration stalls about ten times above the tolerance the guard needs (measured: bfloat16,
    residual 1.3e-3 against 7.8e-4), and every rebuild would be repaired or refused."""
    from odenet.nn.replay import AutocastState

    dtype = state[0].dtype
    compute = AutocastState(state[0].device.type).compute_dtype(dtype)
    if compute != dtype:
        raise UnsupportedSchemeError(
            f"scheme {block.scheme.name} rebuilds its inputs by fixed-point iteration, which cannot reach "
            f"the reconstruction tolerance with {str(compute).removeprefix('torch.')} functions under "
            "autocast (their rounding moves the map by more); use memory='checkpoint' under autocast, or "
            "train without it"
        )


@torch.compiler.disable
def _run_implicit(block: SchemeBlock, state):
    """Implicit layers: a solve each, with data-dependent iteration counts (opaque to torch.compile)."""
    from odenet.nn.implicit import run_implicit

    return run_implicit(block, state)


def compile(
    scheme: Scheme,
    functions: Mapping[str, FunctionSpec],
    depth: int,
    memory: Memory = "autograd",
    params: Mapping[str, float] | None = None,
    drift_tolerance: float | None = None,
    guard: Guard = "adaptive",
    memory_budget: float | int | None = None,
    solver: Solver | SolverMethod | None = None,
) -> SchemeBlock:
    """Compile ``scheme`` into a trainable block of ``depth`` layers.

    ``functions`` maps each function symbol to a factory ``layer_index -> nn.Module`` (separate
    weights per layer) or to one ``nn.Module`` shared by all layers. ``memory`` is one of
    ``"autograd"``, ``"checkpoint"``, ``"reversible"``, ``"adjoint"``; ``params`` overrides the
    parameters' defaults. ``drift_tolerance`` is the accepted relative error of an input rebuilt in
    reversible mode (default: 100 eps of the dtype); ``guard`` says what happens when a rebuilt input
    passes it: ``"adaptive"`` recomputes exactly, ``"raise"`` raises ``ReconstructionError``.
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
