"""What compile accepts, as a new user writes it (issue 28, item 5): a scheme by name, path or text;
a plain function refused with what a function spec is; a block's memory mode fixed once built."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import odenet

TEXT = "scheme mine\nstate y\nparam h = 0.1\ny[n+1] = y[n] + h*f(y[n])\n"


def _same(a: odenet.SchemeBlock, b: odenet.SchemeBlock) -> bool:
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 4)
    return a.scheme == b.scheme and torch.equal(a(x), b(x))


def test_a_scheme_by_name_path_or_text(tmp_path):
    f = nn.Linear(4, 4)
    assert _same(
        odenet.compile(odenet.load("leapfrog"), {"f": f}, 3), odenet.compile("leapfrog", {"f": f}, 3)
    )
    path = tmp_path / "mine.scheme"
    path.write_text(TEXT)
    by_text = odenet.compile(TEXT, {"f": f}, 3)
    assert by_text.scheme.name == "mine"
    assert _same(by_text, odenet.compile(path, {"f": f}, 3))
    assert _same(by_text, odenet.compile(str(path), {"f": f}, 3))
    with pytest.raises(odenet.ConfigError, match=r"expected a Scheme .* not int"):
        odenet.compile(42, {"f": f}, 3)
    with pytest.raises(odenet.SchemeNotFoundError):
        odenet.compile("no_such_scheme", {"f": f}, 3)


def test_a_plain_function_is_refused_with_what_a_function_spec_is():
    with pytest.raises(odenet.ConfigError, match=r"function f: tanh is not a factory .* nn\.Tanh\(\)"):
        odenet.compile("euler", {"f": torch.tanh}, 3)
    block = odenet.compile("euler", {"f": nn.Tanh()}, 3)  # the module it names: shared by all layers
    x = torch.randn(2, 4)
    assert torch.allclose(block(x), _euler(x, torch.tanh, 3, 0.1))


def _euler(x, f, depth, h):
    for _ in range(depth):
        x = x + h * f(x)
    return x


def test_a_blocks_memory_mode_is_fixed_once_built():
    block = odenet.compile("leapfrog", {"f": nn.Linear(4, 4)}, 3, "reversible")
    with pytest.raises(odenet.ConfigError, match=r"fixed when it is built .* compile a new block"):
        block.memory = "bogus"
    assert block.memory == "reversible"
