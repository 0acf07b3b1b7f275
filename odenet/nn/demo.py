"""What ``odenet compile SCHEME`` does without ``--emit``: build a block with small MLP functions and
train it a few steps on random data, reporting the memory mode and what the backward pass keeps."""

from __future__ import annotations

import time

import torch
from torch import nn

from odenet.ir import Scheme
from odenet.nn.block import compile
from odenet.nn.memory import saved_tensor_bytes

__all__ = ["train_demo"]


def mlp_factory(width: int, hidden: int):
    def make(layer: int) -> nn.Module:
        return nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, width))

    return make


def train_demo(
    scheme: Scheme, depth: int, memory: str, width: int, steps: int, batch: int, seed: int, out=print
) -> nn.Module:
    torch.manual_seed(seed)
    parts = len(scheme.inputs)
    functions = {f.name: mlp_factory(width, 2 * width) for f in scheme.functions}
    block = compile(scheme, functions, depth, memory)
    x = torch.randn(batch, width * parts)
    target = torch.sin(2 * x)
    optimizer = torch.optim.Adam(block.parameters(), lr=1e-3)
    parameters = sum(p.numel() for p in block.parameters())
    shape = f"[{batch}, {width * parts}]"
    out(f"scheme {scheme.name}: depth {depth}, memory={memory}, {parameters} parameters, input {shape}")
    for step in range(1, steps + 1):
        start = time.perf_counter()
        optimizer.zero_grad()
        with saved_tensor_bytes(exclude=block.parameters()) as saved:
            loss = (block(x) - target).square().mean()
        loss.backward()
        optimizer.step()
        seconds = time.perf_counter() - start
        mib = (saved.bytes + block.kept_bytes) / 2**20
        out(
            f"  step {step}: loss {loss.item():.5f}  saved for backward {mib:.2f} MiB  {seconds * 1e3:.0f} ms"
        )
    if memory == "reversible" and block.reconstruction_errors:
        worst = max(e for _, e in block.reconstruction_errors)
        out(f"  reconstruction error of the rebuilt input (relative): {worst:.1e}")
    return block
