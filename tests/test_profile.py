"""odenet.profile: each number against an independent count of the same step."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import odenet
from odenet.cli import main
from odenet.nn import profile

MIB = 2**20


def test_a_plain_stack_of_linear_layers_is_counted_by_hand():
    """8 Linear(256, 256) on a batch of 512, float32: each layer saves its input (0.5 MiB), the
    parameters and their gradients are 8 * (256*256 + 256) floats. The peak of live tensor memory
    is the layers' outputs and the gradients, within the transient buffers of one backward step."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)])
    x = torch.randn(512, 256)
    record = profile(model, x)
    weights = 8 * (256 * 256 + 256) * 4
    assert record.parameter_bytes == record.gradient_bytes == weights
    # the 7 hidden outputs and the output, which the loss's square saves (x is the caller's)
    assert record.activation_bytes == 8 * 512 * 256 * 4
    assert record.kept_bytes == 0
    # new during the step: the 8 layers' outputs (x is the caller's) and the gradients, which
    # replace them as the backward pass frees them; the weights' transposes are views of existing
    # storage, not new memory
    outputs = 8 * 512 * 256 * 4  # all alive when the backward pass starts
    assert outputs < record.peak_bytes <= outputs + weights + MIB  # counting the transposes: 8 MiB
    assert record.seconds > 0 and record.device == "cpu"
    assert "activations saved for backward" in repr(record) and "MiB" in repr(record)


def test_the_module_is_left_as_it_was():
    """Gradients, running statistics and the random stream: as before the profile."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    model[0].weight.grad = torch.ones(4, 4)
    stats = model[1].running_mean.clone()
    x = torch.randn(8, 4)
    state = torch.get_rng_state()
    profile(model, x)
    assert torch.equal(model[0].weight.grad, torch.ones(4, 4)) and model[0].bias.grad is None
    assert torch.equal(model[1].running_mean, stats)
    assert torch.equal(torch.get_rng_state(), state)


def test_reversible_mode_saves_only_its_output_and_its_peak_is_far_below_autograds():
    torch.manual_seed(0)

    def block(memory):
        torch.manual_seed(0)
        function = lambda i: nn.Sequential(nn.Linear(64, 64), nn.Tanh())  # noqa: E731
        return odenet.compile("leapfrog", {"f": function}, 32, memory)

    x = torch.randn(256, 64)
    autograd, reversible = profile(block("autograd"), x), profile(block("reversible"), x)
    state = 256 * 64 * 4
    assert reversible.activation_bytes <= 2 * state  # the output (y and y[n-1] share storage or not)
    assert autograd.activation_bytes > 32 * state
    assert reversible.peak_bytes < autograd.peak_bytes / 2
    assert reversible.parameter_bytes == autograd.parameter_bytes


def test_the_reversible_backward_pass_holds_few_states_besides_the_gradients():
    """A revnet coupling over two-layer MLPs, depth 32 (two release groups). At the backward pass's
    peak the parameters' gradients are all there (as in every method), and besides them, counted in
    states (the block's input, both halves): the group's given gradients (1) and the layer's (1), its
    rebuilt input and the part of its output the product reads (1.5), one function's evaluation
    (hidden layer and output, 1) and one product's transients: 6.5 measured. It was 9.3 when the
    product kept every gradient and evaluation to its end, the inverse evaluated both functions before
    either was pulled, and the copies above a finished group stayed alive."""
    torch.manual_seed(0)
    mlps = [nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64)) for _ in range(64)]
    functions = {"f": lambda i: mlps[2 * i], "g": lambda i: mlps[2 * i + 1]}
    block = odenet.compile("revnet", functions, 32, "reversible")
    x = torch.randn(1024, 128)
    record = profile(block, x)
    assert record.gradient_bytes == 64 * (2 * 64 * 64 + 2 * 64) * 4
    assert record.peak_bytes - record.gradient_bytes <= 6.75 * x.nbytes


def test_context_reaches_the_module():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x, *, scale):
            return self.linear(x) * scale

    record = profile(Scaled(), torch.randn(2, 4), scale=torch.tensor(2.0))
    assert record.gradient_bytes == (16 + 4) * 4


def test_profile_command_prints_every_mode(capsys):
    assert main(["profile", "leapfrog", "--depth", "4", "--batch", "32", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["memory"] for row in rows] == list(odenet.MEMORY_MODES)
    by_mode = {row["memory"]: row for row in rows}
    assert by_mode["reversible"]["activation_bytes"] < by_mode["autograd"]["activation_bytes"]
    assert main(["profile", "euler", "--memory", "fixed_point", "reversible", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "| fixed_point | not offered:" in out and "| reversible |" in out
    # at a step of 1 (Euler's on MNIST-1D) its inverse (a fixed point) need not converge: the row says
    # so, the others print
    command = ["profile", "euler", "--memory", "autograd", "reversible", "--depth", "2", "--data", "mnist1d"]
    assert main([*command, "--json"]) == 0
    rows = {row["memory"]: row for row in json.loads(capsys.readouterr().out)}
    assert "activation_bytes" in rows["autograd"]
    assert "did not converge" in rows["reversible"]["failed"]  # the weights are seeded: it fails every time


@pytest.mark.parametrize("memory", ["checkpoint", "adjoint"])
def test_kept_bytes_are_odenets_own(memory):
    block = odenet.compile("leapfrog", {"f": lambda i: nn.Linear(8, 8)}, 4, memory)
    assert profile(block, torch.randn(4, 8)).kept_bytes == block.last_pass.kept_bytes


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_peak_is_the_allocators_and_agrees_with_the_cpu_count():
    """On CUDA the peak comes from the allocator's statistics; for the same step it matches the
    CPU's count of live storage within the allocator's rounding (512-byte blocks, workspaces)."""
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(256, 256) for _ in range(8)])
    x = torch.randn(512, 256)
    on_cpu = profile(model, x)
    on_gpu = profile(model.cuda(), x.cuda())
    assert on_gpu.peak_measure == "torch.cuda.max_memory_allocated" and on_gpu.device.startswith("cuda")
    assert on_gpu.activation_bytes == on_cpu.activation_bytes
    assert abs(on_gpu.peak_bytes - on_cpu.peak_bytes) < 0.25 * on_cpu.peak_bytes + 8 * MIB


def test_what_exists_anyway_is_not_counted_as_activations():
    """An input sliced from a data set (its storage is the whole data set's), frozen parameters and
    buffers exist before the step: they are not activations."""
    torch.manual_seed(0)
    data = torch.randn(100_000, 64)
    frozen = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 1024))
    frozen[1].requires_grad_(False)
    sliced, copied = profile(frozen, data[:16]), profile(frozen, data[:16].clone())
    assert sliced.activation_bytes == copied.activation_bytes < 16 * (64 + 1024) * 4 + 1024
    assert sliced.parameter_bytes == (64 * 64 + 64) * 4  # the trainable ones


def test_inputs_and_replaced_buffers_are_put_back():
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3)
            self.register_buffer("count", torch.zeros(()))

        def forward(self, x):
            self.count = self.count + 1  # replaced, not updated in place
            return self.linear(x)

    model = Counting()
    buffer = model.count
    x = torch.randn(2, 3, requires_grad=True)
    profile(model, x)
    assert x.grad is None and model.count is buffer and float(buffer) == 0.0


def test_what_profile_cannot_measure_is_refused_or_skipped():
    model = nn.Linear(3, 3)
    with torch.no_grad(), pytest.raises(odenet.ConfigError, match="gradients enabled"):
        profile(model, torch.randn(2, 3))
    with pytest.raises(odenet.ConfigError, match="nothing here requires grad"):
        profile(nn.Tanh(), torch.randn(2, 3))

    class DictOutput(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(3, 3)

        def forward(self, x):
            return {"logits": self.linear(x)}

    assert profile(DictOutput(), torch.randn(2, 3)).gradient_bytes == 12 * 4
    sparse = nn.Embedding(1000, 8, sparse=True)  # a sparse gradient: not in the peak, no crash
    assert profile(sparse, torch.tensor([1, 2, 3])).parameter_bytes == 1000 * 8 * 4
