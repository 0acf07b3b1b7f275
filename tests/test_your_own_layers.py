"""Schemes over the layers people already have: GPT-2 and Llama decoder layers and a ResNet stage,
from ``transformers`` (models built from small configs, random weights, nothing downloaded).

The references are the models' own forward passes and plain autograd: Euler with ``h = 1`` over
the residual functions is the original stack; leapfrog, momentum and a revnet coupling over the
same layers give, in reversible mode, the gradients autograd gives (float64, 1e-9), with the
running statistics of BatchNorm moved once per call.
"""

from __future__ import annotations

import io
import logging

import pytest
import torch

import odenet

transformers = pytest.importorskip("transformers")
logging.getLogger("transformers").setLevel(logging.ERROR)  # config warnings about unused token ids

BATCH, TOKENS, WIDTH, LAYERS = 2, 7, 32, 4


def _gpt2(dtype=torch.float32):
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=50, n_positions=16, n_embd=WIDTH, n_layer=LAYERS, n_head=4,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2Model(config).to(dtype).eval()


def _llama(dtype=torch.float32):
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=LAYERS,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
        attn_implementation="eager", bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.LlamaModel(config).to(dtype).eval()


def _llama_context(model, x):
    """What a Llama layer needs at every layer: rotary position embeddings (a tuple) and a causal
    mask (additive, per sample), as the model computes them."""
    positions = torch.arange(x.shape[1])[None]
    mask = torch.full((x.shape[1], x.shape[1]), float("-inf"), dtype=x.dtype).triu(1)
    return {
        "position_embeddings": model.rotary_emb(x, position_ids=positions),
        "attention_mask": mask.expand(x.shape[0], 1, -1, -1),
        "position_ids": positions,
    }


def _stack(model) -> torch.nn.ModuleList:
    """The decoder layers: GPT-2's ``h``, Llama's ``layers``."""
    return model.h if hasattr(model, "h") else model.layers


def _relative(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


# -- the original stack, as Euler with h = 1 ------------------------------------------------------


def test_euler_over_gpt2_layers_is_gpt2():
    model = _gpt2()
    ids = torch.randint(0, 50, (BATCH, TOKENS))
    x = model.wte(ids) + model.wpe(torch.arange(TOKENS))[None]
    block = odenet.compile("euler", {"f": odenet.residual_functions(model.h)}, LAYERS, params={"h": 1.0})
    with torch.no_grad():
        got, expected = model.ln_f(block(x)), model(ids).last_hidden_state
    assert _relative(got, expected) < 1e-6  # float32: the subtraction and the addition round


def test_euler_over_llama_layers_with_rotary_embeddings_and_mask_as_context_is_llama():
    model = _llama()
    x = torch.randn(BATCH, TOKENS, WIDTH)
    block = odenet.compile("euler", {"f": odenet.residual_functions(model.layers)}, LAYERS, params={"h": 1.0})
    with torch.no_grad():
        got = model.norm(block(x, **_llama_context(model, x)))
        expected = model(inputs_embeds=x).last_hidden_state
        without_mask = model.norm(block(x, **{**_llama_context(model, x), "attention_mask": None}))
    assert _relative(got, expected) < 1e-6
    assert _relative(without_mask, expected) > 1e-2  # the mask reached the layers


def test_a_layer_that_does_not_fit_the_state_is_refused_by_name():
    """Llama's layers over a state of the wrong width: a ConfigError naming the function and both
    shapes, not an error from inside the attention."""
    model = _llama()
    block = odenet.compile("leapfrog", {"f": lambda i: _First(model.layers[i])}, LAYERS, params={"h": 1.0})
    x = torch.randn(BATCH, TOKENS, WIDTH)
    with pytest.raises(odenet.ConfigError, match=r"function f of layer 0 returned shape \(7, 32\)"):
        block(x, **_llama_context(model, x))


class _First(torch.nn.Module):
    """A residual function that returns the first sample only (a user's slip: out[0])."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, x, **context):
        return (self.layer(x, **context) - x)[0]


# -- reversible memory over the same layers -------------------------------------------------------

# scheme -> (functions over the LAYERS layers, depth, copies of the input in the state, parameters)
SCHEMES = {
    "leapfrog": (lambda layers: {"f": odenet.residual_functions(layers)}, LAYERS, 1, {"h": 0.5}),
    "momentum": (lambda layers: {"f": odenet.residual_functions(layers)}, LAYERS, 1, {}),
    # a revnet coupling: f and g alternate over the layers; the input is given to both halves
    "revnet": (
        lambda layers: {
            "f": odenet.residual_functions(layers[0::2]),
            "g": odenet.residual_functions(layers[1::2]),
        },
        LAYERS // 2,
        2,
        {},
    ),
}


def _gradients(model_fn, name, memory, context_fn):
    model = model_fn(torch.float64)
    functions, depth, copies, params = SCHEMES[name]
    block = odenet.compile(name, functions(_stack(model)), depth, memory, params=params)
    torch.manual_seed(1)
    x = torch.randn(BATCH, TOKENS, WIDTH, dtype=torch.float64, requires_grad=True)
    context = context_fn(model, x)
    y = block(torch.cat([x] * copies, dim=1), **context)
    loss = (y * torch.linspace(-1, 1, y.numel(), dtype=torch.float64).reshape(y.shape)).sum()
    weights = [p for p in block.parameters() if p.requires_grad]
    return y.detach(), torch.autograd.grad(loss, [x, *weights])


MODELS = {"gpt2": (_gpt2, lambda model, x: {}), "llama": (_llama, _llama_context)}


@pytest.mark.parametrize("name", sorted(SCHEMES))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_reversible_gradients_over_transformer_layers_equal_autograd(model, name):
    model_fn, context_fn = MODELS[model]
    y_ref, expected = _gradients(model_fn, name, "autograd", context_fn)
    y, got = _gradients(model_fn, name, "reversible", context_fn)
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)
    scale = torch.cat([g.reshape(-1) for g in expected]).norm()
    assert max((a - b).norm().item() for a, b in zip(got, expected, strict=True)) / scale.item() < 1e-9


def test_reversible_gradients_in_float32_within_float32_rounding():
    """In float32 the rebuilt inputs carry float32 rounding: the gradients agree with autograd's to
    a few hundred eps, as autograd's own float32 gradients agree with float64's."""
    model = _llama()
    x = torch.randn(BATCH, TOKENS, WIDTH, requires_grad=True)
    context = _llama_context(model, x)
    results = {}
    for memory in ("autograd", "reversible"):
        block = odenet.compile("momentum", {"f": odenet.residual_functions(model.layers)}, LAYERS, memory)
        (gx,) = torch.autograd.grad(block(x, **context).square().sum(), [x])
        results[memory] = gx
    assert _relative(results["reversible"], results["autograd"]) < 300 * torch.finfo(torch.float32).eps


# -- a ResNet stage ----------------------------------------------------------------------------------


def _resnet_stage():
    torch.manual_seed(0)
    config = transformers.ResNetConfig(
        num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 4], layer_type="basic"
    )
    model = transformers.ResNetModel(config).double().train()
    return model.encoder.stages[1].layers[1:]  # the layers that keep the width (16 channels)


@pytest.mark.parametrize("name", ["leapfrog", "momentum"])
def test_reversible_over_a_resnet_stage_equals_autograd_with_batchnorm_in_training(name):
    """conv-BatchNorm-ReLU-conv-BatchNorm residual branches (the block's activation follows the
    sum, so the branch is given, not computed as layer(x) - x): reversible gradients and running
    statistics equal autograd's."""
    results = {}
    for memory in ("autograd", "reversible"):
        stage = _resnet_stage()
        f = odenet.residual_functions(stage, branch=lambda layer: layer.layer)
        block = odenet.compile(name, {"f": f}, len(stage), memory, params=SCHEMES[name][3])
        torch.manual_seed(1)
        x = torch.randn(4, 16, 6, 6, dtype=torch.float64, requires_grad=True)
        y = block(x)
        weights = [p for p in block.parameters() if p.requires_grad]
        grads = torch.autograd.grad((y * y.detach().sin()).sum(), [x, *weights])
        results[memory] = (y.detach(), grads, [b.clone() for b in block.buffers()])
    (y_ref, g_ref, b_ref), (y, g, b) = results["autograd"], results["reversible"]
    assert torch.allclose(y, y_ref, rtol=0, atol=1e-12)
    scale = torch.cat([t.reshape(-1) for t in g_ref]).norm()
    assert max((a - c).norm().item() for a, c in zip(g, g_ref, strict=True)) / scale.item() < 1e-9
    assert len(b) == len(b_ref) > 0
    for a, c in zip(b, b_ref, strict=True):
        assert torch.equal(a, c) if a.dtype == torch.long else torch.allclose(a, c, rtol=1e-13, atol=1e-13)


def test_the_state_dict_names_each_weight_once():
    """With a branch, the function registers the branch (the layer's own modules), not the layer
    beside it: the block's state dict holds each of the stage's tensors once."""
    stage = _resnet_stage()
    f = odenet.residual_functions(stage, branch=lambda layer: layer.layer)
    block = odenet.compile("leapfrog", {"f": f}, 3)
    names = list(block.state_dict())
    tensors = [t for name, t in block.state_dict().items() if name.startswith("functions.")]
    assert len({t.data_ptr() for t in tensors}) == len(tensors)
    assert any(name.endswith("normalization.running_mean") for name in names)


# -- saving -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_torch_save_round_trips_a_block_over_transformer_layers(model):
    model_fn, context_fn = MODELS[model]
    source = model_fn()
    block = odenet.compile("momentum", {"f": odenet.residual_functions(_stack(source))}, LAYERS, "reversible")
    x = torch.randn(BATCH, TOKENS, WIDTH)
    context = context_fn(source, x)
    with torch.no_grad():
        expected = block(x, **context)
    whole, weights = io.BytesIO(), io.BytesIO()
    torch.save(block, whole)
    torch.save(block.state_dict(), weights)
    whole.seek(0)
    weights.seek(0)
    loaded = torch.load(whole, weights_only=False)  # a whole module: the user's own classes
    f = odenet.residual_functions(_stack(model_fn()))
    fresh = odenet.compile("momentum", {"f": f}, LAYERS, "reversible")
    with torch.no_grad():
        for param in fresh.parameters():
            param.add_(1.0)  # different weights until the state dict is loaded
    fresh.load_state_dict(torch.load(weights, weights_only=True))
    with torch.no_grad():
        assert torch.equal(loaded(x, **context), expected)
        assert torch.equal(fresh(x, **context), expected)
    assert loaded.mode == block.mode and loaded.depth == LAYERS


# -- the docs page ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_your_own_layers_page_runs(tmp_path):
    """docs/your-own-layers.md: its Python blocks, in order, run as one program."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "your-own-layers.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", page, flags=re.DOTALL)
    assert len(blocks) >= 5
    program = tmp_path / "page.py"
    program.write_text("\n".join(blocks))
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    stable, fractions = done.stdout.strip().splitlines()[-1].split(" ", 1)
    assert stable in ("True", "False") and fractions.startswith("[")
