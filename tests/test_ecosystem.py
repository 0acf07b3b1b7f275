"""The compiled block in PyTorch's ecosystem: torch.compile, DistributedDataParallel, CUDA."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
import pickle
import shutil
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import odenet


def _block(memory, seed=0, depth=4, width=8):
    torch.manual_seed(seed)
    if memory == "implicit":  # backward Euler: a solve per layer, implicit differentiation
        return odenet.compile(
            odenet.load("backward_euler"),
            {"f": lambda i: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))},
            depth,
            solver=odenet.Solver(tol=1e-7),
        )
    return odenet.compile(
        odenet.load("leapfrog" if memory == "adjoint" else "momentum"),  # the adjoint needs a step h
        {"f": lambda i: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))},
        depth,
        memory,
    )


def _grads(block, x):
    y = block(x)
    return y.detach(), torch.autograd.grad(y.square().sum(), list(block.parameters()))


MEMORY_MODES = list(odenet.MEMORY_MODES)  # every mode, as it is added


def _leapfrog(memory, seed=0, depth=4, width=8):
    """A block with dropout and BatchNorm inside its functions (random and stateful layers)."""
    torch.manual_seed(seed)
    return odenet.compile(
        odenet.load("leapfrog"),
        {
            "f": lambda i: nn.Sequential(
                nn.Linear(width, width),
                nn.BatchNorm1d(width),
                nn.Dropout(0.2),
                nn.Tanh(),
                nn.Linear(width, width),
            )
        },
        depth,
        memory,
    )


def _seeded_grads(block, x, seed=1):
    torch.manual_seed(seed)
    y = block(x)
    return y.detach(), torch.autograd.grad(y.square().sum(), list(block.parameters()))


def _compiled_matches_eager(memory, backend):
    import torch._dynamo

    torch._dynamo.reset()
    eager, block = _leapfrog("autograd"), _leapfrog(memory)  # the reference: plain autograd, eager
    x = torch.randn(5, 8)
    y_ref, g_ref = _seeded_grads(eager, x)
    compiled = torch.compile(block, backend=backend)
    y, g = _seeded_grads(compiled, x)
    assert torch.allclose(y, y_ref, atol=1e-5)
    for a, b in zip(g, g_ref, strict=True):
        assert torch.allclose(a, b, atol=1e-4)
    for a, b in zip(block.buffers(), eager.buffers(), strict=True):  # BatchNorm updated once, as eager
        assert torch.allclose(a, b, atol=1e-6)
    with torch._dynamo.config.patch(error_on_recompile=True):  # a new input of the same shape
        compiled(torch.randn(5, 8)).sum().backward()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own internals, not odenet's
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("memory", MEMORY_MODES)
def test_torch_compile_gives_the_same_forward_and_gradients(memory):
    _compiled_matches_eager(memory, "aot_eager")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="needs a C compiler")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("memory", MEMORY_MODES)
def test_torch_compile_with_inductor(memory):
    import torch._inductor.config

    with torch._inductor.config.patch(fallback_random=True):  # eager's random numbers, to compare
        _compiled_matches_eager(memory, "inductor")


@pytest.mark.parametrize("memory", MEMORY_MODES)
def test_pickling_and_deepcopy_keep_outputs_and_gradients(memory, tmp_path):
    block = _leapfrog(memory)
    x = torch.randn(5, 8)
    block(x).sum().backward()  # a block that has trained a step (drift control has measured)
    block.eval()  # dropout off and BatchNorm on its running statistics: a deterministic function
    path = tmp_path / "block.pt"
    torch.save(block, path)
    loaded = torch.load(path, weights_only=False)
    copied = copy.deepcopy(block)
    y_ref, g_ref = _seeded_grads(block, x)
    for other in (loaded, copied):
        assert other.forward_code.source == block.forward_code.source
        y, g = _seeded_grads(other, x)
        assert torch.equal(y, y_ref)
        for a, b in zip(g, g_ref, strict=True):
            assert torch.equal(a, b)
    assert pickle.loads(pickle.dumps(block)).scheme == block.scheme


def test_models_pickle():
    from odenet.models import ModelConfig, build_model

    config = ModelConfig(
        odenet.format_scheme(odenet.load("momentum")),
        (4, 6, 6),
        3,
        layout="conv",
        family="bn",
        width=4,
        depth=3,
        stages=2,
        memory="reversible",
    )
    model = build_model(config).eval()
    x = torch.randn(2, 4, 6, 6)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer, weights_only=False)(x), model(x))
    assert torch.equal(copy.deepcopy(model)(x), model(x))


@contextlib.contextmanager
def _host_reads():
    """Counts the calls that copy a tensor's values to the host (a device synchronisation on a GPU),
    in every thread (the backward pass may run in autograd's own)."""
    reads: list[str] = []
    names = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__")
    originals = {name: getattr(torch.Tensor, name) for name in names}

    def counting(name, original):
        def read(self, *args, **kwargs):
            reads.append(name)
            return original(self, *args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(name, original))
    try:
        yield reads
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


@pytest.mark.parametrize(
    ("memory", "guard", "reads"),
    [
        ("autograd", None, 0),
        ("checkpoint", None, 0),
        ("reversible", "raise", 2),
        ("adjoint", None, 1),
        ("reversible", "adaptive", "groups"),
        ("fixed_point", None, 3),  # the rounded parameters, the range (forward), the rebuilt input
    ],
)
def test_host_reads_per_training_step(memory, guard, reads):
    """Checks accumulate on the device and are read once per backward pass (with the adaptive guard
    once per release group of at least 16 layers), never per layer; momentum's learnable gamma is
    read once per forward pass, to plan the copies. The count does not grow with depth but by
    groups."""
    for depth in (4, 64):
        torch.manual_seed(0)
        block = odenet.compile(
            odenet.load("momentum" if memory != "adjoint" else "leapfrog"),
            {"f": lambda i: nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8))},
            depth,
            memory,
            **({"guard": guard} if guard else {}),
        )
        optimizer = torch.optim.SGD(block.parameters(), lr=1e-4)
        x = torch.randn(64, 8)  # a state that outweighs a layer's weights: groups of 16 layers
        for _ in range(2):
            with _host_reads() as counted:
                block(x).square().mean().backward()
            expected = 1 + math.ceil(depth / 16) if reads == "groups" else reads
            assert 1 < len(counted) <= expected if reads == "groups" else len(counted) == expected, counted
            assert set(counted) <= {"tolist"}
            optimizer.step()
            optimizer.zero_grad()


def _functions_in_graph(output: torch.Tensor, name: str) -> int:
    seen, stack, count = set(), [output.grad_fn], 0
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        count += type(node).__name__ == name
        stack.extend(fn for fn, _ in node.next_functions)
    return count


@pytest.mark.parametrize(
    ("memory", "guard"),
    [
        ("reversible", "adaptive"),
        pytest.param("reversible", "raise", marks=pytest.mark.slow),
        pytest.param("fixed_point", None, marks=pytest.mark.slow),
    ],
)
def test_held_gradients_shrink_when_weights_outweigh_the_state(memory, guard):
    """An autograd.Function returns its parameters' gradients when its backward ends, so a group of
    layers holds them all at once: 16 layers of 8 MiB weights on a 1 MiB state held 128 MiB, more
    than autograd's activations (measured). Groups shrink to keep the held gradients within 16
    states or 16 MiB: 2 MiB of weights per layer on a tiny state, 7 layers per Function; on a
    state as large as the weights, 16. Gradients stay autograd's."""
    width, depth = 512, 14
    kwargs = {"guard": guard} if guard else {}
    make = lambda i: nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, width))  # noqa: E731
    for batch, expected in ((2, 2), (520, 1)):
        torch.manual_seed(0)
        gamma = {"gamma": 0.875}  # a value fixed point holds exactly
        reference = odenet.compile(odenet.load("momentum"), {"f": make}, depth, "autograd", gamma)
        block = odenet.compile(odenet.load("momentum"), {"f": make}, depth, memory, gamma, **kwargs)
        block.load_state_dict(reference.state_dict())
        x = torch.randn(batch, width)
        y = block(x)
        assert _functions_in_graph(y, "_GroupBackward") == expected
        g = torch.autograd.grad(y.square().sum(), list(block.functions.parameters()))
        g_ref = torch.autograd.grad(reference(x).square().sum(), list(reference.functions.parameters()))
        scale = torch.cat([t.reshape(-1) for t in g_ref]).norm()
        assert max((a - b).norm() / scale for a, b in zip(g, g_ref, strict=True)) < 1e-5  # float32


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
        # DDP's reducer holds the process group: freed after destroy_process_group (this frame's end),
        # it would be the group's last owner and its destructor would join gloo's thread while
        # holding the GIL that thread waits for (a hang seen in CI). Free it while the group is
        # registered, as odenet.training does (the model goes with train()'s frame, before the group).
        del model
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize(
    "memory",  # in the slow set (two processes each): test_distributed runs torchrun
    [pytest.param(m, marks=pytest.mark.slow) for m in MEMORY_MODES]
    + [pytest.param("implicit", marks=pytest.mark.slow)],
)
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
    close = 1e-5 if memory == "implicit" else 1e-6  # the halves' solves stop at other iterates (tol 1e-7)
    for a, b in zip(got, expected, strict=True):
        assert torch.allclose(torch.from_numpy(a), b, atol=close)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("memory", MEMORY_MODES)
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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("memory", MEMORY_MODES)
def test_cuda_training_step_has_no_hidden_synchronisation(memory):
    """No host-device synchronisation per layer: under sync debug mode "error", a training step runs
    (the one read per backward of the reversible guard is made with the mode relaxed, on purpose)."""
    block = _leapfrog(memory, depth=16).cuda()
    optimizer = torch.optim.SGD(block.parameters(), lr=0.01)
    x = torch.randn(5, 8, device="cuda")
    block(x).sum().backward()  # the first forward plans from the parameters (one read)
    optimizer.step()
    torch.cuda.set_sync_debug_mode("error")
    try:
        block(x).square().sum().backward()
        optimizer.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_dropout_replays_the_device_generator():
    block = _leapfrog("reversible", depth=8).double().cuda()
    reference = _leapfrog("autograd", depth=8).double().cuda()
    x = torch.randn(5, 8, dtype=torch.float64, device="cuda")
    y_ref, g_ref = _seeded_grads(reference, x)
    y, g = _seeded_grads(block, x)
    assert torch.equal(y, y_ref)
    for a, b in zip(g, g_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_no_pass_outlives_its_step():
    """The pass object of a reversible forward (copies, replay records) is freed with its graph:
    copies are kept detached, with no cycle through a group's grad_fn."""
    import gc

    from odenet.nn.copies import CopiesPass as _Pass

    torch.manual_seed(0)
    block = odenet.compile(
        odenet.load("leapfrog"), {"f": lambda i: nn.Sequential(nn.Linear(8, 8), nn.Tanh())}, 96, "reversible"
    )
    stem = nn.Linear(8, 8)
    for _ in range(3):
        block(stem(torch.randn(4, 8))).sum().backward()
    block(stem(torch.randn(4, 8)))  # a forward without backward: its graph is simply dropped
    gc.collect()
    # this block's passes (another test's may still be alive, held by a traceback)
    assert sum(type(o) is _Pass and o.layers is block for o in gc.get_objects()) == 0


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_linear_combination_is_the_same_sum_compiled(backend):
    """The generated steps' helper, alone: 1*1 + 0.1*10 is 2, compiled or not (torch 2.13's dynamo
    resumed it after a graph break with a stale local and returned 3)."""
    import torch._dynamo

    from odenet.nn.generated import linear_combination

    torch._dynamo.reset()
    terms = (torch.ones(3), 1, torch.full((3,), 10.0), 0.1)
    compiled = torch.compile(linear_combination, backend=backend)
    assert torch.equal(linear_combination(*terms), torch.full((3,), 2.0))
    assert torch.equal(compiled(*terms), torch.full((3,), 2.0))
    three = (torch.ones(3), 2, torch.full((3,), 10.0), 0.5, torch.ones(3), -1)
    assert torch.equal(compiled(*three), linear_combination(*three))
    assert torch.equal(linear_combination(*three), torch.full((3,), 6.0))
