"""Pack tokenized samples into fixed-length rows with segment ids, as BLOOMZ trained (2048-token rows).

Each packed row holds whole samples one after another; ``segment_ids`` numbers them 1..k along the row (0 marks
padding), and the segment-isolated attention (bloom.py) keeps them from seeing each other. A sample is never
split across rows. Samples arrive already fitted to a row by tokenization (``data.fit_sample`` applies the
over-long rule: skip, as BLOOMZ did, or truncate the inputs from the left); a longer one is refused here.

Strategies (``strategy``):
- ``"greedy"``: samples in dataset order, a new row whenever the next one does not fit (BLOOMZ's packing,
  docs/bloomz.md §3.1).
- ``"best_fit"`` (default): samples in dataset order, each into the open row with the least room that still
  fits it, else a new row. Rows stay a random mix of samples, and on xP3-like lengths (a few hundred tokens per
  sample in 2048-token rows) it fills 99.4% of row tokens against 88.6% for greedy (see benchmarks/README.md,
  ``python benchmarks/train_throughput.py --packing-only``).

``pack_dataset`` works on a ``datasets.Dataset`` with ``input_ids`` and ``labels`` (data.tokenize_mixture's
output) and builds the packed rows with Arrow, without a Python loop over tokens.
"""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass

import numpy as np

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.recipe import PACKING_STRATEGIES
from bloomz_tune.tokens.batches import PaddingCollator
from bloomz_tune.tokens.tokenizing import IGNORE_INDEX, ragged_take

STRATEGIES = PACKING_STRATEGIES


@dataclass
class PackingStats:
    """What packing did: counts, tokens, and the share of row tokens that are real (``efficiency``)."""

    samples: int
    rows: int
    max_length: int
    real_tokens: int
    target_tokens: int

    @property
    def efficiency(self) -> float:
        return self.real_tokens / (self.rows * self.max_length) if self.rows else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "efficiency": self.efficiency}

    def __str__(self) -> str:
        return (f"packed {self.samples} samples into {self.rows} rows of {self.max_length} "
                f"({self.efficiency:.2%} of row tokens real)")


def plan_rows(lengths, max_length: int, strategy: str = "best_fit") -> list[list[int]]:
    """Assign sample indices to rows; every length must be 1..max_length. Rows keep their samples' order."""
    row_of = assign_rows(np.asarray(lengths, dtype=np.int64), max_length, strategy)
    order = np.argsort(row_of, kind="stable")
    return [chunk.tolist() for chunk in np.split(order, np.cumsum(np.bincount(row_of))[:-1])] if len(order) else []


def assign_rows(lengths: np.ndarray, max_length: int, strategy: str = "best_fit") -> np.ndarray:
    """The row of each sample (rows numbered as they open); ``plan_rows`` as one array over the length column."""
    if strategy not in STRATEGIES:
        raise BloomzTuneError(f"packing strategy must be one of {STRATEGIES}, got {strategy!r}")
    bad = np.flatnonzero((lengths < 1) | (lengths > max_length))
    if bad.size:
        raise BloomzTuneError(f"sample {int(bad[0])} has {int(lengths[bad[0]])} tokens; plan_rows takes lengths "
                              f"in 1..{max_length}")
    row_of = np.empty(len(lengths), dtype=np.int64)
    if strategy == "greedy":  # a row takes samples while they fit: one search over the running total per row
        total = np.cumsum(lengths)
        start, row = 0, 0
        while start < len(lengths):
            end = int(np.searchsorted(total, (total[start - 1] if start else 0) + max_length, side="right"))
            row_of[start:end] = row
            start, row = end, row + 1
        return row_of
    # best fit: each sample into the open row with the least room that still fits it; one sample depends on the
    # rows the ones before it left, so this is a loop (bisect over the sorted rooms, ~1 us a sample)
    by_room: dict[int, list[int]] = {}
    rooms: list[int] = []
    rows = 0
    for i, n in enumerate(lengths.tolist()):
        at = bisect.bisect_left(rooms, n)
        if at == len(rooms):
            row, room = rows, max_length
            rows += 1
        else:
            room = rooms[at]
            row = by_room[room].pop()
            if not by_room[room]:
                del by_room[room]
                rooms.pop(at)
        row_of[i] = row
        room -= n
        if room > 0:
            if room not in by_room:
                by_room[room] = []
                bisect.insort(rooms, room)
            by_room[room].append(row)
    return row_of


def pack_dataset(dataset, max_length: int = 2048, strategy: str = "best_fit", rows_per_chunk: int = 10_000):
    """Pack a tokenized dataset (``input_ids``, ``labels``) into rows; return (packed dataset, PackingStats).

    Packed rows have ``input_ids``, ``labels``, ``segment_ids`` (1..k) and ``length``, unpadded: the
    PackedCollator pads them. Other columns are dropped. Every sample must already fit a row
    (``data.tokenize_mixture`` with the same ``max_length`` sees to that). The columns are read once as flat
    arrays; each chunk of rows is one numpy gather per column (``tokenizing.ragged_take``).
    """
    import datasets
    import pyarrow as pa

    if max_length < 2:
        raise BloomzTuneError(f"max_length must be at least 2, got {max_length}")
    missing = {"input_ids", "labels"} - set(dataset.column_names)
    if missing:
        raise BloomzTuneError(f"pack_dataset needs tokenized rows; missing columns {sorted(missing)}")
    table = dataset.select_columns(["input_ids", "labels"]).with_format("arrow")[:]
    lengths = np.asarray(pa.compute.list_value_length(table.column("input_ids")).to_numpy(zero_copy_only=False),
                         dtype=np.int64)
    too_long = np.flatnonzero(lengths > max_length)
    if too_long.size:
        raise BloomzTuneError(f"{too_long.size} sample(s) are longer than a row of {max_length} tokens (the first: "
                              f"row {int(too_long[0])}, {int(lengths[too_long[0]])} tokens); tokenize with "
                              f"data.tokenize_mixture(max_length={max_length}) first")
    ids, labels = (pa.compute.list_flatten(table.column(c)).to_numpy() for c in ("input_ids", "labels"))
    starts = np.cumsum(lengths) - lengths
    usable = np.flatnonzero(lengths > 0)
    row_of = assign_rows(lengths[usable], max_length, strategy)
    order = usable[np.argsort(row_of, kind="stable")]  # samples row by row, each row's in dataset order
    row_sizes = np.bincount(row_of, minlength=int(row_of.max()) + 1 if len(row_of) else 0)
    row_ends = np.cumsum(row_sizes)

    chunks = []
    for first in range(0, len(row_sizes), rows_per_chunk):
        sizes = row_sizes[first:first + rows_per_chunk]
        picked = order[row_ends[first] - sizes[0]:row_ends[first + len(sizes) - 1]]
        sample_lengths = lengths[picked]
        row_lengths = np.add.reduceat(sample_lengths, np.cumsum(sizes) - sizes)
        offsets = pa.array(np.concatenate([[0], np.cumsum(row_lengths)]).astype(np.int32))
        segment_number = np.arange(len(picked)) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1
        chunks.append(pa.table({
            **{c: pa.ListArray.from_arrays(offsets, pa.array(ragged_take(flat, starts[picked], sample_lengths)))
               for c, flat in (("input_ids", ids), ("labels", labels))},
            "segment_ids": pa.ListArray.from_arrays(offsets, pa.array(np.repeat(segment_number, sample_lengths)
                                                                      .astype(np.int16))),
            "length": pa.array(row_lengths.astype(np.int64)),
        }))
    if chunks:
        packed = datasets.Dataset(pa.concat_tables(chunks))
    else:
        packed = datasets.Dataset.from_dict({"input_ids": [], "labels": [], "segment_ids": [], "length": []})
    stats = PackingStats(samples=len(usable), rows=len(row_sizes), max_length=max_length,
                         real_tokens=int(lengths.sum()), target_tokens=int((labels != IGNORE_INDEX).sum()))
    return packed, stats


class PackedCollator(PaddingCollator):
    """Packed rows -> a batch of ``input_ids``, ``attention_mask``, ``labels``, ``segment_ids`` (all (B, L)).

    Rows are right-padded to ``max_length`` when given (static shapes, e.g. for flex attention or torch.compile),
    else to the longest row; either width is rounded up to ``pad_to_multiple_of`` (8 by default, see
    data.PaddingCollator). Padding has segment 0, mask 0, label -100.
    """

    def __init__(self, pad_token_id: int, max_length: int | None = None, pad_to_multiple_of: int | None = 8):
        super().__init__(pad_token_id, pad_to_multiple_of=pad_to_multiple_of, max_length=max_length)

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise BloomzTuneError("PackedCollator got an empty list of rows")
        for key in ("input_ids", "labels", "segment_ids"):
            if key not in features[0]:
                raise BloomzTuneError(f"PackedCollator needs packed rows (packing.pack_dataset); no {key!r}")
        return super().__call__(features)
