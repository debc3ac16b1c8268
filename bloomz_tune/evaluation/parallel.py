"""Data-parallel scoring: requests split over the processes of a launch, scores gathered back in request order.

    torchrun --nproc_per_node 8 -m bloomz_tune.cli eval MODEL --tasks all --output DIR
    accelerate launch -m bloomz_tune.cli eval MODEL --tasks all --output DIR

Every process holds the whole model and scores the distinct prompts whose index modulo the number of processes is
its rank (prompts sorted longest first, so each process gets a like share of long and short ones); the scores are
gathered (``torch.distributed.all_gather_object``) so every process holds them all, in the order of the requests,
and rank 0 writes the results. A request's score does not depend on which process scored it beyond float rounding
of the batch it was padded in.

At the end of training the same split uses the training processes: a DDP-wrapped model is unwrapped (each
process has the whole weights; scoring needs no gradient synchronisation). Weights sharded over the processes
(FSDP, DeepSpeed ZeRO-3) make every forward a collective that all processes must join, so there each process
scores every request, as a single process would (``processes`` is then 1 in results.json).
"""

from __future__ import annotations

import os

import torch


def distributed() -> tuple[int, int]:
    """(rank, number of processes) of the initialised process group; (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def start_processes(device: str | None) -> str | None:
    """Under a launcher (``WORLD_SIZE`` > 1), join its process group (accelerate's ``PartialState``: gloo on
    CPU, nccl on GPUs) and return this process's device unless ``device`` names one; else ``device``."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    from accelerate import PartialState

    state = PartialState()
    return device or str(state.device)


def weights_sharded(model) -> bool:
    """Whether the processes each hold a shard of the weights (FSDP, DeepSpeed ZeRO-3)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # older torch
        FSDPModule = ()
    if FSDPModule and any(isinstance(m, FSDPModule) for m in model.modules()):
        return True
    if type(model).__name__ == "FullyShardedDataParallel":
        return True
    return any(hasattr(p, "ds_id") for p in model.parameters())  # DeepSpeed ZeRO-3 partitions parameters


def scoring_plan(model) -> tuple[object, int, int]:
    """(the model to score with, rank, processes): DDP unwrapped; processes 1 when the weights are sharded."""
    rank, world = distributed()
    if world > 1 and weights_sharded(model):
        return model, 0, 1
    while isinstance(model, torch.nn.parallel.DistributedDataParallel) or type(model).__name__ == "DeepSpeedEngine":
        model = model.module
    return model, rank, world


def my_share(groups: list, rank: int, world: int) -> list:
    """This process's items of ``groups`` (every ``world``-th, from ``rank``)."""
    return groups[rank::world]


def gather_scores(mine: dict[int, float], world: int) -> dict[int, float]:
    """{request index: score} from every process, merged (every process gets all of them)."""
    if world == 1:
        return mine
    parts: list = [None] * world
    torch.distributed.all_gather_object(parts, mine)
    merged: dict[int, float] = {}
    for part in parts:
        merged.update(part)
    return merged
