"""Mixture rows -> token ids with target-only labels -> batches.

Tokenization follows BLOOMZ (docs/bloomz.md §1.5, §3.1): ``inputs`` are tokenized
as they are, without special tokens; ``targets`` get a leading space (unless they already start with
whitespace) and an end-of-sequence token. Labels are the target ids; input positions get -100.

A sample longer than ``max_length`` is skipped (as BLOOMZ did) or, with ``overlong="truncate_left"``, its
inputs lose tokens from the left until it fits (the target is never cut; a target that alone does not fit is
skipped). Both are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.tokens.tokenizing import IGNORE_INDEX


def length_column(dataset, column: str = "length") -> np.ndarray:
    """A ``datasets.Dataset`` column as one numpy array, read through Arrow in one go (row selections applied)."""
    return np.asarray(dataset.select_columns([column]).with_format("arrow")[:].column(column).to_numpy())


def length_grouped_indices(lengths: np.ndarray, batch_size: int, generator=None) -> np.ndarray:
    """transformers' ``get_length_grouped_indices`` order, computed on arrays: a random permutation cut into
    mega-batches of ``min(n // (4 x batch_size), 50) x batch_size`` rows, each sorted longest first (stable), with the
    longest row of all moved to the front. torch draws the permutation, so the Trainer's seeding applies."""
    n = len(lengths)
    size = max(min(n // (batch_size * 4), 50), 1) * batch_size
    indices = torch.randperm(n, generator=generator).numpy()
    order = indices[np.lexsort((-lengths[indices], np.arange(n) // size))]
    starts = np.arange(0, n, size)
    longest = starts[int(np.argmax(lengths[order[starts]]))]
    order[[0, longest]] = order[[longest, 0]]
    return order


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Rows of similar length together (less padding), from the whole ``length`` column read at once.

    transformers' own sampler reads the lazy ``datasets`` column element by element, which on an xP3-sized mixture
    takes hours before the first step, again every epoch; this one gives the same order from a numpy array.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, generator=None):
        self.lengths, self.batch_size, self.generator = np.asarray(lengths), batch_size, generator

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        return iter(length_grouped_indices(self.lengths, self.batch_size, self.generator).tolist())


@dataclass
class PaddingCollator:
    """Rows -> a batch of ``input_ids``, ``attention_mask``, ``labels`` (and ``segment_ids`` when rows have them).

    Rows are right-padded to ``max_length`` when given (static shapes, e.g. for flex attention), else to the
    longest row; either width is rounded up to ``pad_to_multiple_of`` (8 by default, as transformers' collators
    are usually set: the (L, L) attention bias then needs no padded copy in CUDA's memory-efficient kernel, and
    tensor cores get aligned shapes). Padding has mask 0, label -100 and segment 0: no loss and no attention.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = 8
    max_length: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise BloomzTuneError("the collator got an empty list of rows")
        longest = max(len(f["input_ids"]) for f in features)
        width = longest
        if self.max_length is not None:
            if longest > self.max_length:
                raise BloomzTuneError(f"a row has {longest} tokens, more than max_length={self.max_length}")
            width = self.max_length
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        fill = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX, "segment_ids": 0}
        keys = [k for k in fill if k in features[0]]
        batch = {k: torch.full((len(features), width), fill[k], dtype=torch.long) for k in keys}
        batch["attention_mask"] = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            for k in keys:
                batch[k][i, :n] = torch.as_tensor(f[k])
            batch["attention_mask"][i, :n] = 1
        return batch
