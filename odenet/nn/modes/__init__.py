"""Memory modes as objects: ``compile(scheme, functions, depth, memory=Reversible(guard="raise"))``.

========================  ==========================================================================
``Autograd()``            everything kept (plain PyTorch); any explicit scheme
``Checkpoint()``          the inputs of about sqrt(depth) segments; exact gradients
``Reversible(...)``       only the output: inputs rebuilt by the derived inverse; exact gradients
``Adjoint(...)``          only the output: inputs rebuilt by a step with -h; approximate gradients
``FixedPoint()``          states held as integers, inputs rebuilt bit for bit
``Implicit(solver=...)``  a solve per layer of an implicit scheme, implicit-function backward
========================  ==========================================================================

A mode's name (``memory="reversible"``) and the keyword arguments ``compile`` has always taken
(``drift_tolerance``, ``guard``, ``memory_budget``, ``solver``) resolve to these objects
(:func:`resolve`). A new mode is one file and one line in :data:`MODES`.
"""

from __future__ import annotations

from odenet.errors import ConfigError
from odenet.ir import Scheme
from odenet.nn.budget import check_budget
from odenet.nn.drift import check_guard, check_tolerance
from odenet.nn.modes.adjoint import Adjoint
from odenet.nn.modes.autograd import Autograd
from odenet.nn.modes.base import Layers, MemoryMode, PassReport
from odenet.nn.modes.checkpoint import Checkpoint
from odenet.nn.modes.fixed_point import FixedPoint
from odenet.nn.modes.implicit import Implicit
from odenet.nn.modes.reversible import Reversible
from odenet.nn.solvers import check_solver

__all__ = [
    "MODES",
    "Adjoint",
    "Autograd",
    "Checkpoint",
    "FixedPoint",
    "Implicit",
    "Layers",
    "MemoryMode",
    "PassReport",
    "Reversible",
    "legacy",
    "resolve",
]

MODES: dict[str, type[MemoryMode]] = {
    mode.name: mode for mode in (Autograd, Checkpoint, Reversible, Adjoint, FixedPoint, Implicit)
}

# compile()'s keyword arguments, and the option of a mode object each one sets
_KEYWORDS = {"drift_tolerance": "tolerance", "guard": "guard", "memory_budget": "budget", "solver": "solver"}


def resolve(memory, implicit: bool, **keywords) -> MemoryMode:
    """The mode object ``compile(..., memory=memory, **keywords)`` asks for: ``memory`` a mode's
    name or a :class:`MemoryMode`; ``keywords`` the legacy options (``drift_tolerance``, ``guard``,
    ``memory_budget``, ``solver``: None or the default when not given). For an ``implicit``
    scheme, ``"autograd"`` means :class:`Implicit`."""
    given = {k: v for k, v in keywords.items() if v is not None and not (k == "guard" and v == "adaptive")}
    if isinstance(memory, MemoryMode):
        if given:
            options = ", ".join(f"{_KEYWORDS[k]}=..." for k in given)
            raise ConfigError(
                f"give {', '.join(given)} to the mode object ({type(memory).__name__}({options})), "
                f"not to compile, when memory is one"
            )
        if implicit and isinstance(memory, Autograd):
            return Implicit()
        return memory
    if not isinstance(memory, str) or memory not in MODES:
        raise ConfigError(f"memory must be one of {', '.join(MODES)} or a mode object, not {memory!r}")
    name = "implicit" if implicit and memory == "autograd" else memory
    cls = MODES[name]
    options = {_KEYWORDS[k]: v for k, v in given.items() if _KEYWORDS[k] in cls.options}
    # an option the mode does not take is still checked, as compile always has (the mode checks its own)
    checks = {
        "guard": check_guard,
        "drift_tolerance": check_tolerance,
        "memory_budget": lambda budget: check_budget(budget, memory),
        "solver": check_solver,
    }
    for keyword, value in given.items():
        if _KEYWORDS[keyword] not in cls.options:
            checks[keyword](value)
    return cls(**options)


def legacy(state: dict, scheme: Scheme) -> tuple[MemoryMode, PassReport, dict]:
    """The mode and pass report of a block pickled before modes were objects, and the rest of its
    attributes under their present names."""
    state = dict(state)
    drift = state.pop("drift", None)
    mode = resolve(
        state.pop("memory", "autograd"),
        not scheme.is_explicit,
        drift_tolerance=getattr(drift, "tolerance", None),
        guard=getattr(drift, "guard", "adaptive"),
        memory_budget=state.pop("memory_budget", None),
        solver=state.pop("solver", None),
    )
    report = PassReport(mode.name)
    for name in ("solves", "backward_solves", "rebuilds", "reconstruction_errors", "kept_bytes", "repairs"):
        if name in state:
            setattr(report, name, state.pop(name))
    for name in ("graph_layers", "graph_bytes", "_probe", "implicit", "_foreign_checked"):
        state.pop(name, None)
    state["intervals"] = state.pop("_intervals", {p.name: p.interval for p in scheme.params})
    state["start_values"] = {p.name: float(p.default) for p in scheme.params}
    return mode, report, state
