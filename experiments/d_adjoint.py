"""(d) Sander et al. 2022: the gradient error of the approximate adjoint against depth, Euler and Heun,
with weights smooth in depth.

A block of N layers on [0, 1] (h = 1/N), f_n(x) = tanh(W(t_n) x + b(t_n)) with W(t) = W0 + t W1 and
b(t) = b0 + t b1 (the same smooth weight path sampled at every depth), width 16, batch 32, float64.
The gradient of a loss with respect to all weights from memory='adjoint' (inputs rebuilt by a step
with -h) is compared with plain autograd's: relative error ||g_adjoint - g||/||g||.
"""

from __future__ import annotations

import itertools
import math

import torch
from common import arguments, write_json
from torch import nn

import odenet
from odenet.report.plotting import new_figure, save_figure

args = arguments(__doc__.splitlines()[0])
depths = [4, 8, 16] if args.quick else [4, 8, 16, 32, 64, 128, 256]
torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(0)
width = 16
W0, W1 = (torch.randn(width, width, generator=gen) / math.sqrt(width) for _ in range(2))
b0, b1 = (0.5 * torch.randn(width, generator=gen) for _ in range(2))
x = torch.randn(32, width, generator=gen)
target = torch.randn(32, width, generator=gen)


def factory(depth: int):
    def make(n: int) -> nn.Module:
        t = n / depth
        layer = nn.Sequential(nn.Linear(width, width), nn.Tanh())
        with torch.no_grad():
            layer[0].weight.copy_(W0 + t * W1)
            layer[0].bias.copy_(b0 + t * b1)
        return layer

    return make


def gradient(scheme, depth: int, memory: str) -> torch.Tensor:
    block = odenet.compile(scheme, {"f": factory(depth)}, depth, memory, params={"h": 1.0 / depth})
    loss = (block(x) - target).square().mean()
    grads = torch.autograd.grad(loss, list(block.functions.parameters()))
    return torch.cat([g.flatten() for g in grads])


results = {}
for name in ("euler", "heun"):
    scheme = odenet.load(name)
    rows = []
    for depth in depths:
        exact = gradient(scheme, depth, "autograd")
        approx = gradient(scheme, depth, "adjoint")
        error = float((approx - exact).norm() / exact.norm())
        rows.append({"depth": depth, "relative_error": error})
        print(f"{name:6s} depth {depth:4d}: relative gradient error {error:.3e}")
    for a, b in itertools.pairwise(rows):
        b["fall_per_doubling"] = a["relative_error"] / b["relative_error"]
    results[name] = rows
write_json(args.out / "d_adjoint.json", results)

fig, ax = new_figure(figsize=(5.5, 4), dpi=100)
for name, rows in results.items():
    ax.loglog([r["depth"] for r in rows], [r["relative_error"] for r in rows], "o-", label=name)
ax.set_xlabel("layers N (h = 1/N)")
ax.set_ylabel("relative gradient error of the adjoint")
ax.legend()
ax.grid(True, which="both", alpha=0.3)
save_figure(fig, args.out / "d_adjoint.png")
