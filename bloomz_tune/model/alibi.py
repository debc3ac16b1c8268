"""Segment-isolated ALiBi: the one mask every layer of the patched BLOOM uses in a forward (see bloom.py).

Key k is visible from query q when both lie in the same segment and k ≤ q. Segments come from ``segment_ids``
(1..k per packed sample, 0 for padding) or, for an ordinary padded batch, from ``attention_mask`` (one segment
of real tokens). ``pos`` counts real tokens along the row, the cached tokens included when a KV cache is
continued (the same cumulative positions stock BLOOM builds its ALiBi from), so within a packed sample
``pos_k − pos_q`` is the sample's own relative distance. ``"sdpa"`` gets an additive (batch, heads, queries, keys)
bias, ``"flex"`` a block mask and an ALiBi ``score_mod``.

Branches (``branch_ids``, with ``segment_ids``; rank scoring packs a prompt and its answer choices this way,
evaluation/packed.py). Within a segment, tokens of branch 0 are the trunk and tokens of branch b > 0 one
continuation of it: a key is visible from a query of the same segment when k ≤ q and the key is in the trunk or
in the query's own branch, so each choice sees the prompt and itself, never the other choices. A branch token's
position continues from the trunk token before it (``pos`` counts the trunk, then the branch's own tokens), so
every choice gets the ALiBi distances it has when it follows the prompt alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.seam import alibi_slopes


def segments_and_positions(attention_mask: torch.Tensor | None, segment_ids: torch.Tensor | None,
                           shape: tuple[int, int], device,
                           branch_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(segments, positions), both ``shape`` = (batch, keys): segment number per token (0 = padding) and ALiBi
    positions. ``keys`` counts the cached tokens too when a KV cache is continued (then ``segment_ids`` is None).
    With ``branch_ids`` the positions are those of each branch following its trunk (``branch_positions``)."""
    if segment_ids is not None:
        if segment_ids.shape != torch.Size(shape):
            raise BloomzTuneError(f"segment_ids has shape {tuple(segment_ids.shape)}, input_ids {tuple(shape)}")
        segments = segment_ids.to(device=device, dtype=torch.long)
    elif attention_mask is not None:
        if attention_mask.dim() != 2:
            raise BloomzTuneError(f"packed attention takes a 2D attention_mask, got {attention_mask.dim()}D")
        if attention_mask.shape != torch.Size(shape):
            raise BloomzTuneError(f"attention_mask has shape {tuple(attention_mask.shape)}; expected {shape} "
                                  "(batch, cached + new tokens)")
        segments = (attention_mask.to(device) > 0).long()
    else:
        segments = torch.ones(shape, dtype=torch.long, device=device)
    valid = (segments > 0).long()
    if branch_ids is not None:
        return segments, branch_positions(segments, _checked_branches(branch_ids, segment_ids, shape, device))
    positions = valid.cumsum(-1) - 1
    return segments, positions


def _checked_branches(branch_ids, segment_ids, shape, device) -> torch.Tensor:
    if segment_ids is None:
        raise BloomzTuneError("branch_ids need segment_ids: branches are parts of packed segments")
    if branch_ids.shape != torch.Size(shape):
        raise BloomzTuneError(f"branch_ids has shape {tuple(branch_ids.shape)}, input_ids {tuple(shape)}")
    return branch_ids.to(device=device, dtype=torch.long)


def branch_positions(segments: torch.Tensor, branches: torch.Tensor) -> torch.Tensor:
    """ALiBi positions when branches share a trunk: a trunk token counts the trunk tokens up to it, a branch token
    the trunk tokens before it plus its own place in its branch (a branch is one contiguous run of tokens within
    a segment). Only differences within a segment matter, so the count may run on across segments."""
    valid = segments > 0
    trunk = ((branches == 0) & (valid > 0)).long()
    trunk_count = trunk.cumsum(-1)
    in_branch = ((branches > 0) & (valid > 0)).long()
    branch_count = in_branch.cumsum(-1)
    # where each run of one branch starts: the branch count just before it, carried along the run
    starts = torch.ones_like(branches, dtype=torch.bool)
    starts[:, 1:] = (branches[:, 1:] != branches[:, :-1]) | (segments[:, 1:] != segments[:, :-1])
    before = torch.where(starts, branch_count - in_branch, torch.zeros_like(branch_count))
    before = torch.cummax(before, dim=-1).values
    return trunk_count - 1 + (branch_count - before) * in_branch


def visible(segments: torch.Tensor, queries: int | None = None, branches: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, queries, keys) bool: query q may see key k. The queries are the last ``queries`` of the keys (all
    of them by default; fewer after a KV cache). Padding queries see only themselves, so no row is empty.
    ``branches``: keys of another branch than the query's are hidden (the trunk, branch 0, is seen by all)."""
    keys = segments.shape[-1]
    offset = keys - (keys if queries is None else queries)
    k_idx = torch.arange(keys, device=segments.device)
    q_idx = k_idx[offset:]
    causal = k_idx[None, :] <= q_idx[:, None]
    same = segments[:, offset:, None] == segments[:, None, :]
    real_key = (segments > 0)[:, None, :]
    diagonal = k_idx[None, :] == q_idx[:, None]
    seen = same & causal & real_key
    if branches is not None:
        seen &= (branches[:, None, :] == 0) | (branches[:, offset:, None] == branches[:, None, :])
    return seen | diagonal


def sdpa_bias(segments: torch.Tensor, positions: torch.Tensor, slopes: torch.Tensor, dtype,
              queries: int | None = None, branches: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, heads, queries, keys) additive bias: ALiBi where visible, −inf elsewhere (``queries``: see
    ``visible``).

    Built head by head in fp32 and stored in ``dtype``, so the only full-size tensor is the result. Pass the dtype
    attention computes in (``compute_dtype``): sdpa needs the bias in the query's dtype, and a bias in another
    dtype is cast at every layer's call, each copy kept for backward.
    """
    offset = positions.shape[-1] - (positions.shape[-1] if queries is None else queries)
    rel = (positions[:, None, :] - positions[:, offset:, None]).to(torch.float32)  # pos_k - pos_q
    hidden = ~visible(segments, queries, branches)
    slopes = slopes.to(rel.device).tolist()
    bias = torch.empty((rel.shape[0], len(slopes), *rel.shape[1:]), dtype=dtype, device=rel.device)
    for h, slope in enumerate(slopes):
        bias[:, h] = (rel * slope).masked_fill_(hidden, float("-inf"))
    return bias


@dataclass
class PackedMask:
    """What the backbone hands every layer in place of the stock 4D mask: built once per forward."""

    attention: str  # "sdpa" or "flex"
    bias: torch.Tensor | None = None  # sdpa: (batch, heads, L, L)
    block_mask: object = None  # flex: BlockMask
    score_mod: object = None  # flex: ALiBi score_mod


_FLEX = {}


def compiled_flex():
    """flex_attention and create_block_mask, compiled once per process (flex attention needs torch.compile)."""
    if not _FLEX:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        _FLEX["attention"] = torch.compile(flex_attention)
        _FLEX["block_mask"] = create_block_mask
    return _FLEX["attention"], _FLEX["block_mask"]


def flex_mask(segments: torch.Tensor, positions: torch.Tensor, slopes: torch.Tensor,
              branches: torch.Tensor | None = None) -> PackedMask:
    _, create_block_mask = compiled_flex()
    batch, length = segments.shape
    slopes = slopes.to(segments.device)
    positions = positions.to(torch.int32)

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (positions[b, kv_idx] - positions[b, q_idx]).to(score.dtype)

    def mask_mod(b, h, q_idx, kv_idx):
        same = segments[b, q_idx] == segments[b, kv_idx]
        return (same & (kv_idx <= q_idx) & (segments[b, kv_idx] > 0)) | (q_idx == kv_idx)

    def branch_mask_mod(b, h, q_idx, kv_idx):
        branch = (branches[b, kv_idx] == 0) | (branches[b, kv_idx] == branches[b, q_idx])
        return mask_mod(b, h, q_idx, kv_idx) & (branch | (q_idx == kv_idx))

    block_mask = create_block_mask(mask_mod if branches is None else branch_mask_mod, batch, None, length, length,
                                   device=segments.device)
    return PackedMask("flex", block_mask=block_mask, score_mod=score_mod)


def compute_dtype(dtype: torch.dtype, device) -> torch.dtype:
    """The dtype attention runs in for activations of ``dtype`` on ``device``: autocast's when it is on."""
    device_type = torch.device(device).type
    if dtype.is_floating_point and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


def build_packed_mask(attention: str, attention_mask, segment_ids, shape, num_heads: int, dtype, device,
                      past: int = 0, branch_ids: torch.Tensor | None = None) -> PackedMask:
    """The mask for one forward, every layer's: the sdpa bias is built in ``compute_dtype(dtype, device)``, so
    autocast never casts it (one copy per layer, each kept for backward) and all layers share one tensor.
    ``past``: tokens already in the KV cache (the queries are the last ``shape[1]`` of ``past + shape[1]`` keys).
    ``branch_ids``: see the module docstring (with ``segment_ids``, no cache)."""
    batch, length = shape
    segments, positions = segments_and_positions(attention_mask, segment_ids, (batch, past + length), device,
                                                 branch_ids)
    branches = None if branch_ids is None else branch_ids.to(device=device, dtype=torch.long)
    slopes = alibi_slopes(num_heads, device)
    if attention == "flex":
        return flex_mask(segments, positions, slopes, branches)
    return PackedMask("sdpa", bias=sdpa_bias(segments, positions, slopes, compute_dtype(dtype, device), length,
                                             branches))
