"""How a user calls odenet's public API, checked by pyright (see [tool.pyright] in pyproject.toml).

Never run by pytest; the runtime behaviour is tested elsewhere. A change of a public signature that
breaks this code breaks CI.
"""

from __future__ import annotations

import torch
from torch import nn

import odenet
from odenet.models import ModelConfig, build_model
from odenet.options import Memory, choices
from odenet.training import DATA_DEFAULTS, TrainSettings, load_data, train


def scheme_and_analysis() -> tuple[str, int | None, bool]:
    scheme: odenet.Scheme = odenet.load("leapfrog")
    mine = odenet.parse("scheme s\nstate y\nparam h = 0.1\ny[n+1] = y[n] + h*f(y[n])\n", source="s.scheme")
    facts: odenet.Analysis = odenet.analyze(mine, params={"h": 0.5})
    inverse: odenet.Scheme = odenet.derive_inverse(scheme)
    return odenet.format_scheme(inverse), facts.order, facts.stability.zero_stable


def compiled_block(memory: Memory = "reversible") -> torch.Tensor:
    block: odenet.SchemeBlock = odenet.compile(
        odenet.load("leapfrog"), {"f": lambda layer: nn.Linear(8, 8)}, depth=4, memory=memory, guard="raise"
    )
    assert memory in choices(Memory) and memory in odenet.MEMORY_MODES
    mode = odenet.nn.Reversible(guard="raise", budget=0.5)
    same: odenet.SchemeBlock = odenet.compile(odenet.load("leapfrog"), {"f": nn.Linear(8, 8)}, 4, memory=mode)
    report: odenet.nn.PassReport = same.last_pass
    assert isinstance(same.mode, odenet.nn.MemoryMode) and report.kept_bytes >= 0
    return block(torch.randn(2, 8))


def training() -> float:
    data = load_data("digits", DATA_DEFAULTS["digits"].layout)
    config = ModelConfig(
        odenet.format_scheme(odenet.load("euler")), data.input_shape, data.outputs, layout="conv", depth=2
    )
    model = build_model(config)
    assert isinstance(model, nn.Module)
    _, metrics = train(config, data, TrainSettings(epochs=1), stream=None)
    return float(metrics["test_loss"])


def errors() -> list[type[odenet.OdenetError]]:
    return [
        odenet.SchemeSyntaxError,
        odenet.SchemeValueError,
        odenet.ConfigError,
        odenet.CheckpointError,
        odenet.ReconstructionError,
        odenet.TrainingDivergedError,
        odenet.MissingDependencyError,
    ]
