"""BLOOMZ's training loss: cross-entropy on target tokens only, normalised per sample.

``--norm-target-loss`` in Megatron-DeepSpeed's finetune_t0.py (the BLOOMZ trainer): each sample's mean
target-token loss, averaged over the samples of the batch. A plain mean over all target tokens
(``token_mean``) lets long targets dominate; BLOOMZ's choice (``sample_mean``) is the default here.

A "sample" is one (row, segment) pair: a row of a padded batch, or one packed sample inside a packed row
(``segment_ids``). Labels follow the transformers convention: aligned with ``input_ids``, -100 where no loss,
shifted by one inside the loss (position t predicts label t+1).
"""

from __future__ import annotations

import torch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.recipe import LOSS_TYPES
from bloomz_tune.tokens.tokenizing import IGNORE_INDEX


def target_mask(labels: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, L-1) bool: position t predicts a target, i.e. label t+1 is not IGNORE_INDEX and lies in t's sample.

    The one rule for where a loss is taken, used by the loss, the throughput count and bloom.py's full-logits
    loss: with ``segment_ids``, the last token of a packed sample never predicts the next sample's first.
    """
    wanted = labels[:, 1:] != IGNORE_INDEX
    if segment_ids is not None:
        wanted &= segment_ids[:, 1:] == segment_ids[:, :-1]
    return wanted


def select_targets(labels: torch.Tensor, segment_ids: torch.Tensor | None = None):
    """Where the loss is taken (``target_mask``), as indices.

    Returns ``positions`` (N, 2) of (row, position) whose logits predict a target token, ``target_ids`` (N,)
    and ``sample_ids`` (N,): a dense index of the sample each target belongs to (0..S-1).
    """
    shifted = labels[:, 1:]
    rows, cols = target_mask(labels, segment_ids).nonzero(as_tuple=True)
    target_ids = shifted[rows, cols]
    if segment_ids is None:
        keys = rows
    else:
        seg = segment_ids[:, 1:][rows, cols].long()
        keys = rows * (int(segment_ids.max()) + 1) + seg
    _, sample_ids = torch.unique(keys, return_inverse=True)
    return torch.stack([rows, cols], dim=1), target_ids, sample_ids


def count_items(labels: torch.Tensor, segment_ids: torch.Tensor | None, loss_type: str) -> int:
    """How many items ``loss_type`` averages over in this batch: samples with a target, or target tokens."""
    _, target_ids, sample_ids = select_targets(labels, segment_ids)
    if loss_type == "token_mean":
        return int(target_ids.numel())
    return int(sample_ids.max()) + 1 if sample_ids.numel() else 0


def reduce_token_losses(token_losses: torch.Tensor, sample_ids: torch.Tensor, loss_type: str):
    """Sum of per-item losses and the item count: divide one by the other (over the global batch) for the mean."""
    if loss_type == "token_mean":
        return token_losses.sum(), token_losses.numel()
    if loss_type != "sample_mean":
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    num_samples = int(sample_ids.max()) + 1 if sample_ids.numel() else 0
    sums = torch.zeros(num_samples, dtype=token_losses.dtype, device=token_losses.device)
    sums.index_add_(0, sample_ids, token_losses)
    counts = torch.bincount(sample_ids, minlength=num_samples).to(token_losses.dtype)
    return (sums / counts).sum(), num_samples


def batch_loss_sum(model, batch: dict, loss_type: str = "sample_mean", chunk: int | None = None):
    """Forward ``batch`` computing logits at target positions only; return (loss sum, item count, #targets).

    ``model`` must have had ``bloom.patch_bloom`` or ``bloom.enable_selected_logits`` applied. ``chunk``: the
    head and cross-entropy run in checkpointed chunks of this many target positions when there are more
    (``bloom.selected_token_losses``; null: in one piece).
    """
    labels = batch["labels"]
    segment_ids = batch.get("segment_ids")
    positions, target_ids, sample_ids = select_targets(labels, segment_ids)
    inputs = {k: v for k, v in batch.items() if k not in ("labels",)}
    token_losses = model(**inputs, logit_positions=positions, target_ids=target_ids, loss_chunk_size=chunk).loss
    if token_losses is None or token_losses.dim() != 1:  # a forward without our keywords ignored them
        raise BloomzTuneError("this model's forward has no logit_positions keyword (transformers' BLOOM as loaded, "
                              "which would also let packed samples see each other): call bloom.patch_bloom(model) "
                              "first")
    loss_sum, items = reduce_token_losses(token_losses, sample_ids, loss_type)
    return loss_sum, items, target_ids.numel()
