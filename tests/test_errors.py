"""Every rule of the language has a test that pins its message, line and column.

Each case is (scheme text, error class, line, column, message). The message is compared whole, so
a change of wording is a deliberate change of this file.
"""

from __future__ import annotations

import re
import sys

import pytest

import odenet
from odenet.errors import SchemeSyntaxError, SchemeValueError

H = "scheme s\nstate y\nparam h = 0.1\n"  # a header: the body starts on line 4

# fmt: off
CASES = [
    # -- the shape of a file ----------------------------------------------------------------------
    ("empty file", "", SchemeSyntaxError, 1, 1,
     "empty file: expected 'scheme NAME' as the first statement"),
    ("only comments", "# nothing here\n\n", SchemeSyntaxError, 1, 1,
     "empty file: expected 'scheme NAME' as the first statement"),
    ("no scheme line", "state y\ny[n+1] = y[n]", SchemeSyntaxError, 1, 7,
     "expected 'scheme NAME' as the first statement"),
    ("two scheme lines", H + "y[n+1] = y[n]\nscheme t", SchemeSyntaxError, 5, 8,
     "a file holds one scheme: 'scheme' may appear only once, first"),
    ("doc string elsewhere", H + '"""doc"""\ny[n+1] = y[n]', SchemeSyntaxError, 4, 1,
     "a doc string goes right after the 'scheme NAME' line"),
    ("unterminated doc string", 'scheme s\n"""never closed\nstate y', SchemeSyntaxError, 2, 1,
     'unterminated doc string: expected a closing """'),
    ("no state", "scheme s\nparam h = 1", SchemeValueError, 1, 8,
     "no state declared: expected a line such as 'state y'"),
    # -- tokens and grammar ------------------------------------------------------------------------
    ("missing right side", H + "y[n+1] =", SchemeSyntaxError, 4, 9,
     "unexpected end of line: expected an expression (a number, a name, '(' or '-')"),
    ("two operators", H + "y[n+1] = = y[n]", SchemeSyntaxError, 4, 10,
     "unexpected '=': expected an expression (a number, a name, '(' or '-')"),
    ("unclosed parenthesis", H + "y[n+1] = (y[n]", SchemeSyntaxError, 4, 15,
     "unexpected end of line: expected ')'"),
    ("two values side by side", H + "y[n+1] = 2 y[n]", SchemeSyntaxError, 4, 12,
     "unexpected name 'y': expected an operator (+ - * / **) or the end of the line"),
    ("index not n", H + "y[n+1] = y[3]", SchemeSyntaxError, 4, 12,
     "unexpected number '3': expected 'n'"),
    ("semicolon", H + "y[n+1] = y[n]; h = 2", SchemeSyntaxError, 4, 14,
     "unexpected character ';': expected an operator (+ - * / **) or the end of the line"),
    ("dunder name", H + "y[n+1] = __import__('os')", SchemeSyntaxError, 4, 10,
     "unexpected '_': names start with a letter (names starting with '_' are not allowed)"),
    ("quoted string", H + "y[n+1] = 'x'", SchemeSyntaxError, 4, 10,
     "unexpected character \"'\": expected an expression (a number, a name, '(' or '-')"),
    ("NUL byte", H + "y[n+1] = y[n]\x00", SchemeSyntaxError, 4, 14,
     "unexpected NUL byte: a scheme file is text"),
    ("keyword missing its names", "scheme s\nstate\n", SchemeSyntaxError, 2, 6,
     "unexpected end of line: expected a name"),
    # -- names -------------------------------------------------------------------------------------
    ("unknown name", H + "y[n+1] = y[n] + q", SchemeValueError, 4, 17,
     "unknown name 'q': expected a parameter (h) or a state with a time index such as y[n]"),
    ("misspelt parameter", H + "y[n+1] = y[n] + hh*f(y[n])", SchemeValueError, 4, 17,
     "unknown name 'hh': expected a parameter (h) or a state with a time index such as y[n] "
     "(did you mean 'h'?)"),
    ("e is no constant", H + "y[n+1] = e*y[n]", SchemeValueError, 4, 10,
     "unknown name 'e': expected a parameter (h) or a state with a time index such as y[n] "
     "('e' is not a constant of the language: write the number or use exp(1))"),
    ("unknown state", H + "y[n+1] = x[n]", SchemeValueError, 4, 10,
     "unknown state 'x': the states are y"),
    ("state without index", H + "y[n+1] = y + f(y[n])", SchemeValueError, 4, 10,
     "state 'y' needs a time index: expected y[n], y[n-1] or y[n+1]"),
    ("index on a parameter", H + "y[n+1] = h[n]*y[n]", SchemeValueError, 4, 10,
     "'h' is a parameter, not a state: only states have time indices"),
    ("n outside brackets", H + "y[n+1] = n*y[n]", SchemeValueError, 4, 10,
     "'n' is the step index: it stands only inside brackets, as in y[n-1]"),
    ("name declared twice", "scheme s\nstate y\nparam y = 1\ny[n+1] = y[n]", SchemeValueError, 3, 7,
     "'y' is already declared as a state on line 2: expected a new name"),
    ("reserved name", "scheme s\nstate lambda\nlambda[n+1] = lambda[n]", SchemeValueError, 2, 7,
     "'lambda' is reserved and cannot name a state"),
    ("stage used and never defined", H + "y[n+1] = y[n] + k1", SchemeValueError, 4, 17,
     "unknown name 'k1': expected a parameter (h) or a state with a time index such as y[n]"),
    ("stage defined twice", H + "k = f(y[n])\nk = f(k)\ny[n+1] = k", SchemeValueError, 5, 1,
     "stage 'k' is defined twice (first on line 4): expected a new name"),
    ("stage named like a parameter", H + "h = f(y[n])\ny[n+1] = y[n]", SchemeValueError, 4, 1,
     "'h' is already a parameter (line 3): a stage needs a new name"),
    # -- updates -----------------------------------------------------------------------------------
    ("state updated twice", H + "y[n+1] = y[n]\ny[n+1] = y[n] + f(y[n])", SchemeValueError, 5, 1,
     "state 'y' is updated twice (first on line 4): a step sets each state once"),
    ("state never updated", "scheme s\nstate y, v\ny[n+1] = y[n] + f(y[n])", SchemeValueError, 2, 10,
     "state 'v' is never updated: expected a line 'v[n+1] = ...'"),
    ("update of y[n]", H + "y[n] = y[n]", SchemeValueError, 4, 1,
     "an update sets the new value: expected y[n+1] = ..., not y[n]"),
    ("state assigned like a stage", H + "y = f(y[n])", SchemeValueError, 4, 1,
     "'y' is a state: its update is written y[n+1] = ..."),
    ("two steps ahead", H + "y[n+1] = y[n+2]", SchemeValueError, 4, 10,
     "y[n+2] reaches 2 steps ahead: a step computes y[n+1] from y[n], y[n-1], ..."),
    ("lag too deep", H + "y[n+1] = y[n-17]", SchemeValueError, 4, 10,
     "y[n-17] reaches too far back: at most y[n-16]"),
    # -- functions ---------------------------------------------------------------------------------
    ("arity mismatch", H + "k = f(y[n])\ny[n+1] = k + f(y[n], k)", SchemeValueError, 5, 14,
     "'f' is called with 2 arguments here but with 1 argument on line 4: "
     "a function always takes the same number of arguments"),
    ("call without argument", H + "y[n+1] = f()", SchemeValueError, 4, 10,
     "'f()' has no argument: expected at least one"),
    ("undeclared function", "scheme s\nstate y\nfunction f\ny[n+1] = f(y[n]) + g(y[n])",
     SchemeValueError, 4, 20, "unknown function 'g': the declared functions are f"),
    ("declared, never called", "scheme s\nstate y\nfunction f, g\ny[n+1] = f(y[n])", SchemeValueError, 3, 13,
     "function 'g' is declared but never called"),
    ("calling a state", H + "y[n+1] = y(y[n])", SchemeValueError, 4, 10,
     "'y' is a state, not a function: it cannot be called"),
    ("scalar function of a state", H + "y[n+1] = exp(y[n])", SchemeValueError, 4, 14,
     "exp() applies to parameters and numbers only: a nonlinearity of a state belongs in a function "
     "symbol such as f(...), which becomes a sub-network"),
    # -- numbers -----------------------------------------------------------------------------------
    ("10**10**10", H + "y[n+1] = y[n] + 10**10**10*f(y[n])", SchemeValueError, 4, 17,
     "number too large: this power has about 1e+10 digits (at most 1000)"),
    ("huge symbolic exponent", H + "y[n+1] = y[n]**100000", SchemeValueError, 4, 16,
     "exponent too large: at most 1000 in absolute value"),
    ("literal exponent", H + "y[n+1] = 1e500*y[n]", SchemeSyntaxError, 4, 10,
     "number out of range: the exponent must lie within ±100"),
    ("too many digits", H + "y[n+1] = " + "9" * 101 + "*y[n]", SchemeSyntaxError, 4, 10,
     "number too long: more than 100 digits"),
    ("division by zero", H + "y[n+1] = y[n]/(h-h)", SchemeValueError, 4, 16,
     "division by zero: this divisor is 0"),
    ("complex number", H + "y[n+1] = sqrt(-1)*y[n]", SchemeValueError, 4, 10,
     "the expression is not real (square root of a negative number?)"),
    ("deep nesting", H + "y[n+1] = " + "f(" * 70 + "y[n]" + ")" * 70, SchemeSyntaxError, 4, 22,
     "expression nested too deeply: more than 64 levels of parentheses, calls or operators; "
     "split it into stages"),
    ("10 000 parentheses", H + "y[n+1] = " + "(" * 10_000 + "y[n]" + ")" * 10_000, SchemeSyntaxError, 4, 10_010,
     "expression nested too deeply: more than 64 levels of parentheses, calls or operators; "
     "split it into stages"),
    # -- params ------------------------------------------------------------------------------------
    ("default not constant", "scheme s\nstate y\nparam h = y[n]\ny[n+1] = y[n]", SchemeValueError, 3, 11,
     "a parameter's default must be a constant: y[n] is a state"),
    ("default uses a parameter", "scheme s\nstate y\nparam a = 1\nparam b = a\ny[n+1] = y[n]",
     SchemeValueError, 4, 11, "a parameter's default must be a constant: 'a' is a parameter"),
    ("default outside interval", "scheme s\nstate y\nparam k = 2 learnable in (0, 1)\ny[n+1] = k*y[n]",
     SchemeValueError, 3, 11, "the default 2 of 'k' lies outside the open interval (0, 1)"),
    ("empty interval", "scheme s\nstate y\nparam k = 2 learnable in (3, 1)\ny[n+1] = k*y[n]",
     SchemeValueError, 3, 27, "empty interval (3, 1): expected the lower bound first"),
    ("interval without learnable", "scheme s\nstate y\nparam k = 0.5 in (0, 1)\ny[n+1] = k*y[n]",
     SchemeSyntaxError, 3, 15, "unexpected 'in': expected an operator (+ - * / **), 'learnable' or the end of the line"),
    # -- input, output, init -----------------------------------------------------------------------
    ("input not a state", "scheme s\nstate y\ninput q\ny[n+1] = y[n]", SchemeValueError, 3, 7,
     "input 'q' is not a state: expected one of y"),
    ("output twice", "scheme s\nstate y\noutput y\noutput y\ny[n+1] = y[n]", SchemeValueError, 4, 8,
     "'output' is given twice (first on line 3): list all output states on one line"),
    ("init of an input", H + "init y = 1\ny[n+1] = y[n]", SchemeValueError, 4, 6,
     "'y' is an input: its start value is the input tensor, so it takes no init"),
    ("init of an unused lag", H + "init y[n-2] = y[n]\ny[n+1] = y[n-1] + f(y[n])", SchemeValueError, 4, 6,
     "init of y[n-2], which the step never reads (it reads back to y[n-1])"),
    ("init of a new value", H + "init y[n+1] = y[n]\ny[n+1] = y[n]", SchemeValueError, 4, 6,
     "init sets a start value or history: expected y or y[n-1], not y[n+1]"),
    ("init reads a new value", "scheme s\nstate y, v\ninit v = y[n+1]\ny[n+1] = y[n]\nv[n+1] = v[n]",
     SchemeValueError, 3, 10, "an init value cannot use the new value y[n+1]"),
    ("init given twice", "scheme s\nstate y, v\ninit v = 1\ninit v = 2\ny[n+1] = y[n]\nv[n+1] = v[n]",
     SchemeValueError, 4, 6, "init of v[n] is given twice (first on line 3)"),
    ("init of a stage", H + "k = f(y[n])\ninit k = 0\ny[n+1] = k", SchemeValueError, 5, 6,
     "init sets the start value of a state; 'k' is not a state (expected one of y)"),
    ("init cycle", "scheme s\nstate y, v, w\ninit v = w[n]\ninit w = v[n]\n"
     "y[n+1] = y[n] + f(v[n] + w[n])\nv[n+1] = v[n]\nw[n+1] = w[n]", SchemeValueError, 3, 6,
     "the inits depend on each other in a cycle: v[n] -> w[n] -> v[n]: "
     "expected inits that can be computed one after another"),
    ("lag whose default cannot be used", "scheme s\nstate y, v\ninit v = v[n-1]\n"
     "y[n+1] = y[n] + f(v[n-1])\nv[n+1] = v[n]", SchemeValueError, 3, 6,
     "v[n-1] has no init and its default (v[n-1] = v[n]) cannot be used: it closes the cycle "
     "v[n] -> v[n-1] -> v[n]; give v[n-1] an init"),
]
# fmt: on


@pytest.mark.parametrize(
    ("text", "error", "line", "column", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_error_message_is_pinned(text, error, line, column, message):
    with pytest.raises(error) as info:
        odenet.parse(text, source="case.scheme")
    exc = info.value
    assert isinstance(exc, odenet.OdenetError)
    assert (exc.message, exc.location.line, exc.location.column) == (message, line, column)
    # The printed form names file, line and column, quotes the line and puts a caret under the column.
    printed = str(exc)
    head, quoted, caret = printed.split("\n")
    assert head == f"case.scheme:{line}:{column}: {message}"
    assert quoted.startswith(f"    {line} | ")
    assert caret.index("^") - caret.index("|") - 2 == min(column - 1, 50) or len(quoted) > 100


def test_errors_inherit_builtin_exceptions():
    with pytest.raises(SyntaxError) as info:
        odenet.parse("scheme s\nstate y\ny[n+1] = = 1", source="f.scheme")
    assert (info.value.filename, info.value.lineno, info.value.offset) == ("f.scheme", 3, 10)
    with pytest.raises(ValueError):
        odenet.parse("scheme s\nstate y\ny[n+1] = q")
    with pytest.raises(LookupError):
        odenet.load("no_such_scheme")


def test_every_problem_is_collected():
    text = "scheme s\nstate y, v\nparam h = 0.1\ny[n+1] = y[n] + q\nk = f(y[n]) + hh\n"
    with pytest.raises(SchemeValueError) as info:
        odenet.parse(text)
    found = [(e.location.line, e.message.split(":")[0]) for e in info.value.errors]
    assert found == [
        (4, "unknown name 'q'"),
        (5, "unknown name 'hh'"),
        (2, "state 'v' is never updated"),
    ]


def test_a_failed_stage_does_not_cascade():
    # k's right-hand side is wrong; the later use of k must not be reported as an unknown name.
    with pytest.raises(SchemeValueError) as info:
        odenet.parse(H + "k = f(q)\ny[n+1] = y[n] + h*k")
    assert [e.location.line for e in info.value.errors] == [4]


def test_invalid_utf8_points_at_the_byte(tmp_path):
    path = tmp_path / "bad.scheme"
    path.write_bytes(b"scheme s\nstate y\ny[n+1] = y[n] \xff+ 1\n")
    with pytest.raises(SchemeSyntaxError) as info:
        odenet.load(path)
    exc = info.value
    assert (exc.location.source, exc.location.line, exc.location.column) == (str(path), 3, 15)
    assert exc.message == (
        "invalid UTF-8: byte 0xff cannot start or continue a character; expected a UTF-8 text file"
    )


def test_file_too_large():
    text = H + "# " + "x" * (1 << 20) + "\ny[n+1] = y[n]"
    with pytest.raises(SchemeSyntaxError) as info:
        odenet.parse(text)
    assert info.value.message == "file too large: a scheme is at most 1024 KiB of text"


def test_unknown_library_name_suggests_the_closest():
    with pytest.raises(odenet.SchemeNotFoundError) as info:
        odenet.load("leapfrgo")
    assert str(info.value).startswith(
        "no library scheme or file named 'leapfrgo' (nor 'leapfrgo.scheme'); did you mean 'leapfrog'? "
        "The library has: ab2, "
    )
    assert "momentum" in str(info.value)


def test_an_unknown_name_without_a_close_one_ends_its_sentence():
    with pytest.raises(odenet.SchemeNotFoundError) as info:
        odenet.load("zzzz")
    assert str(info.value).startswith(
        "no library scheme or file named 'zzzz' (nor 'zzzz.scheme'). The library has: "
    )


def test_load_tries_the_name_with_the_suffix(tmp_path, monkeypatch):
    (tmp_path / "t4.scheme").write_text("scheme t4\nstate x\nfunction f\nx[n+1] = x[n] + f(x[n])/4\n")
    monkeypatch.chdir(tmp_path)
    assert odenet.load("t4").name == "t4"


def test_parse_of_a_file_name_points_at_load():
    with pytest.raises(odenet.SchemeSyntaxError) as info:
        odenet.parse("schemes/rk4.scheme")
    assert str(info.value) == (
        "<string>:1:1: parse reads a scheme's text, and 'schemes/rk4.scheme' is a file name: read the file "
        "with odenet.load('schemes/rk4.scheme')\n"
        "    1 | schemes/rk4.scheme\n"
        "      | ^^^^^^^^^^^^^^^^^^"
    )


def test_dir_of_the_package_lists_its_api_not_its_imports():
    names = dir(odenet)
    assert not {"TYPE_CHECKING", "annotations", "PackageNotFoundError", "version"} & set(names)
    assert set(odenet.__all__) <= set(names) and "analysis" in names


def test_long_line_is_quoted_around_the_column():
    text = H + "y[n+1] = y[n]" + " + y[n]" * 40 + " + q"
    with pytest.raises(SchemeValueError) as info:
        odenet.parse(text)
    quoted, caret = str(info.value).split("\n")[1:]
    assert len(quoted.split("| ", 1)[1]) == 100
    assert quoted[caret.index("^")] == "q"


# -- the memory modes' errors ---------------------------------------------------------------------


def _leapfrog_block(memory="reversible", **kwargs):
    import torch
    from torch import nn

    torch.manual_seed(0)
    return odenet.compile(odenet.load("leapfrog"), {"f": lambda i: nn.Linear(4, 4)}, 3, memory, **kwargs)


# fmt: off
MEMORY_CASES = [
    ("unknown guard", {"guard": "ignore"}, odenet.ConfigError,
     "guard must be one of adaptive, raise, not 'ignore'"),
    ("zero tolerance", {"drift_tolerance": 0}, odenet.ConfigError,
     "drift_tolerance must be a number > 0, not 0"),
    ("negative tolerance", {"drift_tolerance": -1e-3}, odenet.ConfigError,
     "drift_tolerance must be a number > 0, not -0.001"),
]
# fmt: on


@pytest.mark.parametrize(
    ("label", "kwargs", "error", "message"), MEMORY_CASES, ids=[c[0] for c in MEMORY_CASES]
)
def test_memory_argument_message_is_pinned(label, kwargs, error, message):
    with pytest.raises(error) as info:
        _leapfrog_block(**kwargs)
    assert str(info.value) == message


def test_double_backward_message_is_pinned():
    import torch

    block = _leapfrog_block()
    x = torch.randn(2, 4, requires_grad=True)
    with pytest.raises(odenet.DoubleBackwardError) as info:  # refused when the graph is asked for
        torch.autograd.grad(block(x).sum(), x, create_graph=True)
    assert isinstance(info.value, RuntimeError)
    assert str(info.value) == (
        "memory='reversible' cannot give second-order gradients (create_graph=True): it rebuilds "
        "activations outside autograd's graph; use memory='checkpoint' or memory='autograd' for "
        "leapfrog's block"
    )


def test_non_finite_rebuild_message_is_pinned():
    import torch
    from torch import nn

    torch.manual_seed(0)
    block = odenet.compile(
        odenet.load("momentum"),
        {"f": lambda i: nn.Linear(4, 4)},
        40,
        "reversible",
        params={"gamma": 0.01},
        drift_tolerance=float("inf"),
        guard="raise",
    )
    with pytest.raises(odenet.ReconstructionError) as info:
        block(torch.randn(2, 4)).sum().backward()
    assert isinstance(info.value, FloatingPointError)
    assert str(info.value) == (
        "rebuilding the input of layer 0 of momentum gave non-finite values (the rebuild went wrong "
        "between layers 0 and 39): the inverse amplifies rounding error too much; guard='adaptive' "
        "recomputes such layers exactly; or lower drift_tolerance (copies closer together), or use "
        "memory='checkpoint'"
    )


def test_input_changed_in_place_is_refused():
    import torch

    block = _leapfrog_block()
    x = torch.randn(2, 4, requires_grad=True)
    x0 = x * 1  # the block's input: modified after the forward, before the backward
    y = block(x0)
    with torch.no_grad():
        x0.add_(1)
    with pytest.raises(RuntimeError) as info:
        y.sum().backward()
    assert str(info.value) == (
        "a tensor leapfrog's block needs for its backward pass (its input, a parameter, a fixed "
        "scheme parameter or a context tensor, shape (2, 4)) was modified in place after the forward pass; "
        "run the forward "
        "again, or clone the input before modifying it"
    )


def test_parameter_changed_between_forward_and_backward_is_refused():
    import torch

    block = _leapfrog_block()
    y = block(torch.randn(2, 4, requires_grad=True))
    with torch.no_grad():
        block.functions["f"][1].weight.mul_(2)  # e.g. an optimizer step before the backward pass
    with pytest.raises(RuntimeError, match=r"shape \(4, 4\)\) was modified in place after the forward pass"):
        y.sum().backward()


def test_a_tensor_the_block_cannot_differentiate_is_refused():
    import torch
    from torch import nn

    context = torch.randn(4, requires_grad=True)  # e.g. a conditioning vector from an encoder

    class Conditioned(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, u):
            return torch.tanh(self.linear(u) + context)

    block = odenet.compile(odenet.load("leapfrog"), {"f": lambda i: Conditioned()}, 3, "reversible")
    with pytest.raises(odenet.UnsupportedSchemeError) as info:
        block(torch.randn(2, 4)).sum().backward()
    assert str(info.value) == (
        "a function of layer 2 of leapfrog's block uses a tensor that requires grad (shape (4,)) and is "
        "neither its input, a registered parameter of the block nor a keyword argument of the block's "
        "call: memory='reversible' and memory='adjoint' would give it no gradient. Pass it to the block "
        "as a keyword (block(x, name=tensor) gives it to every function call), register it as a "
        "parameter of the function's module, or use memory='checkpoint' or 'autograd'"
    )
    checkpointed = odenet.compile(odenet.load("leapfrog"), {"f": lambda i: Conditioned()}, 3, "checkpoint")
    checkpointed(torch.randn(2, 4)).sum().backward()
    assert context.grad is not None and context.grad.abs().sum() > 0


# -- errors about arguments and settings (ConfigError), training, checkpoints --------------------------


def _config_cases():
    import torch
    from torch import nn

    from odenet.models import ModelConfig
    from odenet.training import TrainSettings, load_data

    leapfrog = odenet.format_scheme(odenet.load("leapfrog"))
    hamiltonian = odenet.load("hamiltonian")
    return [
        (
            "model layout",
            lambda: ModelConfig(leapfrog, (12,), 3, layout="grid"),
            "invalid model config: layout must be one of mlp, conv, conv1d, not 'grid'",
        ),
        (
            "model sizes",
            lambda: ModelConfig(leapfrog, (12,), 0, width=0),
            "invalid model config: width must be a whole number >= 1, not 0; "
            "outputs must be a whole number >= 1, not 0",
        ),
        (
            "model field",
            lambda: ModelConfig.from_json({"scheme": leapfrog, "colour": "red"}),
            "unknown model config field(s): colour",
        ),
        (
            "optimizer",
            lambda: TrainSettings(optimizer="lbfgs"),
            "invalid training settings: optimizer must be one of adam, sgd, not 'lbfgs'",
        ),
        (
            "schedule",
            lambda: TrainSettings(schedule="step"),
            "invalid training settings: schedule must be one of cosine, constant, not 'step'",
        ),
        (
            "data set",
            lambda: load_data("mnist"),
            "unknown data set 'mnist'; expected one of digits, mnist1d, rings, cross1d, or a file of your own "
            "(.npz or .pt)",
        ),
        (
            "train fraction",
            lambda: load_data("digits", train_fraction=0),
            "train_fraction must be in (0, 1], not 0",
        ),
        (
            "conv on vectors",
            lambda: load_data("rings", "conv"),
            "the conv layout needs images; 'rings' is not an image data set",
        ),
        (
            "functions",
            lambda: odenet.compile(hamiltonian, {"f": nn.Identity()}, 2),
            "scheme hamiltonian needs functions f, g: missing g. "
            "Give each a factory (layer index -> nn.Module) or one shared nn.Module",
        ),
        (
            "compile parameter",
            lambda: odenet.compile(odenet.load("leapfrog"), {"f": nn.Identity()}, 2, params={"gamma": 0.5}),
            "scheme leapfrog has no parameter 'gamma': its parameters are h",
        ),
        (
            "analyze parameter",
            lambda: odenet.analyze(odenet.load("euler"), params={"k": 1}),
            "scheme euler has no parameter 'k': its parameters are h",
        ),
        (
            "input size",
            lambda: odenet.compile(hamiltonian, {"f": nn.Identity(), "g": nn.Identity()}, 1)(
                torch.zeros(2, 3)
            ),
            "scheme hamiltonian splits its input into 2 states (y, z) along dimension 1, which needs a "
            "size divisible by 2; got shape (2, 3)",
        ),
    ]


CONFIG_LABELS = [
    "model layout",
    "model sizes",
    "model field",
    "optimizer",
    "schedule",
    "data set",
    "train fraction",
    "conv on vectors",
    "functions",
    "compile parameter",
    "analyze parameter",
    "input size",
]
# fmt: on


@pytest.mark.parametrize("label", CONFIG_LABELS)
def test_config_error_message_is_pinned(label):
    cases = {case[0]: case[1:] for case in _config_cases()}
    assert list(cases) == CONFIG_LABELS
    make, message = cases[label]
    with pytest.raises(odenet.ConfigError) as info:
        make()
    assert isinstance(info.value, ValueError) and not isinstance(info.value, SchemeValueError)
    assert str(info.value) == message


def test_training_divergence_message_is_pinned():
    import torch

    from odenet.models import ModelConfig
    from odenet.training import TrainSettings, load_data, train

    data = load_data("rings")
    config = ModelConfig(
        odenet.format_scheme(odenet.load("euler")),
        data.input_shape,
        data.outputs,
        family="mlp",
        width=4,
        depth=2,
        params={"h": 1.0},
    )
    torch.manual_seed(0)
    with pytest.raises(odenet.TrainingDivergedError) as info:
        train(config, data, TrainSettings(epochs=1, lr=1e12, optimizer="sgd"), stream=None)
    assert isinstance(info.value, FloatingPointError)
    pattern = (
        r"the loss became (nan|inf) at epoch 1, batch \d+; at the initial weights, (every layer's h\*lambda "
        r"lies inside the scheme's stability region \(largest \|h\*lambda\| = [0-9.e+-]+\): lower the learning "
        r"rate \(--lr\)|\d+ of \d+ layers have h\*lambda outside the scheme's stability region \(largest "
        r"\|h\*lambda\| = [0-9.e+-]+\): lower the step \(--step\) or the learning rate \(--lr\), or use a "
        r"family with normalisation \(--family\))"
    )
    assert re.fullmatch(pattern, str(info.value)), str(info.value)


def test_checkpoint_error_message_is_pinned(tmp_path):
    from odenet.training import load_checkpoint

    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(odenet.CheckpointError) as info:
        load_checkpoint(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{path}: not an odenet checkpoint (torch.load could not read it: ")
    with pytest.raises(odenet.CheckpointError) as info:
        load_checkpoint(tmp_path / "missing.pt")
    assert str(info.value) == f"{tmp_path / 'missing.pt'}: no such checkpoint file"


@pytest.mark.parametrize(
    ("module", "make", "message"),
    [
        (
            "sklearn.datasets",
            lambda: __import__("odenet.training", fromlist=["x"]).load_data("digits"),
            'the digits data set needs scikit-learn, which is not installed: pip install "odenet-schemes[train]" '
            '(or "odenet-schemes[all]")',
        ),
        (
            "matplotlib.figure",
            lambda: __import__("odenet.report.plotting", fromlist=["x"]).new_figure(),
            'drawing a figure needs matplotlib, which is not installed: pip install "odenet-schemes[plot]" '
            '(or "odenet-schemes[all]")',
        ),
    ],
    ids=["scikit-learn", "matplotlib"],
)
def test_missing_optional_dependency_names_its_extra(module, make, message, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(odenet.MissingDependencyError) as info:
        make()
    assert isinstance(info.value, ImportError)
    assert str(info.value) == message
