"""Packed rank scoring: each prompt once with its answer choices as branches, many prompts to a row.

A distinct context (the prompt's token ids) and the continuations asked of it form one group, laid out as

    context tokens | choice 1 minus its last token | choice 2 minus its last token | ...

and packed with other groups into rows of ``PACK_WIDTH`` tokens (wider when one group is longer), one segment per
group. The model runs with ``segment_ids`` (one per group) and ``branch_ids`` (0 for the context, j for the
j-th continuation): every continuation token sees its own prompt and the tokens of its own choice before it, at
the ALiBi distances it has when the request is a row of its own, and nothing of the other choices or the other
groups (model/alibi.py). Logits are computed only where a continuation token is predicted: the context's last
token predicts every choice's first token, choice token t its token t + 1.

Against ``_score_shared`` (each prompt once, its choices on a copy of its key/value cache): the same work on
the prompt, no per-prompt padding, no cache copies, and one forward for many prompts; on a GPU, where a small
model's forward is bound by its per-call overheads, that is what counts. It needs segment-isolated attention,
so it runs on BLOOM only (``can_pack``): a model with transformers' own attention gets our "sdpa" for the time of
the scoring and its own attention back after.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from bloomz_tune.model.bloom import attention_of, causal_lm, patch_bloom
from bloomz_tune.tokens.packing import plan_rows

PACK_WIDTH = 256  # tokens a row holds, unless one group is longer; ``batch_size`` such rows run in one forward


def wrapped(model) -> bool:
    """Whether ``model`` runs through a wrapper's forward (DDP, torch.compile, FSDP, DeepSpeed): then its modules
    are not ours to change and its forward must be the one called."""
    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    if hasattr(lm, "module") or hasattr(lm, "_orig_mod"):
        return True
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # older torch
        return False
    return any(isinstance(m, FSDPModule) for m in lm.modules())


def can_pack(model) -> bool:
    """Packed scoring needs a BLOOM causal LM held on one device (accelerate's hooks move tensors, not the mask
    our backbone hands its layers) whose attention is our "sdpa" or may be switched to it (not wrapped)."""
    from transformers.models.bloom.modeling_bloom import BloomForCausalLM

    lm = causal_lm(model)
    if not isinstance(lm, BloomForCausalLM) or len(set(getattr(lm, "hf_device_map", {}).values())) > 1:
        return False
    return attention_of(model) == "sdpa" or not wrapped(model)


@contextmanager
def segment_attention(model):
    """The model with our "sdpa" attention for the time of the block, its own attention restored after:
    transformers' (the same numbers, tests/test_bloom_contract.py) or flex (whose block mask would be built and
    compiled again for every row width)."""
    before = attention_of(model)
    if before != "sdpa":
        patch_bloom(model, "sdpa")
    try:
        yield model
    finally:
        if before != "sdpa":
            patch_bloom(model, before)


def group_requests(encoded: list[tuple[list[int], list[int]]]) -> list[tuple[list[int], list[int]]]:
    """[(context ids, indices of the requests on it)], in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for i, (ctx, _) in enumerate(encoded):
        groups.setdefault(tuple(ctx), []).append(i)
    return [(list(ctx), members) for ctx, members in groups.items()]


def group_length(encoded, ctx: list[int], members: list[int]) -> int:
    """Tokens a group takes in a row: its context and each continuation but its last token."""
    return len(ctx) + sum(len(encoded[i][1]) - 1 for i in members)


def plan_forwards(lengths: list[int], batch_size: int, width: int = PACK_WIDTH) -> list[list[list[int]]]:
    """The rows of group indices each forward runs. Groups of at most ``width`` tokens are packed best-fit into
    rows of ``width``, ``batch_size`` rows a forward; a longer group has a row of its own, such rows batched
    longest first in forwards of at most ``batch_size * width`` tokens. A forward's rows are as wide as its
    fullest row (rounded up to a multiple of 8, ``_layout``)."""
    short = [g for g in range(len(lengths)) if lengths[g] <= width]
    long = sorted((g for g in range(len(lengths)) if lengths[g] > width), key=lambda g: -lengths[g])
    forwards = []
    if short:
        rows = [[short[k] for k in row] for row in plan_rows([lengths[g] for g in short], width)]
        forwards += [rows[k:k + batch_size] for k in range(0, len(rows), batch_size)]
    start = 0
    while start < len(long):
        per_forward = max(1, batch_size * width // lengths[long[start]])
        forwards.append([[g] for g in long[start:start + per_forward]])
        start += per_forward
    return forwards


def _round8(n: int) -> int:
    return -(-n // 8) * 8  # CUDA's memory-efficient attention takes a bias whose width is a multiple of 8


def pick_logprobs(logits, targets, owner, n_rows, device) -> list[float]:
    """Sum log-softmax(logits)[i, targets[i]] into rows ``owner[i]`` (float64), on the logits' device."""
    device = logits.device
    logprobs = F.log_softmax(logits.float(), dim=-1)
    picked = logprobs[torch.arange(len(targets), device=device), torch.tensor(targets, device=device)]
    sums = torch.zeros(n_rows, dtype=torch.float64, device=device)
    sums.index_add_(0, torch.tensor(owner, device=device), picked.double())
    return sums.tolist()


def score_packed(model, encoded, batch_size: int, pad: int, bar, device, width: int | None = None) -> list[float]:
    """Sum of log p(continuation | context) for each request of ``encoded`` ((context ids, continuation ids)
    pairs), packed as the module docstring says; ``bar`` is advanced by the requests of each forward."""
    width = width or PACK_WIDTH
    groups = group_requests(encoded)
    lengths = [group_length(encoded, ctx, members) for ctx, members in groups]
    scores = [0.0] * len(encoded)
    with segment_attention(model):
        for rows in plan_forwards(lengths, batch_size, width):
            row_width = _round8(max(sum(lengths[g] for g in row) for row in rows))
            batch = _layout(encoded, groups, rows, row_width, pad)
            logits = model(input_ids=batch["input_ids"].to(device), segment_ids=batch["segment_ids"].to(device),
                           branch_ids=batch["branch_ids"].to(device),
                           logit_positions=batch["positions"].to(device)).logits
            owners = batch["owners"]
            local = sorted(set(owners))
            slot = {i: k for k, i in enumerate(local)}
            sums = pick_logprobs(logits, batch["targets"], [slot[i] for i in owners], len(local), device)
            for i, s in zip(local, sums):
                scores[i] = s
            bar.update(len(local))
    return scores


def _layout(encoded, groups, rows, width: int, pad: int) -> dict:
    """The tensors of one forward: ids, segment and branch numbers, and (row, position) -> target, owner."""
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    segment_ids = torch.zeros((len(rows), width), dtype=torch.long)
    branch_ids = torch.zeros((len(rows), width), dtype=torch.long)
    positions, targets, owners = [], [], []
    for r, row in enumerate(rows):
        at = 0
        for s, g in enumerate(row, start=1):
            ctx, members = groups[g]
            input_ids[r, at:at + len(ctx)] = torch.tensor(ctx)
            segment_ids[r, at:at + len(ctx)] = s
            last = at + len(ctx) - 1  # predicts every continuation's first token
            at += len(ctx)
            for b, i in enumerate(members, start=1):
                cont = encoded[i][1]
                positions.append((r, last))
                targets.append(cont[0])
                owners.append(i)
                if len(cont) > 1:
                    input_ids[r, at:at + len(cont) - 1] = torch.tensor(cont[:-1])
                    segment_ids[r, at:at + len(cont) - 1] = s
                    branch_ids[r, at:at + len(cont) - 1] = b
                    for t in range(1, len(cont)):
                        positions.append((r, at + t - 1))
                        targets.append(cont[t])
                        owners.append(i)
                    at += len(cont) - 1
    return {"input_ids": input_ids, "segment_ids": segment_ids, "branch_ids": branch_ids,
            "positions": torch.tensor(positions), "targets": targets, "owners": owners}
