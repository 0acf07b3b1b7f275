"""Scheme blocks over the layers of existing models, against the original stack: peak memory of a
training step and its time.

Models from ``transformers``, built from configs (random initialization, nothing downloaded):

- ``gpt2``: GPT-2 blocks, width 256, 8 heads, 12 layers, 256 tokens, batch 8, float32;
- ``llama``: Llama decoder layers, width 256, 8 heads (4 key-value heads), MLP 512, 12 layers, 256
  tokens, batch 8, rotary position embeddings passed as keyword context; SDPA attention (causal);
- ``resnet``: a ResNet stage's basic blocks (conv-BN-ReLU-conv-BN branches), 64 channels at 32x32,
  16 layers, batch 32, BatchNorm in training mode.

For each model: ``original`` runs the layers as the model does (plain autograd); ``leapfrog``,
``momentum`` and (transformers) ``revnet`` run the same layers' residual functions
(``odenet.residual_functions``) in ``memory="reversible"`` (leapfrog with h = 1/2; revnet couples
the even layers as f and the odd ones as g, on two copies of the input). Each (model, variant) runs
in two fresh processes (``measure.py``): one measures the peak RSS of one training step minus the
RSS before it and the bytes autograd saved (parameters excluded) plus what the block kept (glibc's
mmap threshold fixed, so that freed activations leave the resident set); the other, with the
allocator as it is, the median time of 5 steps after 2 warm-up steps. One thread per process.

Run: python benchmarks/your_own_layers.py [--models gpt2 llama resnet] [--variants ...] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import fresh_process, training_step

VARIANTS = {
    "gpt2": ["original", "leapfrog", "momentum", "revnet"],
    "llama": ["original", "leapfrog", "momentum", "revnet"],
    "resnet": ["original", "leapfrog", "momentum"],
}
SIZES = {  # width, layers, tokens (or pixels per side), batch
    "gpt2": (256, 12, 256, 8),
    "llama": (256, 12, 256, 8),
    "resnet": (64, 16, 32, 32),
}
QUICK = {"gpt2": (32, 4, 16, 2), "llama": (32, 4, 16, 2), "resnet": (8, 4, 8, 4)}


def build(model: str, variant: str, size):
    """(a module whose forward takes the input, the input)."""
    import torch
    import transformers
    from torch import nn

    import odenet

    logging.getLogger("transformers").setLevel(logging.ERROR)
    torch.manual_seed(0)
    width, layers, tokens, batch = size
    context = {}
    if model == "gpt2":
        config = transformers.GPT2Config(
            vocab_size=64, n_positions=tokens, n_embd=width, n_layer=layers, n_head=8,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        stack = transformers.GPT2Model(config).h
        x = torch.randn(batch, tokens, width)
    elif model == "llama":
        config = transformers.LlamaConfig(
            vocab_size=64, hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
            num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=tokens,
            attn_implementation="sdpa", bos_token_id=0, eos_token_id=0,
        )  # fmt: skip
        llama = transformers.LlamaModel(config)
        stack = llama.layers
        x = torch.randn(batch, tokens, width)
        positions = torch.arange(tokens)[None]
        context = {
            "position_embeddings": llama.rotary_emb(x, position_ids=positions),
            "position_ids": positions,
        }
    else:
        config = transformers.ResNetConfig(
            num_channels=3, embedding_size=width, hidden_sizes=[width], depths=[layers], layer_type="basic"
        )
        stack = transformers.ResNetModel(config).train().encoder.stages[0].layers
        x = torch.randn(batch, width, tokens, tokens)
    branch = (lambda layer: layer.layer) if model == "resnet" else None

    if variant == "original":

        class Original(nn.Module):
            def __init__(self):
                super().__init__()
                self.stack = stack

            def forward(self, x):
                for layer in self.stack:
                    x = layer(x, **context)
                return x

        return Original(), x
    if variant == "revnet":
        functions = {
            "f": odenet.residual_functions(stack[0::2], branch),
            "g": odenet.residual_functions(stack[1::2], branch),
        }
        block = odenet.compile("revnet", functions, layers // 2, "reversible")
        copies = 2
    else:
        params = {"h": 0.5} if variant == "leapfrog" else {}
        functions = {"f": odenet.residual_functions(stack, branch)}
        block = odenet.compile(variant, functions, layers, "reversible", params=params)
        copies = 1

    class Scheme(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = block

        @property
        def kept_bytes(self) -> int:
            return self.block.last_pass.kept_bytes

        def forward(self, x):
            return self.block(torch.cat([x] * copies, dim=1) if copies > 1 else x, **context)

    return Scheme(), x


def worker(argument: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    model, x = build(argument["model"], argument["variant"], argument["size"])
    for _ in range(2):  # warm-up: the allocator's and the drift plan's first pass
        model(x).square().mean().backward()
    memory = training_step(model, x) if argument["measure"] in ("memory", "both") else {}
    if argument["measure"] == "memory":
        return memory
    times = []
    for _ in range(argument["steps"]):
        start = time.perf_counter()
        model(x).square().mean().backward()
        times.append(time.perf_counter() - start)
    return {**memory, "step_s": statistics.median(times)}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--variants", nargs="+", help="only these variants (the original always runs)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code path")
    args = parser.parse_args()
    header = ["model", "variant", "peak RSS of a step (MiB)", "saved for backward (MiB)", "step (s)"]
    print("| " + " | ".join([*header, "time / original"]) + " |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        size = QUICK[model] if args.quick else SIZES[model]
        rows = {}
        for variant in VARIANTS[model]:
            if args.variants and variant != "original" and variant not in args.variants:
                continue
            argument = {"model": model, "variant": variant, "size": size, "steps": 2 if args.quick else 5}
            if args.quick:  # the code path only: one process measures both
                row = fresh_process(__file__, {**argument, "measure": "both"})
            else:
                row = fresh_process(__file__, {**argument, "measure": "memory"})
                row.update(fresh_process(__file__, {**argument, "measure": "time"}, fixed_threshold=False))
            rows[variant] = row
            if "error" in row:
                print(f"| {model} | {variant} | failed: {row['error']} | | | |")
                continue
            ratio = (
                row["step_s"] / rows["original"]["step_s"] if "step_s" in rows["original"] else float("nan")
            )
            print(
                f"| {model} | {variant} | {row['peak_mib']:.1f} | {row['saved_mib']:.1f} | "
                f"{row['step_s']:.3f} | {ratio:.2f}x |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
