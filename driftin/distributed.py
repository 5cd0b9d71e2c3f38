"""Tiny distributed layer: the training loop never branches on "am I distributed".

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; without them everything behaves as world size 1.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def init() -> torch.device:
    if "RANK" in os.environ and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equal-shaped tensors from all ranks along dim 0 (no gradient)."""
    if world() == 1:
        return t
    t = t.detach().contiguous()  # all_gather rejects non-contiguous views
    out = [torch.empty_like(t) for _ in range(world())]
    dist.all_gather(out, t)
    return torch.cat(out)


def all_reduce_mean(x: float, device) -> float:
    if world() == 1:
        return float(x)
    t = torch.tensor(float(x), device=device)
    dist.all_reduce(t)
    return t.item() / world()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def print0(*args, **kwargs) -> None:
    if is_main():
        print(*args, **kwargs, flush=True)


def all_reduce_max_(t: torch.Tensor) -> torch.Tensor:
    """In place: the elementwise maximum over ranks (a no-op on one process)."""
    if world() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t
