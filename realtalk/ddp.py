"""The process group of a multi-process training run (torchrun or torch.multiprocessing.spawn).

`torchrun --nproc_per_node N -m harness.cli train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; `from_env`
turns them into a World (backend nccl on CUDA, gloo on CPU). A single process is World(rank 0, size 1)
and every helper here is then a no-op, so the training loop has one code path.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def backend_for(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


def from_env(device: str) -> World:
    """World from torchrun's environment, initialising the process group when WORLD_SIZE > 1."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        dist.init_process_group(backend_for(device), rank=rank, world_size=size)
    if str(device).startswith("cuda"):
        torch.cuda.set_device(local)
    return World(rank, size, local)


def init(rank: int, size: int, init_method: str, device: str = "cpu") -> World:
    """Explicit initialisation (tests: torch.multiprocessing.spawn with a file:// rendezvous)."""
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend_for(device), init_method=init_method, rank=rank, world_size=size)
    return World(rank, size, rank)


def shutdown(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_scalars(world: World, values: dict[str, float]) -> dict[str, float]:
    """Mean over ranks of each logged value (float64, so the logged curve does not depend on the order)."""
    if not world.distributed:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / world.size for k, v in zip(keys, t.tolist())}


def sum_over_ranks(world: World | None, t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a gradient-free tensor (a ratio-of-sums loss's denominator, so that every rank
    divides by the GLOBAL batch's count, as one process would); the tensor itself in a single process."""
    if world is None or not world.distributed:
        return t
    t = t.detach().clone()
    dist.all_reduce(t)
    return t


def average_gradients(world: World, module: torch.nn.Module) -> None:
    """All-reduce-mean the gradients of a module not wrapped in DDP (the renderer's discriminator, which
    is also called with frozen parameters inside the generator loss, a pattern DDP's hooks do not allow)."""
    if not world.distributed:
        return
    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad.div_(world.size)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
