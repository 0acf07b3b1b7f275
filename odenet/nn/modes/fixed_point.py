"""``memory="fixed_point"``: reversible training with bit-exact rebuilds (Maclaurin et al. 2015).

An inverse that divides (momentum: ``v[n] = (v[n+1] - (1-gamma) f(x[n])) / gamma``) multiplies
floating-point rounding error by ``1/gamma`` per layer, so ``memory="reversible"`` keeps exact
copies of the state to bound the drift. Here the states are held as integers instead (fixed point,
``RADIX`` fractional bits) and every update is an exact integer map, so that the backward pass
rebuilds each layer's input bit for bit at any depth, and no copy is needed.

**Which schemes.** Each update must read ``new = c * old + remainder``, where ``old`` is the value
the update replaces (``v[n]``; ``u[n-1]`` for a state with history), ``c`` a nonzero expression of
the parameters, and the remainder reads only values still held at that point (momentum, LM-ResNet,
leapfrog, the Hamiltonian and RevNet schemes). The functions are evaluated in floating point on
the states' floating-point views; their results are rounded onto the fixed-point grid and added
exactly, so the backward pass, which evaluates them again at bit-identical inputs (under the same
random numbers, autocast and buffers, ``replay.py``), subtracts the same integers.

**Multiplication by c, exactly.** ``c`` is rounded to ``n / 2**k`` (the parameters are rounded to
``COEFFICIENT_BITS`` binary digits, and ``c`` must come out with a denominator of at most
``2**COEFFICIENT_BITS``). ``r -> c r`` loses information when ``|c| < 1``: the low ``k`` bits of
``r`` are pushed onto a per-element integer buffer ``B`` (``B = B * 2**k + r mod 2**k``), ``r`` is
divided by ``2**k`` and multiplied by ``n``, and ``log2 n`` bits are popped back from the buffer
into the emptied low digits (``r += B mod n; B //= n``). Undoing it runs the same moves backwards.
The buffer grows by ``log2(2**k / n) = log2(1/|c|)`` bits per element and layer, which is the
information the contraction destroys: no exact inverse can keep less. When a buffer could pass
``2**62`` (bounded on the host from the coefficients alone, so the schedule is the same in both
passes), it is set aside whole and restarted from zero.

**Accuracy and refusals.** The block computes the scheme with its parameters rounded to
``COEFFICIENT_BITS`` digits (gamma = 0.9 runs as 58982/65536 = 0.899994) and its states on a grid
of ``2**-RADIX``, a rounding of about ``2**(COEFFICIENT_BITS - RADIX)`` per multiplication; its
gradients are the float step's gradients at those parameters. A state or remainder outside
``±2**(62 - RADIX)`` (about ±16384) cannot be held: the forward pass raises rather than wrap around.
The backward pass compares the input it rebuilt with the block's input, bit for bit, and raises
:class:`~odenet.errors.ReconstructionError` if they differ (a function that does not give the same
numbers when evaluated again).
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import sympy
import torch

from odenet.analysis.exact import exact_parts
from odenet.errors import ReconstructionError, UnsupportedSchemeError
from odenet.ir import Scheme, parse_value, value
from odenet.nn.modes.base import NO_CONTEXT, MemoryMode
from odenet.nn.rebuild import RebuildPass, parameter_bytes, run_groups, shortest_group, to_host
from odenet.nn.vjp import kept_call, layer_vjp

__all__ = ["COEFFICIENT_BITS", "RADIX", "FixedPoint", "check_start", "to_fixed"]

RADIX = 48  # fractional bits of a state
COEFFICIENT_BITS = 16  # binary digits of the parameters, and at most of a coefficient's denominator
LIMIT = 2**62  # largest magnitude of a held integer (a margin below int64's 2**63)


# -- the scheme's updates as c * old + remainder -------------------------------------------------------


def check_start(scheme: Scheme, values: dict[str, float]) -> None:
    """Refuse, when a block is built, a scheme this mode cannot run: updates not of the form
    ``c*old + held terms`` (:func:`exact_parts`), or a coefficient that is not a multiple of
    ``2**-COEFFICIENT_BITS`` at the starting parameters, rounded (a transcendental one never is)."""
    scale = 2**COEFFICIENT_BITS
    rounded = {p.symbol: Fraction(round(values[p.name] * scale), scale) for p in scheme.params}
    for i, (_, _, c, _) in enumerate(exact_parts(scheme)):
        _Plan.coefficient(c, i, 0, rounded, scheme.name)


# -- the plan of one forward pass: coefficients, parameters, buffer spills ---------------------------


class _Plan:
    """Each layer's rounded parameters (as tensors for the generated code), each update's
    ``(n, d, sign)`` with ``c = sign * n / d``, and where buffers are set aside."""

    def __init__(self, layers, coefficients: tuple, dtype: torch.dtype, device: torch.device):
        scheme, depth = layers.scheme, layers.depth
        names = [p.name for p in scheme.params]
        # one host read for every parameter of every layer
        per_layer = {name: layers.parameter_values(name) for name in names}
        host = to_host(torch.stack([v.to(torch.float64) for v in per_layer.values()])) if names else []
        scale = 2**COEFFICIENT_BITS
        rounded = [[Fraction(round(v * scale), scale) for v in row] for row in host]
        # 16 binary digits after the point: float32 at least holds them (float16 does not)
        wide = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        table = torch.tensor([[float(v) for v in row] for row in rounded], dtype=wide, device=device)
        self.values = [{name: table[i, n] for i, name in enumerate(names)} for n in range(depth)]
        symbols = [p.symbol for p in scheme.params]
        rows: dict[tuple, list] = {}  # layers with equal parameters share their coefficients
        self.coefficients = []
        for n in range(depth):
            key = tuple(row[n] for row in rounded)
            if key not in rows:
                rows[key] = [
                    self.coefficient(c, i, n, dict(zip(symbols, key, strict=True)), scheme.name)
                    for i, c in enumerate(coefficients)
                ]
            self.coefficients.append(rows[key])
        # a buffer is set aside before a push that could take it past LIMIT (worst case)
        self.spills: set[tuple[int, int]] = set()
        self.first_push = [depth] * len(coefficients)
        bounds = [0] * len(coefficients)
        for n in range(depth):
            for i, (num, den, _) in enumerate(self.coefficients[n]):
                if num == den == 1:
                    continue
                self.first_push[i] = min(self.first_push[i], n)
                if bounds[i] * den + den - 1 >= LIMIT:
                    self.spills.add((n, i))
                    bounds[i] = 0
                bounds[i] = (bounds[i] * den + den - 1) // num

    @staticmethod
    def coefficient(c, i: int, n: int, values: dict, name: str) -> tuple[int, int, int]:
        """``(n, d, sign)`` of ``c`` at the rounded parameters, or a refusal."""
        scale = 2**COEFFICIENT_BITS
        exact = sympy.nsimplify(c).xreplace(
            {k: sympy.Rational(v.numerator, v.denominator) for k, v in values.items()}
        )
        number = exact
        exact = sympy.Rational(exact) if exact.is_Rational else None
        if exact is None or exact == 0 or exact.q > scale or exact.q & (exact.q - 1):
            if exact is None:
                shown = f"irrational ({float(number):.6g})" if number.is_number else "not a number"
            else:
                shown = str(exact)
            raise UnsupportedSchemeError(
                f"memory='fixed_point': the coefficient {c} of update {i} of {name} is "
                f"{shown} at layer {n} with the parameters "
                f"rounded to {COEFFICIENT_BITS} binary digits; it must be a nonzero multiple of "
                f"2**-{COEFFICIENT_BITS}. Use memory='reversible'"
            )
        return (abs(exact.p), exact.q, 1 if exact > 0 else -1)


# -- integer arithmetic --------------------------------------------------------------------------------


_WIDE = (torch.float32, torch.float64)  # scaling by 2**48 is exact in these (no overflow)


def to_fixed(t: torch.Tensor) -> torch.Tensor:
    """The nearest point of the grid (the scaling by a power of two is exact, the rounding is one)."""
    wide = t if t.dtype in _WIDE else t.float()
    return torch.round(wide * 2.0**RADIX).to(torch.int64)


def to_float(r: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The floating-point view: one rounding of the integer, then an exact scaling."""
    if dtype in _WIDE:
        return r.to(dtype).mul_(2.0**-RADIX)
    return r.float().mul_(2.0**-RADIX).to(dtype)


def _divmod(r: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Floor quotient and remainder in [0, d): shifts and masks for a power of two (two's complement
    makes them floor division for negative numbers too), one division otherwise."""
    if d & (d - 1) == 0:
        shift = d.bit_length() - 1
        return r >> shift, r & (d - 1)
    q = torch.div(r, d, rounding_mode="floor")
    return q, r - q * d


def _out_of_range(t: torch.Tensor) -> torch.Tensor:
    """Whether a floating-point value cannot be held (NaN included), as one boolean on the device."""
    low, high = torch.aminmax(t.detach())
    bound = 2.0 ** (62 - RADIX)
    return ~((low > -bound) & (high < bound))


def _too_large(r: torch.Tensor, limit: int) -> torch.Tensor:
    low, high = torch.aminmax(r)
    return (low < -limit) | (high > limit)


class _Pass(RebuildPass):
    """One forward pass and its backward: registers, buffers, the plan, the record of calls."""

    def __init__(self, layers, mode, state: tuple[torch.Tensor, ...], context=NO_CONTEXT):
        super().__init__(layers, mode, state, layers.depth, context)
        code = layers.code.exact
        self.step, self.inverse = code.step, code.inverse
        self.plan = _Plan(layers, code.coefficients, self.dtype, self.device)
        vector = list(layers.scheme.state_vector)
        self.position = {s: i for i, s in enumerate(vector)}
        # for update i: the slot of the value it replaces (forward), of its new value (inverse)
        parts = exact_parts(layers.scheme)
        self.slots = [self.position[old] for _, old, _, _ in parts]
        self.new_slots = [self.position[value(parse_value(old)[0])] for _, old, _, _ in parts]
        # after a step, slot j (value s[n-lag]) holds what slot of s[n-lag+1] held, and slot of
        # s[n] holds the replaced one's register (history rotates)
        self.rotation = []
        for s in vector:
            name, offset = parse_value(s)
            depth = layers.scheme.history[name]
            source = value(name, -depth) if offset == 0 else value(name, offset + 1)
            self.rotation.append(self.position[source])
        self.unrotation = [self.rotation.index(j) for j in range(len(vector))]
        self.buffers: list[torch.Tensor | None] = [None] * len(code.coefficients)  # None until the first push
        self.set_aside: list[torch.Tensor] = []
        self.registers: list[torch.Tensor] = []
        self.floats: list[torch.Tensor] = []  # the registers' floating-point views
        self.bad = torch.zeros((), dtype=torch.bool, device=self.device)
        self.input: tuple[torch.Tensor, ...] = ()
        self.reached, self.checked = layers.depth, False  # the lowest layer undone; input checked
        self.top: tuple = ()

    def views(self, registers) -> tuple[torch.Tensor, ...]:
        return tuple(to_float(r, self.dtype) for r in registers)

    def hold(self, registers, floats=None) -> None:
        """Set the integer state and its floating-point views (computed unless given)."""
        self.registers = list(registers)
        self.floats = list(floats) if floats is not None else list(self.views(registers))

    def _remainder(self, g, like: torch.Tensor) -> torch.Tensor:
        if not isinstance(g, torch.Tensor):
            g = torch.full_like(like, float(g), dtype=torch.float64)
        self.bad = self.bad | _out_of_range(g)
        return to_fixed(g)

    def forward_layer(self, n: int, call) -> None:
        registers, floats = list(self.registers), list(self.floats)
        coefficients = self.plan.coefficients[n]

        def update(i, g):
            slot = self.slots[i]
            r = registers[slot]
            num, den, sign = coefficients[i]
            if (num, den) != (1, 1):
                buffer = self.buffers[i]
                if buffer is None or (n, i) in self.plan.spills:  # the first push, or a spill
                    if buffer is not None:
                        self.set_aside.append(buffer)
                    buffer = torch.zeros_like(r)
                r, low = _divmod(r, den)
                buffer = buffer * den + low  # push the low digits
                if num > den:  # |c| > 1: the product must not wrap around
                    self.bad = self.bad | _too_large(r, LIMIT // num)
                self.buffers[i], digits = _divmod(buffer, num)  # pop as many as n holds
                r = r * num + digits
            r = (r if sign > 0 else -r) + self._remainder(g, r)
            self.bad = self.bad | _too_large(r, LIMIT)
            registers[slot], floats[slot] = r, to_float(r, self.dtype)
            return floats[slot]

        self.step(tuple(self.floats), self.plan.values[n], self.layers.checked(call, self.floats, n), update)
        self.hold([registers[j] for j in self.rotation], [floats[j] for j in self.rotation])

    def inverse_layer(self, n: int, call) -> None:
        registers, floats = list(self.registers), list(self.floats)
        coefficients = self.plan.coefficients[n]

        def undo(i, g):
            slot = self.new_slots[i]
            r = registers[slot] - self._remainder(g, registers[slot])
            num, den, sign = coefficients[i]
            r = r if sign > 0 else -r
            if (num, den) != (1, 1):
                r, digits = _divmod(r, num)
                buffer = self.buffers[i] * num + digits
                buffer, low = _divmod(buffer, den)
                r = r * den + low
                first = n == self.plan.first_push[i]
                if first or (n, i) in self.plan.spills:  # back at the zero the buffer started from
                    self.bad = self.bad | (buffer != 0).any()
                    buffer = None if first else self.set_aside.pop()
                self.buffers[i] = buffer
            registers[slot], floats[slot] = r, to_float(r, self.dtype)
            return floats[slot]

        self.inverse(tuple(self.floats), self.plan.values[n], self.layers.checked(call, self.floats, n), undo)
        self.hold([registers[j] for j in self.unrotation], [floats[j] for j in self.unrotation])

    def check_input(self) -> None:
        """The rebuilt input against the block's input, bit for bit, and every buffer back at zero
        (one host read); a difference raises."""
        self.checked = True
        differ = [(r != to_fixed(x)).any() for r, x in zip(self.registers, self.input, strict=True)]
        mismatch = self.bad | torch.stack(differ).any()
        if to_host(mismatch.reshape(1).to(torch.float64))[0]:
            raise ReconstructionError(
                f"memory='fixed_point' rebuilt the input of {self.layers.scheme.name}'s block with different "
                "bits than the forward pass held: a function gave different numbers when evaluated "
                "again (a nondeterministic kernel, or state kept outside registered buffers); use "
                "memory='reversible' or 'checkpoint'"
            )

    def final_check(self) -> None:
        """At the end of a backward pass that stopped above layer 0: the remaining layers are
        undone without gradients (each call replayed) and the input checked."""
        if self.checked:
            return
        with torch.no_grad(), self.autocast.restored():
            for n in reversed(range(self.reached)):
                self.inverse_layer(n, self.record.caller(self.layers, n))
        self.check_input()

    def kept_bytes(self) -> int:
        held = [*self.set_aside, *(b for b in self.buffers if b is not None)]
        return sum(t.nbytes for t in held)

    # -- the engine's hooks (rebuild.py) ---------------------------------------------------------
    def forward_group(self, start, stop, state):
        for n in range(start, stop):
            self.forward_layer(n, self.record.caller(self.layers, n))
        return self.views(self.registers)  # new tensors: autograd's outputs, apart from the held views

    def begin_backward(self, saved):
        """From the saved top; if the lowest group takes no part (frozen layers, an input without
        grad), the rebuild is still checked, at the end of the backward pass."""
        self.hold(self.top[0])
        self.buffers, self.set_aside = list(self.top[1]), list(self.top[2])
        self.record.replay = True
        self.reached, self.checked = self.layers.depth, False
        torch.autograd.Variable._execution_engine.queue_callback(self.final_check)
        return tuple(self.floats)

    def backward_group(self, start, stop, grads, params, param_grads):
        wanted = {id(p): i for i, p in enumerate(params)}
        grads = list(grads)  # handed over to each layer's product in turn
        for n in reversed(range(start, stop)):
            cache: dict[int, tuple] = {}
            with torch.no_grad():
                self.inverse_layer(n, kept_call(self, n, cache))
            old = tuple(self.floats)
            grads = layer_vjp(self, n, old, grads, cache, wanted, param_grads, self.plan.values[n])
            self.reached = n
        if start == 0:
            self.check_input()
        self.handoff = tuple(self.floats)
        return grads


@dataclasses.dataclass(repr=False)
class FixedPoint(MemoryMode):
    """``memory="fixed_point"``: states held as integers, every input rebuilt bit for bit (see the
    module doc); parameters rounded to ``COEFFICIENT_BITS`` binary digits. Takes no options."""

    name = "fixed_point"
    exact_gradients = True

    def setup(self, layers) -> None:
        super().setup(layers)
        # refuses a scheme whose updates are not c*old + held terms, or whose coefficients at the
        # starting parameters are not multiples of 2**-16 (exp(-mu*h) never is)
        check_start(layers.scheme, layers.start_values)

    @torch.compiler.disable
    def run(self, layers, state, context=NO_CONTEXT):
        """All layers in fixed point (see the module doc)."""
        run = _Pass(layers, self, state, context)
        run.input = tuple(t.detach() for t in state)
        run.hold([to_fixed(t) for t in run.input])
        run.bad = run.bad | torch.stack([_out_of_range(t) for t in run.input]).any()
        report = layers.last_pass
        if not self.tracked(layers, state, context):
            with torch.no_grad():
                for n in range(layers.depth):
                    run.forward_layer(n, layers.caller(n, context))
            _check_range(run)
            report.kept_bytes = 0
            return run.views(run.registers)
        size = shortest_group(
            sum(t.nbytes for t in state), parameter_bytes(layers, run.function_params) / layers.depth
        )
        run.groups = [(low, min(low + size, layers.depth)) for low in range(0, layers.depth, size)]
        state = run_groups(run, state)
        _check_range(run)
        run.top = (list(run.registers), list(run.buffers), list(run.set_aside))
        report.kept_bytes = run.kept_bytes() + sum(r.nbytes for r in run.registers)
        return tuple(state)


def _check_range(run) -> None:
    if to_host(run.bad.reshape(1).to(torch.float64))[0]:
        raise ReconstructionError(
            f"memory='fixed_point': a state or update of {run.layers.scheme.name}'s block left the range "
            f"fixed point holds (|value| < 2**{62 - RADIX} = {2 ** (62 - RADIX)}, finite); use "
            "memory='reversible', or keep the activations smaller (normalization)"
        )
    run.bad = torch.zeros((), dtype=torch.bool, device=run.device)
