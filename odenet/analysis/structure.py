"""What a scheme keeps of a Hamiltonian flow: symplecticity and symmetry (time-reversibility).

**Symmetric**: the method equals its adjoint, ``Phi_h = (Phi_{-h})^-1``: a step with ``h`` and then
one with ``-h`` is the identity. Decided on the step's equations, for every function ``f``:

* explicit steps (and steps with an explicit inverse): the new values put into the equations with
  old and new values swapped and ``h`` negated must satisfy them identically; calls are compared
  at their points, exactly over the numbers' field (two calls at different points are independent,
  as they are for a general ``f``). A multistep recurrence is reversed the same way, index ``n+j``
  read as ``n+1-d-j``, which is the classical ``alpha_j = -alpha_(k-j)``, ``beta_j = beta_(k-j)``;
* implicit one-step schemes: the reversed equations are the equations themselves, up to a constant
  factor (the trapezoidal rule, implicit midpoint), or the Runge-Kutta tableau satisfies
  ``a_(s+1-i)(s+1-j) + a_ij = b_j`` and ``b_(s+1-i) = b_i`` in some order of its stages (Gauss);
* a one-step scheme whose test-equation matrix has ``M(-h) M(h) != I`` is not symmetric.

**Symplectic** (for a Hamiltonian reading of the limit ODE):

* one state, ``x' = f(x)`` with ``f = J grad H``: a Runge-Kutta tableau with ``b_i a_ij + b_j a_ji
  = b_i b_j`` is symplectic; one with ``R(z) R(-z) != 1`` (``R`` its stability function: the linear
  Hamiltonian systems) or failing the B-series condition ``a(u o v) + a(v o u) = a(u) a(v)`` on a
  pair of trees (necessary for every B-series method) is not;
* two states ``x, v`` of a separable system (each one's derivative reads only the other, ``x' =
  g(v)``, ``v' = f(x)``): a step that is a composition of kicks and drifts (each moves one state by
  a function of the other's current value) is symplectic in ``(x, v)`` when the functions are
  gradients, each kick or drift being a Hamiltonian flow; one whose test matrix has ``det M != 1``
  is not;
* a step with history, more states, or a limit ODE that is not Hamiltonian (friction, no step
  ``h``): ``None``, with the reason.

Every verdict is a proof (an identity, or a counterexample); where neither is found the answer is
``None`` and the reason says what was checked.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from odenet.analysis.bseries import first_failing_pair, symplectic_pair_failure
from odenet.analysis.fields import ALGEBRAIC_FAILURES, domain_matrix, field_of, is_zero, vanishes
from odenet.analysis.inverse import invert, negative_step_problem
from odenet.analysis.stability import amplification_matrix, linearize
from odenet.analysis.tableau import CallMask, Tableau, runge_kutta_tableau
from odenet.errors import NotReversibleError, OdenetError
from odenet.ir import Scheme, format_expr, function_calls, parse_value, value

__all__ = ["Structure", "structure", "structure_of", "tableau_pair_failure"]

PAIR_ORDER = 8  # the B-series symplecticity condition is checked on pairs of trees up to this size
_RETURNS = "a step with -h from the new values returns the old ones, for every f"
_UNDECIDED = "not decided: "  # how every reason of an open verdict starts


@dataclass(frozen=True, repr=False)
class Structure:
    """``symplectic`` and ``symmetric``: True or False when proved, None when not decided or when
    the notion does not apply; each with the reason in a sentence. ``repr`` is the two answers,
    ``str`` the answers with their reasons, a line each."""

    symplectic: bool | None
    symplectic_reason: str
    symmetric: bool | None
    symmetric_reason: str

    def answer(self, prop: str) -> str:
        """``"yes"``, ``"no"``, ``"not decided"`` or ``"does not apply"`` for ``prop``
        (``"symplectic"`` or ``"symmetric"``): a None whose reason starts "not decided" is open, any
        other None is a notion that does not apply (history, no step h, friction)."""
        verdict, reason = getattr(self, prop), getattr(self, f"{prop}_reason")
        if verdict is None:
            return "not decided" if reason.startswith(_UNDECIDED) else "does not apply"
        return "yes" if verdict else "no"

    def why(self, prop: str) -> str:
        """The reason for ``prop`` without its leading "not decided: " (the answer says it)."""
        return getattr(self, f"{prop}_reason").removeprefix(_UNDECIDED)

    def __repr__(self) -> str:
        return f"Structure(symplectic: {self.answer('symplectic')}; symmetric: {self.answer('symmetric')})"

    def __str__(self) -> str:
        return "\n".join(
            f"{prop}: {self.answer(prop)}: {self.why(prop)}" for prop in ("symplectic", "symmetric")
        )


def structure(
    scheme: Scheme,
    values: dict[str, sympy.Expr],
    matrix: sympy.Matrix | None,
    inverse: tuple[tuple[sympy.Symbol, sympy.Expr], ...] | None,
) -> Structure:
    """Decide both properties of ``scheme`` at the parameter ``values`` (the step ``h`` stays a
    symbol); ``matrix`` is the test-equation matrix ``M(lambda)``, ``inverse`` the derived explicit
    inverse's solution (old value, expression of the new ones) when there is one."""
    step = next((p.symbol for p in scheme.params if p.name == scheme.step), None)
    numbers = {sympy.Symbol(k, real=True): v for k, v in values.items() if k != scheme.step}
    if step is None:
        why = "the scheme has no step size (no parameter h, no `step` line) to reverse or to read an ODE by"
        return Structure(None, why, None, why)
    read = set().union(*(eq.expr.free_symbols for eq in scheme.steps))
    unread = [s for s in scheme.states if not any(value(s, -k) in read for k in range(scheme.history[s] + 1))]
    if unread:
        why = (
            f"not decided: the step never reads {', '.join(unread)} (stages written as states?), so "
            "its map on the states is not the method's"
        )
        return Structure(None, why, None, why)
    m = None if matrix is None else matrix.xreplace(numbers)
    context = _Context(scheme, step, numbers, m, inverse)
    symmetric, symmetric_reason = _symmetric(context)
    symplectic, symplectic_reason = _symplectic(context)
    at = ", ".join(
        f"{k} = {format_expr(v)}"
        for k, v in values.items()
        if k != scheme.step and sympy.Symbol(k, real=True) in read
    )
    if at:  # the verdicts hold at these values (a learnable gamma moves them)
        symplectic_reason += f" (at {at})"
        symmetric_reason += f" (at {at})"
    return Structure(symplectic, symplectic_reason, symmetric, symmetric_reason)


def structure_of(scheme: Scheme) -> Structure:
    """Both verdicts at the parameters' defaults, without the rest of the analysis (``odenet show``):
    the test-equation matrix and the inverse computed here."""
    try:
        solution = invert(scheme).solution
    except NotReversibleError:
        solution = None
    values = {p.name: p.default for p in scheme.params}
    try:
        matrix = amplification_matrix(scheme)
    except (ValueError, TypeError, NotImplementedError, OdenetError):  # a nonlinear term outside calls
        matrix = None
    return structure(scheme, values, matrix, solution)


@dataclass
class _Context:
    scheme: Scheme
    step: sympy.Symbol
    numbers: dict[sympy.Symbol, sympy.Expr]
    matrix: sympy.Matrix | None  # M(lambda, h) at the parameter values; None where not computed
    inverse: tuple[tuple[sympy.Symbol, sympy.Expr], ...] | None

    def __post_init__(self):
        self.tableau: Tableau | None = runge_kutta_tableau(self.scheme, self.numbers)
        # M is the test equation's only when it reads no state: a term outside the calls such as
        # -x**3 leaves x in it, and M(-h) would have to be taken at the new point (the chain rule)
        values = set(self.scheme.state_vector) | {value(s, 1) for s in self.scheme.states}
        self.linear = self.matrix is not None and not (self.matrix.free_symbols & values)

    @property
    def one_step(self) -> bool:
        return not any(self.scheme.history.values())


# -- exact identities with calls ------------------------------------------------------------------


def _identically_zero(expr: sympy.Expr) -> bool | None:
    """Whether ``expr`` vanishes for every function: its calls become one symbol per point (two
    calls at different points are independent for a general ``f``), then the expression is tested
    by :func:`~odenet.analysis.fields.is_zero`. None where a comparison could not be made exactly."""
    mask = CallMask()
    result = is_zero(sympy.expand(mask(expr)))
    if result is False and mask.uncertain:
        return None
    return result


def _all_zero(exprs) -> bool | None:
    verdicts = [_identically_zero(e) for e in exprs]
    if any(v is False for v in verdicts):
        return False
    return None if any(v is None for v in verdicts) else True


# -- symmetry -------------------------------------------------------------------------------------


def _symmetric(c: _Context) -> tuple[bool | None, str]:
    scheme = c.scheme
    negative = negative_step_problem(scheme)
    if negative is not None:  # sqrt(h): no step with -h to compare with
        return None, f"the step with -h is not defined: {negative}"
    depths = set(scheme.history.values())
    if len(depths) != 1:
        return None, "its states keep histories of different lengths: time reversal is not one map"
    if c.one_step:
        identity = _linear_round_trip(c) if c.linear else None
        if identity is False:
            return False, (
                "for the test equation f(u) = λu a step with h and then one with -h is not the "
                "identity (M(-h)·M(h) != I): the method is not its own adjoint"
            )
    depth = depths.pop()
    if depth and len(scheme.states) == 1 and c.linear and _linear_relation_reverses(c, depth) is False:
        return False, (
            "for the test equation f(u) = λu the recurrence read backwards with -h is another "
            "recurrence (its coefficients are not those of the forward one, reversed, up to a factor)"
        )
    rename = {value(s, o): value(s, 1 - depth - o) for s in scheme.states for o in range(-depth, 2)}
    rename[c.step] = -c.step
    if scheme.is_explicit and not scheme.coupled_stages:
        verdict = _reversed_holds(scheme, rename, _forward_map(scheme), c.numbers)
        if verdict is True:
            return True, _RETURNS
        if verdict is False:
            return False, "a step with -h from the new values does not return the old ones for every f"
        return None, "not decided: the step with -h could not be compared with the old values exactly"
    residuals = [r.xreplace(c.numbers) for r in scheme.update_residuals.values()]
    if not scheme.coupled_stages:
        swapped = [r.xreplace(rename) for r in residuals]
        for sign in (-1, 1):
            if _all_zero(s - sign * r for s, r in zip(swapped, residuals, strict=True)):
                return True, "its equations are unchanged when old and new values swap and h changes sign"
        if c.inverse is not None:
            graph = {}
            for old, expr in c.inverse:
                graph[old] = expr.xreplace(c.numbers).xreplace(graph)
            verdict = _all_zero(s.xreplace(graph) for s in swapped)
            if verdict is False:
                return False, "the step with -h from the new values does not return the old ones for every f"
            if verdict is True:
                return True, _RETURNS
    if c.tableau is not None:
        if _symmetric_tableau(c.tableau):
            return True, "its tableau satisfies a_(s+1-i)(s+1-j) + a_ij = b_j and b_(s+1-i) = b_i"
        tested = "M(-h)·M(h) = I, but " if c.linear and c.one_step else ""
        return (
            None,
            f"not decided: {tested}the tableau is symmetric in no order of its stages (a reducible method?)",
        )
    return None, (
        "not decided: an implicit step whose equations change when old and new values swap, with "
        "no explicit inverse or tableau to compare"
    )


def _linear_round_trip(c: _Context) -> bool | None:
    """``M(-h) M(h) = I`` for the test equation, exactly: the product taken over the entries' field
    (rational functions of ``h`` and ``lambda``); None outside a number field (``exp(h)``)."""
    m = c.matrix
    n = m.rows
    both = domain_matrix(m.xreplace({c.step: -c.step}).row_join(m))
    generators = getattr(both.domain, "symbols", ())  # exp(h) as a generator would forget exp(-h)*exp(h) = 1
    if both.domain.is_EX or both.domain.is_EXRAW or any(not g.is_Symbol for g in generators):
        product = m.xreplace({c.step: -c.step}) * m - sympy.eye(n)
        return _all_zero(product)
    backward = both.extract(list(range(n)), list(range(n)))
    forward = both.extract(list(range(n)), list(range(n, 2 * n)))
    product = (backward * forward).to_list()
    one = both.domain.one  # compared by difference: a fraction over QQ<a> keeps c/c unreduced
    return all(not (product[i][j] - (one if i == j else 0)) for i in range(n) for j in range(n))


def _linear_relation_reverses(c: _Context, depth: int) -> bool | None:
    """For one state with history and ``f(u) = lambda*u``: whether the linear recurrence
    ``sum_o c_o x[n+o] = 0`` read backwards with ``-h``, ``sum_o c_(1-d-o)(-h) x[n+o]``, has
    coefficients parallel to the forward ones (the same recurrence): necessary for symmetry."""
    (state,) = c.scheme.states
    residual = linearize(c.scheme.update_residuals[state].xreplace(c.numbers))
    offsets = range(-depth, 2)
    forward = [sympy.diff(residual, value(state, o)) for o in offsets]
    backward = [
        sympy.diff(residual, value(state, 1 - depth - o)).xreplace({c.step: -c.step}) for o in offsets
    ]
    crossed = [
        forward[i] * backward[j] - forward[j] * backward[i] for i in range(len(forward)) for j in range(i)
    ]
    return _all_zero(crossed)


def _forward_map(scheme: Scheme) -> dict[sympy.Symbol, sympy.Expr]:
    """Each stage and new value of an explicit step as an expression of the old values."""
    done: dict[sympy.Symbol, sympy.Expr] = {}
    for eq in scheme.steps:
        done[eq.target] = eq.expr.xreplace(done)
    return {k: v for k, v in done.items() if parse_value(k) is not None}


def _reversed_holds(scheme: Scheme, rename, forward, numbers) -> bool | None:
    """Whether the reversed step (values renamed by ``rename``, stages fresh) computes the old
    values from the forward step's new ones, identically."""
    primes = {eq.target: sympy.Dummy(f"{eq.target}'") for eq in scheme.stages}
    computed: dict[sympy.Symbol, sympy.Expr] = {}
    forward = {k: v.xreplace(numbers) for k, v in forward.items()}
    for eq in scheme.steps:
        expr = eq.expr.xreplace(numbers).xreplace({**rename, **primes})
        target = primes.get(eq.target, rename.get(eq.target, eq.target))
        computed[target] = expr.xreplace(computed).xreplace(forward)
    olds = [value(s, -scheme.history[s]) for s in scheme.states]
    return _all_zero(computed[old] - old for old in olds)


def _in_field(t: Tableau):
    """``(domain, a, b)``: the tableau's entries in the field of its numbers; None outside one."""
    try:
        domain, flat = field_of([*t.b, *(x for row in t.a for x in row)])
    except ALGEBRAIC_FAILURES:
        return None
    s = t.stages
    return domain, [flat[s + i * s : s + (i + 1) * s] for i in range(s)], flat[:s]


def _symmetric_tableau(t: Tableau) -> bool:
    """A stage order in which ``a_(s+1-i)(s+1-j) + a_ij = b_j`` and ``b_(s+1-i) = b_i``: a
    bijection ``sigma`` with ``a_sigma(i)sigma(j) = b_j - a_ij`` and ``b_sigma(i) = b_i``, found by
    search (each stage's candidates pruned by its ``b`` and its diagonal entry)."""
    found = _in_field(t)
    if found is None:
        return False
    _, a, b = found
    s = t.stages
    candidates = [[j for j in range(s) if b[j] == b[i] and a[j][j] == b[i] - a[i][i]] for i in range(s)]
    sigma: list[int] = []

    def extend() -> bool:
        i = len(sigma)
        if i == s:
            return True
        for j in candidates[i]:
            if j in sigma:
                continue
            if all(a[j][sigma[k]] == b[k] - a[i][k] and a[sigma[k]][j] == b[i] - a[k][i] for k in range(i)):
                sigma.append(j)
                if extend():
                    return True
                sigma.pop()
        return False

    return extend()


# -- symplecticity --------------------------------------------------------------------------------


def _symplectic(c: _Context) -> tuple[bool | None, str]:
    scheme = c.scheme
    if not c.one_step:
        old = next(value(s, -d) for s, d in scheme.history.items() if d)
        return None, f"a multistep step (it reads {old}): symplecticity is a property of one-step maps"
    if len(scheme.states) == 1:
        return _symplectic_one_state(c)
    if len(scheme.states) == 2:
        return _symplectic_pair(c)
    return None, "more than two states: no Hamiltonian reading is tried"


def _symplectic_one_state(c: _Context) -> tuple[bool | None, str]:
    (state,) = c.scheme.states
    if len(c.scheme.functions) != 1:
        return None, "several functions in one state's step: no Hamiltonian reading is tried"
    f = c.scheme.functions[0].name
    hamiltonian = f"for every Hamiltonian {state}' = {f}({state}), {f} = J grad H"
    if c.linear and _linear_round_trip(c) is False:
        return False, (
            f"not symplectic {hamiltonian}: for the linear ones the step is R(hA) with R(z)·R(-z) != 1"
        )
    if c.tableau is None:
        found = symplectic_pair_failure(c.scheme, state, f, c.step, c.numbers, PAIR_ORDER)
        if found is None:
            tested = ", and R(z)·R(-z) = 1" if c.linear else ""
            return None, f"not decided: neither a Runge-Kutta method nor a B-series method{tested}"
        holds, pair = found
        if not holds and pair is not None:
            return False, _pair_text(hamiltonian, pair)
        return None, (
            "not decided: not a Runge-Kutta method; its B-series satisfies a(u∘v) + a(v∘u) = a(u)·a(v) "
            f"on every pair of trees up to {PAIR_ORDER} nodes (necessary; not proved beyond)"
        )
    verdict = _runge_kutta_symplectic(c.tableau)
    if verdict is True:
        return True, f"symplectic {hamiltonian}: its tableau satisfies b_i a_ij + b_j a_ji = b_i b_j"
    pair = tableau_pair_failure(c.tableau)
    if pair is not None:
        return False, _pair_text(hamiltonian, pair)
    return None, (
        "not decided: b_i a_ij + b_j a_ji != b_i b_j, but the B-series condition holds on every pair "
        f"of trees up to {PAIR_ORDER} nodes"
    )


def _runge_kutta_symplectic(t: Tableau) -> bool | None:
    found = _in_field(t)
    if found is None:
        return None
    _, a, b = found
    s = t.stages
    return all(b[i] * a[i][j] + b[j] * a[j][i] == b[i] * b[j] for i in range(s) for j in range(s))


def tableau_pair_failure(t: Tableau):
    """The first pair of trees (by size) failing ``a(u o v) + a(v o u) = a(u) a(v)``, with ``a``
    the tableau's elementary weights; None if none up to :data:`PAIR_ORDER` nodes."""
    found = _in_field(t)
    if found is None:
        return None
    domain, a, b = found
    s = t.stages
    stage_weights: dict = {}

    def internal(tree) -> list:
        if tree not in stage_weights:
            out = [domain.one] * s
            for child in tree:
                inner = internal(child)
                out = [out[i] * sum((a[i][j] * inner[j] for j in range(s)), domain.zero) for i in range(s)]
            stage_weights[tree] = out
        return stage_weights[tree]

    def weight(tree):
        phi = internal(tree)
        return sum((b[i] * phi[i] for i in range(s)), domain.zero)

    return first_failing_pair(weight, lambda x: not x, PAIR_ORDER)


def _pair_text(hamiltonian: str, pair) -> str:
    u, v = (_tree_text(t) for t in pair)
    return (
        f"not symplectic {hamiltonian}: the B-series condition a(u∘v) + a(v∘u) = a(u)·a(v) fails "
        f"for u = {u}, v = {v}"
    )


def _tree_text(tree) -> str:
    """``•`` for the single node, ``[•, [•]]`` for a root with those children."""
    if not tree:
        return "•"
    return "[" + ", ".join(_tree_text(child) for child in tree) + "]"


def _symplectic_pair(c: _Context) -> tuple[bool | None, str]:
    scheme = c.scheme
    x, v = scheme.states
    shears = _shears(scheme, c.numbers) if scheme.is_explicit and not scheme.coupled_stages else None
    functions = " and ".join(f.name for f in scheme.functions) or "no function"
    gradients = f"when {functions} {'are gradients' if len(scheme.functions) > 1 else 'is a gradient'}"
    if shears is not None:
        return True, (
            f"symplectic in ({x}, {v}) {gradients}: the step is a composition of {shears} kicks and drifts, "
            "each moving one state by a function of the other's current value (a Hamiltonian flow)"
        )
    if not scheme.is_explicit or scheme.coupled_stages:
        return None, (
            f"not decided: an implicit step of ({x}, {v}) is neither proved a composition of kicks and "
            "drifts nor refuted here"
        )
    reading = _separable(scheme, c.step)
    if reading is not None:
        return None, reading
    det = sympy.Matrix(c.matrix).det() if c.linear else None
    if det is not None and vanishes(sympy.together(det - 1)) is False:
        return False, (
            f"not symplectic in ({x}, {v}): for f(u) = λu (a gradient) "
            f"det M = {format_expr(sympy.factor(det))}, not 1 (the step does not keep area)"
        )
    if det is None:
        return None, (
            "not decided: the step is not a composition of kicks and drifts, and its linearization "
            "reads the state (a term outside the calls), so the test equation decides nothing"
        )
    return None, (
        "not decided: det M = 1 for the test equation, and the step is not a composition of kicks and drifts"
    )


def _shears(scheme: Scheme, numbers) -> int | None:
    """The number of kicks and drifts the step is composed of, or None when it is not such a
    composition: each line that moves a state sets its new current value to the current one plus
    terms that read only the other state's current value (affinely, or through calls at affine
    arguments); lines of numbers and parameters are coefficients, other stages (``k = f(x1)``) are
    written in where they are read."""
    x, v = scheme.states
    current = {x: value(x, 0), v: value(v, 0)}
    steps = {eq.target for eq in scheme.steps} | {value(s, o) for s in (x, v) for o in (0, 1)}
    step = sympy.Symbol(scheme.step, real=True)
    written: dict[sympy.Symbol, sympy.Expr] = {}
    count = 0
    for eq in scheme.steps:
        expr = eq.expr.xreplace(numbers).xreplace(written)
        if not expr.free_symbols - {step} and not function_calls(expr):
            written[eq.target] = expr  # a coefficient
            continue
        parsed = parse_value(eq.target)
        moved = None
        for mine, other in ((x, v), (v, x)):
            if parsed is not None and parsed[0] != mine:
                continue
            increment = sympy.expand(expr - current[mine])
            if (increment.free_symbols & steps) <= {current[other]} and _affine_in(increment, current[other]):
                moved = mine
                break
        if moved is None:
            if parsed is not None:
                return None
            written[eq.target] = expr
            continue
        current[moved] = eq.target
        count += 1
    if current[x] != value(x, 1) or current[v] != value(v, 1):
        return None
    return count


def _affine_in(increment: sympy.Expr, other: sympy.Symbol) -> bool:
    """``increment`` is a gradient of the other state for any gradient functions: a sum of terms
    each a constant, a constant times ``other``, or a constant times one call at an argument affine
    in ``other`` (states are vectors and products are elementwise: ``x*f(x)`` or ``f(x)**2`` is not
    a gradient, and is refused)."""
    for term in sympy.Add.make_args(sympy.expand(increment)):
        calls = function_calls(term)
        if not calls:
            if not (term.is_polynomial(other) and sympy.degree(term, other) <= 1):
                return False
            continue
        if len(calls) != 1:  # a product of calls, or a call inside a call
            return False
        (call,) = calls
        factor = sympy.cancel(term / call)
        if factor.free_symbols & {other} or function_calls(factor) or not factor.is_polynomial():
            return False
        if any(not (arg.is_polynomial(other) and sympy.degree(arg, other) <= 1) for arg in call.args):
            return False
    return True


def _separable(scheme: Scheme, step: sympy.Symbol) -> str | None:
    """Why the limit ODE has no Hamiltonian reading (a state's derivative reads itself), or None."""
    forward = _forward_map(scheme)
    x, v = scheme.states
    derivatives = {}
    for s in (x, v):
        change = forward[value(s, 1)] - value(s, 0)
        if _identically_zero(change.xreplace({step: 0})) is not True:
            return f"no limit ODE in ({x}, {v}): the step still moves {s} when h = 0"
        derivative = sympy.diff(change, step).xreplace({step: 0}).doit()
        derivatives[s] = derivative
    plain = {value(s, 0): sympy.Symbol(s) for s in (x, v)}
    ode = "; ".join(f"{s}' = {format_expr(d.xreplace(plain))}" for s, d in derivatives.items())
    for s, other in ((x, v), (v, x)):
        if value(s, 0) in derivatives[s].free_symbols or value(other, 0) not in derivatives[s].free_symbols:
            return f"its limit ODE, {ode}, is not a separable Hamiltonian system"
    return None
