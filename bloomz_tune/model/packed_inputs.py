"""Segment ids from the packed batches other libraries build: TRL's ``position_ids`` that restart at 0.

TRL's ``SFTTrainer(args=SFTConfig(packing=True))`` (and ``padding_free=True``) concatenates samples into one row
and marks where each starts only by its ``position_ids`` restarting at 0 (plus ``cu_seq_lens_q/k``,
``max_length_q/k`` and ``seq_idx`` for flash-attention kernels), with no ``attention_mask``. Stock BLOOM takes no
position ids, so the samples attend to each other. ``segments_from_positions`` turns the restarts into the
segment ids our attention keeps apart (1..k along a row, 0 where ``attention_mask`` is 0).

``packed_segment_ids`` is the rule the patched BLOOM forward applies to its keyword arguments:

- ``segment_ids`` given: used as they are (our own collators).
- ``position_ids`` restarting inside a row: segment ids derived from them.
- ``position_ids`` that never restart (one sample per row): nothing to separate; ordinary attention.
- a packed batch's markers (``PACKED_MARKERS``) without either: refused, since the samples could not be kept
  apart and running it would silently mix them.
"""

from __future__ import annotations

import torch

from bloomz_tune.errors import BloomzTuneError

# Keys TRL's DataCollatorForLanguageModeling (padding_free) adds to a packed batch beside position_ids.
PACKED_MARKERS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")


def segments_from_positions(position_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """(batch, L) segment ids: a new segment wherever a position id is 0 (and at the start of every row).

    Tokens where ``attention_mask`` is 0 get segment 0 (padding). A row padded with position 0 (TRL pads
    ``position_ids`` with 0) turns each padding token into a one-token segment of its own: it sees only itself
    and no real token sees it.
    """
    starts = position_ids == 0
    starts[:, 0] = True
    segments = starts.long().cumsum(-1)
    if attention_mask is not None:
        segments = segments * (attention_mask.to(segments.device) > 0).long()
    return segments


def restarts(position_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> bool:
    """Whether some row's position ids restart at 0 after a real token (more than one sample in a row).

    A left-padded row (generation numbers its padding 1 and its first real token 0) does not restart: the 0
    follows padding.
    """
    restart = position_ids[:, 1:] == 0
    if attention_mask is not None:
        real = attention_mask.to(position_ids.device) > 0
        restart &= real[:, :-1] & real[:, 1:]
    return bool(restart.any())


def packed_segment_ids(segment_ids, attention_mask, kwargs: dict):
    """The segment ids a BLOOM forward should use, taking ``position_ids`` and the packed markers out of ``kwargs``.

    Returns ``segment_ids`` when given, segment ids derived from restarting ``position_ids``, or None (an
    unpacked batch). Raises BloomzTuneError for a packed batch that carries neither.
    """
    position_ids = kwargs.pop("position_ids", None)
    markers = [k for k in PACKED_MARKERS if kwargs.pop(k, None) is not None]
    if segment_ids is not None:
        return segment_ids
    if position_ids is not None:
        if position_ids.dim() != 2:
            raise BloomzTuneError(f"position_ids must be (batch, length), got shape {tuple(position_ids.shape)}")
        return (segments_from_positions(position_ids, attention_mask) if restarts(position_ids, attention_mask)
                else None)
    if markers:
        raise BloomzTuneError(f"a packed batch ({', '.join(markers)}) with neither segment_ids nor position_ids: "
                              "its samples cannot be kept apart; keep position_ids in the batch (TRL's collator "
                              "adds them) or pass segment_ids")
    return None
