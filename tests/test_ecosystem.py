"""The compiled block in PyTorch's ecosystem: torch.compile, DistributedDataParallel, CUDA."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import odenet


def _block(memory, seed=0, depth=4, width=8):
    torch.manual_seed(seed)
    return odenet.compile(
        odenet.load("momentum"),
        {"f": lambda i: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))},
        depth,
        memory,
    )


def _grads(block, x):
    y = block(x)
    return y.detach(), torch.autograd.grad(y.square().sum(), list(block.parameters()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own internals, not odenet's
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("memory", ["autograd", "reversible"])
def test_torch_compile_gives_the_same_forward_and_gradients(memory):
    block = _block(memory)
    x = torch.randn(3, 8)
    y_ref, g_ref = _grads(block, x)
    compiled = torch.compile(block)
    y = compiled(x)
    g = torch.autograd.grad(y.square().sum(), list(block.parameters()))
    assert torch.allclose(y, y_ref, atol=1e-6)
    for a, b in zip(g, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, memory, inputs, queue):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(_block(memory))
        model(inputs[rank]).square().sum().backward()
        if rank == 0:
            queue.put([p.grad.numpy().copy() for p in model.module.parameters()])  # by value
        dist.barrier()  # both ranks done before either tears the group down
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("memory", ["autograd", "reversible"])
def test_distributed_data_parallel_matches_one_process(memory):
    torch.manual_seed(1)
    inputs = torch.randn(2, 4, 8)
    # one process on the whole batch; DDP averages the two halves' gradients
    single = _block(memory)
    single(inputs.reshape(8, 8)).square().sum().backward()
    expected = [p.grad / 2 for p in single.parameters()]
    context = mp.get_context("spawn")
    queue = context.Queue()
    mp.spawn(_ddp_worker, args=(2, _free_port(), memory, inputs, queue), nprocs=2, join=True)
    got = queue.get(timeout=60)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(torch.from_numpy(a), b, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("memory", ["autograd", "checkpoint", "reversible"])
def test_cuda_matches_cpu(memory):
    block = _block(memory, depth=16).double()
    x = torch.randn(5, 8, dtype=torch.float64)
    y_cpu, g_cpu = _grads(block, x)
    block = block.cuda()
    y, g = _grads(block, x.cuda())
    assert torch.allclose(y.cpu(), y_cpu, atol=1e-10)
    for a, b in zip(g, g_cpu, strict=True):
        assert torch.allclose(a.cpu(), b, atol=1e-10)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_reversible_memory_is_flat_in_depth():
    def peak(depth):
        torch.cuda.reset_peak_memory_stats()
        block = _block("reversible", depth=depth, width=256).cuda()
        x = torch.randn(512, 256, device="cuda")
        base = torch.cuda.memory_allocated()
        block(x).square().sum().backward()
        return torch.cuda.max_memory_allocated() - base

    assert peak(64) < 1.5 * peak(8)
