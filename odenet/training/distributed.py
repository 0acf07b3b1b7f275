"""Training with several processes: ``torchrun --nproc-per-node N -m odenet train ...``.

torchrun sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; :func:`process_group` then joins the
group (gloo on CPU, nccl on CUDA) for the block it guards. Each process holds the whole model and
data; a :class:`~torch.utils.data.DistributedSampler` gives each rank every ``WORLD_SIZE``-th example
of the epoch's permutation, a rank's batch is ``batch_size / WORLD_SIZE`` of them, and
``DistributedDataParallel`` averages the gradients: the same steps as one process with the global
batch (exactly so without BatchNorm, whose statistics stay per process). Every rank evaluates the
whole train and test sets (the same numbers on each); rank 0 alone prints and writes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from odenet.errors import ConfigError

__all__ = ["Processes", "process_group", "processes"]


@dataclass(frozen=True)
class Processes:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def processes() -> Processes:
    """This process's rank and the number of processes (1 when not distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Processes(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return Processes()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextlib.contextmanager
def process_group(device: str) -> Iterator[Processes]:
    """Join the process group torchrun describes for the block (nothing when not under torchrun)."""
    if not launched_by_torchrun() or (
        torch.distributed.is_available() and torch.distributed.is_initialized()
    ):
        yield processes()
        return
    if not torch.distributed.is_available():
        raise ConfigError("torchrun: this torch build has no torch.distributed")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group("nccl" if cuda else "gloo")
    try:
        yield processes()
    finally:
        torch.distributed.destroy_process_group()
