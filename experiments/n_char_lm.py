"""(n) A small decoder-only language model over Llama layers, trained as it is and as scheme networks
in reversible mode: does the scheme version train as well, and what does it save?

The text is the source of Python modules that ship with the interpreter (argparse, textwrap,
inspect, dataclasses, pathlib): a character vocabulary, the last 10% held out. The model is an
embedding, a stack of Llama decoder layers from ``transformers`` (built from a config, random
initialization, nothing downloaded; rotary position embeddings, causal attention), a final norm
and a linear head. The variants share the initial weights (one seed) and the data order:

- ``original``: the layer stack as transformers runs it (``x <- layer(x)``), plain autograd;
- ``momentum``: the same layers as the residual functions of the momentum scheme (Sander et al.
  2021; m-RevNet), ``memory="reversible"``: activations rebuilt in the backward pass; its
  ``gamma`` (one per layer, from 0.9) is trained with the weights;
- ``leapfrog``: the same, leapfrog (``h = 1/2``; Chang et al. 2018), reversible.

Each variant runs in its own subprocess (glibc's mmap threshold fixed at 64 KiB, so that freed
activations leave the resident set). It reports the bytes autograd saved for the backward pass
(activations; parameters excluded; for the reversible blocks plus what the mode keeps beyond the
output), the peak resident memory of one training step minus the resident memory before it (step
100, after the optimizer's state exists), the process's peak RSS (torch, transformers, sympy for
the scheme's analysis and the data included), and the step time (median over the run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from common import arguments, write_json

from odenet.report.plotting import new_figure, save_figure

VARIANTS = ("original", "momentum", "leapfrog")
MODULES = ("argparse", "textwrap", "inspect", "dataclasses", "pathlib")


def corpus() -> str:
    import importlib
    import inspect

    return "\n".join(inspect.getsource(importlib.import_module(name)) for name in MODULES)


def worker(variant: str, steps: int, layers: int, width: int, context_length: int, batch: int) -> dict:
    import logging

    import torch
    import transformers
    from torch import nn

    import odenet
    from odenet.nn.memory import peak_rss_mib, reset_peak_rss, rss_mib, saved_tensor_bytes

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.set_num_threads(2)
    text = corpus()
    vocabulary = sorted(set(text))
    lookup = {c: i for i, c in enumerate(vocabulary)}
    codes = torch.tensor([lookup[c] for c in text], dtype=torch.long)
    split = int(0.9 * len(codes))
    train_codes, held_out = codes[:split], codes[split:]

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(vocabulary),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context_length,
        attn_implementation="sdpa",
        bos_token_id=0,
        eos_token_id=0,
    )
    llama = transformers.LlamaModel(config)
    head = nn.Linear(width, len(vocabulary), bias=False)
    if variant == "original":
        block = None
    else:
        params = {"h": 0.5} if variant == "leapfrog" else {}
        functions = {"f": odenet.residual_functions(llama.layers)}
        block = odenet.compile(variant, functions, layers, "reversible", params=params)
    modules = [llama, head] if block is None else [llama, head, block]  # the block's own: gamma
    parameters = list({id(p): p for m in modules for p in m.parameters()}.values())
    optimizer = torch.optim.AdamW(parameters, lr=3e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=steps, pct_start=0.1)
    positions = torch.arange(context_length)[None]

    def logits(ids: torch.Tensor) -> torch.Tensor:
        x = llama.embed_tokens(ids)
        rotary = llama.rotary_emb(x, position_ids=positions)  # context: the same at every layer
        if block is None:
            for layer in llama.layers:
                x = layer(x, position_embeddings=rotary, position_ids=positions)
        else:
            x = block(x, position_embeddings=rotary, position_ids=positions)
        return head(llama.norm(x))

    def loss_of(ids: torch.Tensor) -> torch.Tensor:
        out = logits(ids[:, :-1])
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), ids[:, 1:].reshape(-1))

    def windows(source: torch.Tensor, count: int, generator) -> torch.Tensor:
        starts = torch.randint(0, len(source) - context_length - 1, (count,), generator=generator)
        return torch.stack([source[s : s + context_length + 1] for s in starts])

    evaluation = windows(held_out, 64, torch.Generator().manual_seed(1))
    data = torch.Generator().manual_seed(2)
    curve, held_out_curve, times, saved = [], [], [], []
    every = max(1, steps // 20)
    step_peak = None
    for step in range(steps):
        ids = windows(train_codes, batch, data)
        measured = step == min(100, steps - 1) and reset_peak_rss()
        before = rss_mib()
        start = time.perf_counter()
        with saved_tensor_bytes(exclude=parameters) as counter:
            loss = loss_of(ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        times.append(time.perf_counter() - start)
        if measured:
            step_peak = peak_rss_mib() - before
        kept = block.last_pass.kept_bytes if block is not None else 0
        saved.append(counter.bytes + kept)
        curve.append(loss.item())
        if (step + 1) % every == 0 or step == steps - 1:
            with torch.no_grad():
                held_out_curve.append((step + 1, loss_of(evaluation).item()))
    times.sort()
    return {
        "variant": variant,
        "steps": steps,
        "layers": layers,
        "width": width,
        "context_length": context_length,
        "batch": batch,
        "vocabulary": len(vocabulary),
        "characters": len(codes),
        "parameters": sum(p.numel() for p in parameters),
        "train_loss": curve,
        "held_out_loss": held_out_curve,
        "final_held_out_loss": held_out_curve[-1][1],
        "median_step_seconds": times[len(times) // 2],
        "saved_for_backward_mib": max(saved) / 2**20,
        "step_peak_rss_mib": step_peak,
        "peak_rss_mib": peak_rss_mib(),
    }


if len(sys.argv) > 1 and sys.argv[1] == "--worker":
    print(json.dumps(worker(sys.argv[2], *map(int, sys.argv[3:8]))))
    sys.exit(0)

args = arguments(__doc__.splitlines()[0])
size = (20, 2, 32, 32, 8) if args.quick else (1200, 4, 128, 64, 32)  # steps, layers, width, context, batch
rows = []
for variant in VARIANTS[:2] if args.quick else VARIANTS:  # quick: the code path of both kinds
    out = subprocess.run(
        [sys.executable, __file__, "--worker", variant, *map(str, size)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**16)},
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    rows.append(row)
    print(
        f"{variant:9s}: held-out loss {row['final_held_out_loss']:.3f} (nats/char), step "
        f"{1000 * row['median_step_seconds']:.0f} ms, saved for backward "
        f"{row['saved_for_backward_mib']:.1f} MiB, a step's peak RSS {row['step_peak_rss_mib']:.1f} MiB "
        f"(process {row['peak_rss_mib']:.0f} MiB)"
    )
write_json(args.out / "n_char_lm.json", rows)

fig, axes = new_figure(1, 2, figsize=(10, 3.8), dpi=100)
for row, color in zip(rows, ("C3", "C0", "C2"), strict=False):
    losses = row["train_loss"]
    window = max(1, len(losses) // 50)
    smooth = [
        sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
        for i in range(len(losses))
    ]
    axes[0].plot(range(1, len(losses) + 1), smooth, color=color, label=row["variant"])
    steps_at, held = zip(*row["held_out_loss"], strict=True)
    axes[1].plot(steps_at, held, "o-", color=color, markersize=3, label=row["variant"])
for ax, title in zip(axes, ("training loss (running mean)", "held-out loss"), strict=True):
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.set_title(title)
    ax.legend()
first = rows[0]
fig.suptitle(
    f"character LM, {first['layers']} Llama layers of width {first['width']}, "
    f"context {first['context_length']}, batch {first['batch']}"
)
save_figure(fig, args.out / "n_char_lm.png")
