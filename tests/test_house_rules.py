"""Rules the code keeps (checked here so that the fast target catches a break, and in .ci/run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from torch import nn

import odenet
from odenet.nn import MODES, MemoryMode

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("private_names", ROOT / ".ci" / "private_names.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["private_names"] = module
    spec.loader.exec_module(module)
    return module


def test_no_private_name_crosses_a_file():
    assert _checker().crossings() == []


def test_the_private_name_check_finds_a_crossing(tmp_path):
    """The check itself: an import of another file's _name, and a reach into another's attribute."""
    (tmp_path / "a.py").write_text(
        "def _helper():\n    pass\n\nclass A:\n    def __init__(self):\n        self._cache = 1\n"
    )
    (tmp_path / "b.py").write_text("from odenet.a import _helper\n\ndef f(obj):\n    return obj._cache\n")
    found = _checker().crossings(tmp_path)
    assert [line.split(": ", 1)[1] for line in found] == [
        "imports _helper from odenet.a",
        "reaches _cache, defined in another file",
    ]


def test_no_file_in_nn_is_over_400_lines():
    long = {
        p.name: n
        for p in (ROOT / "odenet" / "nn").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert long == {}


def test_every_memory_name_compile_accepts_is_a_registered_mode_object():
    """The registry is the one list: each name resolves to its class, and a mode object compiles."""
    assert set(odenet.MEMORY_MODES) <= set(MODES)
    scheme = odenet.load("leapfrog")
    for name, cls in MODES.items():
        assert issubclass(cls, MemoryMode) and cls.name == name
        if name == "implicit":
            continue
        block = odenet.compile(scheme, {"f": nn.Identity()}, 2, name)
        assert type(block.mode) is cls and block.memory == name
        again = odenet.compile(scheme, {"f": nn.Identity()}, 2, cls())
        assert type(again.mode) is cls


def test_a_mode_object_takes_its_options_and_refuses_them_twice():
    scheme = odenet.load("leapfrog")
    block = odenet.compile(scheme, {"f": nn.Identity()}, 2, odenet.nn.Reversible(guard="raise", budget=0.5))
    assert block.mode.guard == "raise" and block.memory_budget == 0.5
    assert "memory=reversible, memory_budget=0.5" in repr(block)
    legacy = odenet.compile(scheme, {"f": nn.Identity()}, 2, "reversible", guard="raise", memory_budget=0.5)
    assert legacy.mode == block.mode
    with pytest.raises(
        odenet.ConfigError, match=r"give guard to the mode object \(Reversible\(guard=...\)\)"
    ):
        odenet.compile(scheme, {"f": nn.Identity()}, 2, odenet.nn.Reversible(), guard="raise")
    with pytest.raises(odenet.ConfigError, match="guard must be one of adaptive, raise"):
        odenet.nn.Reversible(guard="never")
