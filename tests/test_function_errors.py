"""What a user's function may get wrong, said where it happens: a result that is not a tensor, or a
tensor not shaped like the state, is refused with the function's name, its layer and both shapes,
in every mode; and a traceback through generated code shows the generated lines, in every
traceback printer (the interpreter's own reads files only)."""

from __future__ import annotations

import gc
import linecache
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import LIBRARY, accepted_modes
from torch import nn

import odenet
from odenet.codegen import compile_source, generate_step
from odenet.errors import FunctionOutputError
from odenet.nn.generated import namespace

WIDTH = 4


class _Pair(nn.Module):
    """A transformer layer's habit: (hidden states, attention weights)."""

    def forward(self, u):
        return u, u


NAMES = ("leapfrog", "euler", "backward_euler")
CASES = [(name, memory) for name in NAMES for memory in accepted_modes(LIBRARY[name])]


@pytest.mark.parametrize(("name", "memory"), CASES)
def test_a_function_returning_a_tuple_is_refused_by_name(name, memory):
    scheme = LIBRARY[name]
    block = odenet.compile(scheme, {"f": lambda i: _Pair()}, 3, memory)
    with pytest.raises(FunctionOutputError) as caught:
        block(torch.randn(2, WIDTH, requires_grad=True)).sum().backward()
    assert str(caught.value) == (
        "function f of layer 0 returned a tuple, not a tensor (take the tensor you mean, such as "
        "out[0] of a transformer layer): a scheme's function must return one tensor shaped like the "
        "state it updates, (2, 4) (its input: (2, 4))"
    )
    assert isinstance(caught.value, TypeError)  # what plain Python code would raise
    assert isinstance(caught.value, odenet.ConfigError)  # the functions given do not fit the scheme


@pytest.mark.parametrize(("name", "memory"), CASES)
def test_a_function_of_the_wrong_width_is_refused_by_name(name, memory):
    block = odenet.compile(LIBRARY[name], {"f": lambda i: nn.Linear(WIDTH, 2 * WIDTH)}, 3, memory)
    with pytest.raises(FunctionOutputError, match=r"^function f of layer 0 returned shape \(2, 8\) where "):
        block(torch.randn(2, WIDTH, requires_grad=True)).sum().backward()


def test_a_broadcast_is_refused_not_trained():
    """A residual function returning out[0] of a (2, 16, 8) state trained silently on (16, 8)."""
    block = odenet.compile(LIBRARY["euler"], {"f": lambda i: nn.Sequential(nn.Linear(8, 8))}, 2)
    first = odenet.compile(
        LIBRARY["euler"], {"f": lambda i: _First()}, 2
    )  # returns u[0]: (16, 8) against (2, 16, 8)
    block(torch.randn(2, 16, 8))  # the right function works
    with pytest.raises(FunctionOutputError) as caught:
        first(torch.randn(2, 16, 8))
    assert "returned shape (16, 8) where the state it updates has shape (2, 16, 8)" in str(caught.value)


class _First(nn.Module):
    def forward(self, u):
        return u[0]


def test_a_layer_further_up_is_named():
    """Factories may differ per layer: the layer that is wrong is the one named."""
    block = odenet.compile(LIBRARY["leapfrog"], {"f": lambda i: nn.Linear(WIDTH, WIDTH if i != 2 else 3)}, 4)
    with pytest.raises(FunctionOutputError, match=r"^function f of layer 2 returned shape"):
        block(torch.randn(5, WIDTH))


@pytest.mark.parametrize(
    "text",
    [
        "k = f(x[n])\nx[n+1] = x[n] + h*g(k)",  # explicit: every mode
        "x[n+1] = x[n] + h*g(f(x[n+1]))",  # implicit: its solve
    ],
)
def test_a_function_read_only_by_another_may_change_shape(text):
    """An encoder read only whole, as a decoder's argument, is not a state's rate of change: it may
    change shape, in every mode (reversible solves a fixed-point inverse here) and in an implicit
    step's solve; the decoder may not."""
    scheme = odenet.parse(f"scheme enc\nstate x\nparam h = 0.1\n{text}")
    modes = [m for m in odenet.MEMORY_MODES if m == "autograd" or scheme.is_explicit]
    for memory in modes:
        try:
            good = odenet.compile(
                scheme, {"f": lambda i: nn.Linear(WIDTH, 8), "g": lambda i: nn.Linear(8, WIDTH)}, 2, memory
            )
        except odenet.UnsupportedSchemeError:
            continue  # fixed_point: the step is not c*old + held terms
        good(torch.randn(3, WIDTH, requires_grad=True)).sum().backward()
        wrong = odenet.compile(
            scheme, {"f": lambda i: nn.Linear(WIDTH, 8), "g": lambda i: nn.Linear(8, 8)}, 2, memory
        )
        with pytest.raises(FunctionOutputError, match=r"^function g of layer 0 returned shape \(3, 8\)"):
            wrong(torch.randn(3, WIDTH, requires_grad=True)).sum().backward()


class _Row(nn.Module):
    """A function that returns its first row only: (1, 4) from (3, 4), which broadcasts back."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(WIDTH, WIDTH)

    def forward(self, u):
        return self.linear(u)[:1]


@pytest.mark.parametrize(
    "text", ["k = f(x[n])\nx[n+1] = x[n] + h*g(x[n] + k)", "x[n+1] = x[n] + h*g(x[n] + h*f(x[n]))"]
)
def test_a_broadcast_inside_another_calls_argument_is_refused(text):
    """Added to the state inside g's argument, f's value must be shaped like the state: a (1, 4)
    row was broadcast over the batch and trained silently."""
    scheme = odenet.parse(f"scheme b\nstate x\nparam h = 0.1\n{text}")
    block = odenet.compile(scheme, {"f": lambda i: _Row(), "g": lambda i: nn.Linear(WIDTH, WIDTH)}, 2)
    with pytest.raises(FunctionOutputError, match=r"^function f of layer 0 returned shape \(1, 4\)"):
        block(torch.randn(3, WIDTH))


def test_init_calls_are_checked_too():
    """init v = f(x[n]) runs before any step, with layer 0's function: checked there as well."""
    scheme = odenet.parse(
        "scheme s\nstate x, v\nparam h = 0.1\ninit v = f(x[n])\n"
        "v[n+1] = v[n] + h*f(x[n])\nx[n+1] = x[n] + h*v[n+1]"
    )
    block = odenet.compile(scheme, {"f": lambda i: _Pair()}, 2)
    with pytest.raises(FunctionOutputError, match=r"^function f of layer 0 returned a tuple"):
        block(torch.randn(3, WIDTH))
    assert "init" in block.init_code.source and "call(" in block.init_code.source


# -- tracebacks through generated code --------------------------------------------------------


def test_the_interpreters_own_traceback_shows_the_generated_line(tmp_path):
    """An uncaught error inside a function, printed by Python's default hook (which reads source
    files, not linecache): the generated step's line that called it is shown (it was not)."""
    script = tmp_path / "boom.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch, odenet
            from torch import nn

            class Boom(nn.Module):
                def forward(self, x):
                    raise ValueError("boom")

            odenet.compile(odenet.load("heun"), {"f": lambda i: Boom()}, 2)(torch.randn(2, 3))
            """
        )
    )
    env = {**os.environ, "ODENET_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )
    lines = result.stderr.splitlines()
    at = next(i for i, line in enumerate(lines) if "heun_step" in line and ", in step" in line)
    assert str(tmp_path / "cache" / "generated") in lines[at]
    assert lines[at + 1].strip() == 'c0 = call(0, "f", x_n)'
    assert "ValueError: boom" in lines[-1]


def test_generated_lines_stay_registered_while_the_function_lives(tmp_path, monkeypatch):
    monkeypatch.setenv("ODENET_CACHE_DIR", str(tmp_path))
    code = generate_step(odenet.parse("scheme once\nstate x\nparam h = 1/3\nx[n+1] = x[n] + h*f(x[n])"))
    step = compile_source(code, namespace(), "once step")
    filename = step.__code__.co_filename
    assert filename.startswith(str(tmp_path)) and Path(filename).read_text() == code.source
    assert linecache.getline(filename, 1).startswith("def step(")
    del step
    gc.collect()
    assert filename not in linecache.cache  # forgotten with the function (a file remains)


def test_without_a_writable_folder_linecache_holds_the_lines(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("ODENET_CACHE_DIR", str(blocked))
    code = generate_step(odenet.parse("scheme ro\nstate x\nparam h = 1/7\nx[n+1] = x[n] + h*f(x[n])"))
    step = compile_source(code, namespace(), "ro step")
    assert step.__code__.co_filename.startswith("<odenet-generated ro step")
    assert linecache.getline(step.__code__.co_filename, 1).startswith("def step(")
