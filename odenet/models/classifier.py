"""A classifier (or regressor) built from a scheme: stem, stages of compiled blocks, head.

::

    input --stem--> state --[stage 1: depth layers of the scheme]--> transition --[stage 2]--> ... --head-->

* stem: ``Linear(in, k*width)`` (``mlp`` layout) or ``conv -> BN -> ReLU`` (``conv`` layout: 3x3
  convolutions on images; ``conv1d``: length-3 convolutions on signals), where
  ``k`` is the number of input states of the scheme (2 for ``hamiltonian``'s ``y, z``: the stem's
  output is split in two halves). ``stem=False`` feeds the input itself (its size must be ``k*width``).
* stage ``i``: one :class:`~odenet.nn.SchemeBlock` of ``depth`` layers on states of ``width * 2**i``
  features or channels, each layer with its own residual functions (or one shared set,
  ``shared=True``; or its own, started as copies of one set, ``smooth_init=True``), all in the
  chosen memory mode.
* transition between stages: ``Linear(k*w, 2*k*w)`` (``mlp``) or average pooling by 2 and a 1x1
  convolution doubling the channels (``conv``, ``conv1d``): downsampling and channel growth.
* head: ``Linear`` to the classes (after global average pooling in the convolutional layouts);
  ``head=False`` returns the last state itself (a regression on the state, as in ``cross1d``).

Everything needed to rebuild the model is in :class:`ModelConfig`, which holds the scheme's text:
a checkpoint stores the config and the state_dict, nothing else.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable

import torch
from torch import nn

from odenet.errors import ConfigError
from odenet.ir import Scheme
from odenet.models.config import ModelConfig
from odenet.models.families import make_function
from odenet.nn.block import SchemeBlock
from odenet.options import spatial_dims

__all__ = ["Classifier", "Observer", "build_model"]

# observe(stage, layer, function name, arguments): see Classifier.features
Observer = Callable[[int, int, str, tuple], None]


# per number of spatial dimensions: convolution, batch norm, pooling by 2, global pooling
_SPATIAL = {
    1: (nn.Conv1d, nn.BatchNorm1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d),
    2: (nn.Conv2d, nn.BatchNorm2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d),
}


class Classifier(nn.Module):
    """Stem, stages of compiled scheme blocks with transitions, head. Build with :func:`build_model`."""

    def __init__(self, config: ModelConfig, scheme: Scheme):
        super().__init__()
        self.config = config
        self.scheme = scheme
        parts, outs = len(scheme.inputs), len(scheme.outputs)
        dims = spatial_dims(config.layout)
        conv = dims > 0
        # the layout's modules (classes; unused by the mlp layout)
        Conv, Norm, Pool, GlobalPool = _SPATIAL[dims or 2]  # noqa: N806
        width = config.width
        if config.stem:
            if conv:
                self.stem = nn.Sequential(
                    Conv(config.input_shape[0], parts * width, 3, padding=1, bias=False),
                    Norm(parts * width),
                    nn.ReLU(),
                )
            else:
                self.stem = nn.Linear(config.input_shape[0], parts * width)
        else:
            if config.input_shape[0] != parts * width:
                raise ConfigError(
                    f"without a stem the input ({config.input_shape[0]} {'channels' if conv else 'features'})"
                    " "
                    f"is the state, so it must have {parts} x width = {parts * width}"
                )
            self.stem = nn.Identity()
        self.stages = nn.ModuleList()
        self.transitions = nn.ModuleList()
        for i in range(config.stages):
            w = width * 2**i
            if i:
                if conv:
                    self.transitions.append(
                        nn.Sequential(Pool(2), Conv(outs * w // 2, parts * w, 1, bias=False))
                    )
                else:
                    self.transitions.append(nn.Linear(outs * w // 2, parts * w))
            hidden = (config.hidden or width) * 2**i

            def factory(layer: int, w=w, hidden=hidden) -> nn.Module:
                return make_function(
                    config.family, w, hidden, config.layout, config.activation, config.contraction
                )

            functions = {f.name: function_spec(factory, config) for f in scheme.functions}
            self.stages.append(
                SchemeBlock(
                    scheme, functions, config.depth, config.memory, dict(config.params), solver=config.solver
                )
            )
        out_width = outs * width * 2 ** (config.stages - 1)  # the output states, concatenated
        if config.head:
            pool = [GlobalPool(1), nn.Flatten()] if conv else []
            self.head = nn.Sequential(*pool, nn.Linear(out_width, config.outputs))
        else:
            if out_width != config.outputs:
                raise ConfigError(
                    f"without a head the last state ({out_width} features) is the output, "
                    f"so outputs must be {out_width}, not {config.outputs}"
                )
            self.head = nn.Identity()

    def features(
        self,
        x: torch.Tensor,
        observe: Observer | None = None,
        before_layer: Callable[[int, int, tuple], None] | None = None,
    ) -> torch.Tensor:
        """The last stage's output (before the head). With ``observe``, each block runs layer by
        layer (plain autograd) and every function call is reported first as
        ``observe(stage, layer, name, args)`` (``layer`` counted within the stage); with
        ``before_layer`` too, each layer's input state as ``before_layer(stage, layer, state)``."""
        x = self.stem(x)
        for i, stage in enumerate(self.stages):
            if i:
                x = self.transitions[i - 1](x)
            if observe is None:
                x = stage(x)
                continue
            state = stage.initial_state(x)
            for n in range(stage.depth):
                if before_layer is not None:
                    before_layer(i, n, state)

                def call(key, name, *args, i=i, n=n, block=stage):
                    observe(i, n, name, args)
                    return block.function(name, n)(*args)

                state = stage.step(n, state, call)
            x = stage.output(state)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def smoothness(self) -> torch.Tensor:
        """Chang et al.'s time-smoothness regularizer ``sum_n ||theta_{n+1} - theta_n||^2 / h`` over
        consecutive layers of each stage (every per-layer parameter: kernels, biases, BN affine),
        with ``h`` the scheme's step (1 when it has none). Zero for shared functions."""
        total = torch.zeros(())
        for stage in self.stages:
            step = stage.scheme.step
            h = float(stage.layer_params(0)[step]) if step in stage.start_values else 1.0
            for name, modules in stage.functions.items():
                if stage.shared[name]:
                    continue
                for a, b in itertools.pairwise(modules):
                    for p, q in zip(a.parameters(), b.parameters(), strict=True):
                        total = total + (q - p).square().sum() / h
        return total


def function_spec(factory: Callable[[int], nn.Module], config: ModelConfig) -> nn.Module | Callable:
    """What a block takes for one function: one module (shared), or a factory of per-layer modules,
    fresh ones or, with ``smooth_init``, copies of one (the same random draws as the shared network)."""
    if config.shared:
        return factory(0)
    if config.smooth_init:
        template = factory(0)
        return lambda layer: copy.deepcopy(template)
    return factory


# Bytes per parameter when training: the weight, its gradient and Adam's two moments, float32.
TRAINING_BYTES_PER_PARAMETER = 16
# Python objects of one layer (its modules, parameters' wrappers, generated step): measured about
# 10 KiB for a two-function layer; a million layers are gigabytes before any weight.
LAYER_OVERHEAD_BYTES = 16 * 1024


def build_model(config: ModelConfig, bytes_per_parameter: int = 4) -> Classifier:
    """The model a config describes (fresh weights; load a state_dict to restore trained ones).

    It is first built on the ``meta`` device, where nothing is allocated, and refused with a
    :class:`~odenet.errors.ConfigError` when its parameters (``bytes_per_parameter`` each: 4 to hold
    them, 16 to train them with Adam) would not fit in the memory this machine has free: a huge
    ``--depth`` or ``--width`` is a message, not an exhausted machine."""
    from odenet.language import parse

    scheme = parse(config.scheme, "<model config>")
    count = parameter_count(config, scheme)
    layers = config.depth * config.stages
    needed = count * bytes_per_parameter + layers * LAYER_OVERHEAD_BYTES
    available = available_memory()
    if available is not None and needed > 0.8 * available:
        raise ConfigError(
            f"the model has {count:,} parameters in {layers:,} layers and needs about "
            f"{needed / 2**30:.1f} GiB ({bytes_per_parameter} bytes a parameter, "
            f"{LAYER_OVERHEAD_BYTES // 1024} KiB a layer), more than the {available / 2**30:.1f} GiB this "
            f"machine has free: lower --depth ({config.depth}) or --width ({config.width})"
        )
    return Classifier(config, scheme)


def parameter_count(config: ModelConfig, scheme: Scheme) -> int:
    """The model's parameters, counted without allocating them: one and two layers per stage are
    built on the ``meta`` device and the difference scaled to the depth (a million layers are not
    built to be counted)."""

    def count(depth: int) -> int:
        with torch.device("meta"):
            model = Classifier(dataclasses.replace(config, depth=depth), scheme)
            return sum(p.numel() for p in model.parameters())

    one = count(1)
    return one + (config.depth - 1) * (count(2) - one)


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation (Linux's MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
