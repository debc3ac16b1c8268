"""Tokenizing a mixture split in bulk: whole columns through the fast tokenizer, numpy for the rest.

``tokenize_rows`` is what training runs (through ``cache.tokenized_split``). It reads ``inputs`` and ``targets`` through Arrow in
chunks of ``CHUNK_ROWS`` rows, encodes each chunk in one call of the Rust tokenizer (ids only: no attention
masks, offsets or Python objects per token), tokenizes each distinct target once (xP3 targets repeat: class
names, yes/no), and applies the over-long rule of ``fit_sample`` to the length columns at once. A chunk's
``input_ids`` and ``labels`` are then one numpy gather each. ``datasets.map`` would instead call Python per
row, build an attention mask per row, and convert every list back to Arrow: on a million rows that was most of
the time before the first step (benchmarks/README.md, ``scale.py``).

The result: ``input_ids``, ``labels`` (int32, -100 on input positions) and ``length`` per kept row, in the
split's order; the counts by status (ok, truncated, skipped, empty); and every row's untruncated token counts
(inputs, and targets with EOS), from which the datasheet's token counts are summed without tokenizing again.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.recipe import OVERLONG_POLICIES

IGNORE_INDEX = -100  # the label of a position that takes no loss (transformers' convention)

CHUNK_ROWS = 65_536  # rows per encode call: large enough that per-call costs vanish, small enough for memory
STATUSES = ("ok", "truncated", "skipped", "empty")  # status codes 0..3


@dataclass
class Tokenized:
    """A tokenized split: its kept rows as a ``datasets.Dataset``, counts by status, every row's token counts."""

    dataset: object
    counts: dict
    input_tokens: np.ndarray | None  # per row of the split (kept or not): input tokens before any truncation
    target_tokens: np.ndarray | None  # ... target tokens with EOS (both None for a split read from the cache)


def encode(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token ids of ``texts`` without special tokens: one flat int32 array and int64 offsets (len(texts) + 1).

    A fast tokenizer's Rust backend encodes the whole list in one call (``encode_batch_fast`` skips the character
    offsets we never use); the backend is used only when it has no truncation or padding of its own, which the
    transformers wrapper would switch off (then, and for slow tokenizers, the wrapper is called instead)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        run = getattr(backend, "encode_batch_fast", backend.encode_batch)
        ids = [e.ids for e in run(texts, add_special_tokens=False)]
    else:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))
    return flat, offsets


def ragged_take(pool: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``pool[starts[i] : starts[i] + lengths[i]]`` for every i, concatenated, in one numpy gather."""
    lengths = np.asarray(lengths, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(np.asarray(starts, dtype=np.int64) - (ends - lengths), lengths)
    return pool[np.arange(int(ends[-1]) if len(ends) else 0, dtype=np.int64) + shift]


def fit_lengths(input_tokens: np.ndarray, target_tokens: np.ndarray, max_length: int, overlong: str):
    """``data.fit_sample`` on length columns: (status codes, input tokens kept). Kept inputs lose tokens from the
    left; the target (with EOS) is never cut."""
    too_long = input_tokens + target_tokens > max_length
    room = max_length - target_tokens
    skipped = too_long & ((room < 1) if overlong == "truncate_left" else True)
    truncated = too_long & ~skipped
    kept_inputs = np.where(truncated, room, input_tokens)
    empty = ~skipped & ((kept_inputs == 0) | (target_tokens < 2))
    status = np.select([skipped, empty, truncated], [2, 3, 1], 0).astype(np.int8)
    return status, kept_inputs


def encode_chunk(table, tokenizer):
    """A chunk's ``inputs`` and ``targets`` (an Arrow table) encoded: (flat input ids, input offsets, target pool
    (each distinct target's ids + EOS, end to end), each row's start in that pool, each row's target tokens)."""
    import pyarrow.compute as pc


    in_flat, in_offsets = encode(tokenizer, table.column("inputs").to_pylist())
    distinct = pc.dictionary_encode(table.column("targets").combine_chunks())
    t_flat, t_offsets = encode(tokenizer, [target_text(t) for t in distinct.dictionary.to_pylist()])
    t_pool = np.insert(t_flat, t_offsets[1:], np.int32(tokenizer.eos_token_id))
    t_sizes = np.diff(t_offsets) + 1
    which = distinct.indices.to_numpy(zero_copy_only=False)
    return in_flat, in_offsets, t_pool, (np.cumsum(t_sizes) - t_sizes)[which], t_sizes[which]


def tokenize_chunk(table, tokenizer, max_length: int, overlong: str):
    """One chunk of rows (an Arrow table with ``inputs``, ``targets``) -> (record batch of kept rows, status codes,
    input tokens, target tokens with EOS)."""
    import pyarrow as pa

    in_flat, in_offsets, t_pool, t_starts, target_tokens = encode_chunk(table, tokenizer)
    input_tokens = np.diff(in_offsets)
    status, kept_inputs = fit_lengths(input_tokens, target_tokens, max_length, overlong)
    keep = status < 2
    cut = input_tokens[keep] - kept_inputs[keep]
    # each kept row is two runs of the pool: its inputs (from the left cut on), then its target with EOS
    starts = np.stack([in_offsets[:-1][keep] + cut, len(in_flat) + t_starts[keep]], axis=1).ravel()
    sizes = np.stack([kept_inputs[keep], target_tokens[keep]], axis=1).ravel()
    ids = ragged_take(np.concatenate([in_flat, t_pool]), starts, sizes)
    labels = ragged_take(np.concatenate([np.full(len(in_flat), IGNORE_INDEX, dtype=np.int32), t_pool]),
                         starts, sizes)
    lengths = kept_inputs[keep] + target_tokens[keep]
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    batch = pa.RecordBatch.from_arrays(
        [pa.ListArray.from_arrays(offsets, pa.array(ids)), pa.ListArray.from_arrays(offsets, pa.array(labels)),
         pa.array(lengths.astype(np.int64))], schema=tokenized_schema())
    return batch, status, input_tokens, target_tokens


def tokenized_schema():
    """The columns of tokenized rows (built on call, so that importing this module does not load pyarrow)."""
    import pyarrow as pa

    return pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
                      ("length", pa.int64())])


@contextlib.contextmanager
def tokenizer_threads(enabled: bool):
    """The fast tokenizer's own Rust threads on (all cores) while inside, whatever TOKENIZERS_PARALLELISM says
    outside; restored after, so that processes forked later (data loader workers) see the old setting."""
    if not enabled:
        yield
        return
    before = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = before


def tokenize_rows(dataset, tokenizer, max_length: int, overlong: str = "skip", num_proc: int | None = None,
                  path: str | Path | None = None) -> Tokenized:
    """Tokenize a split's ``inputs``/``targets`` chunk by chunk (see the module docstring). With ``path``, the kept
    rows are written there as an Arrow file and memory-mapped back; else they stay in memory. ``num_proc`` > 1
    lets the tokenizer encode each chunk on its Rust threads."""
    import datasets
    import pyarrow as pa


    if overlong not in OVERLONG_POLICIES:
        raise BloomzTuneError(f"overlong must be one of {', '.join(OVERLONG_POLICIES)}, got {overlong!r}")
    columns = dataset.select_columns(["inputs", "targets"]).with_format("arrow")
    status_counts = np.zeros(len(STATUSES), dtype=np.int64)
    input_tokens, target_tokens, batches = [], [], []
    sink = pa.OSFile(str(path), "wb") if path is not None else None
    writer = pa.ipc.new_stream(sink, tokenized_schema()) if sink is not None else None
    try:
        with tokenizer_threads(bool(num_proc and num_proc > 1)):
            for start in range(0, len(dataset), CHUNK_ROWS):
                batch, status, n_in, n_tgt = tokenize_chunk(columns[start:start + CHUNK_ROWS], tokenizer,
                                                            max_length, overlong)
                status_counts += np.bincount(status, minlength=len(STATUSES))
                input_tokens.append(n_in)
                target_tokens.append(n_tgt)
                if writer is not None:
                    writer.write_batch(batch)
                else:
                    batches.append(batch)
    finally:
        if writer is not None:
            writer.close()
            sink.close()
    if path is not None:
        kept = datasets.Dataset.from_file(str(path))
    else:
        kept = datasets.Dataset(pa.Table.from_batches(batches, schema=tokenized_schema()))
    counts = {s: int(n) for s, n in zip(STATUSES, status_counts)}
    empty = np.zeros(0, dtype=np.int64)
    return Tokenized(kept, counts, np.concatenate(input_tokens) if input_tokens else empty,
                     np.concatenate(target_tokens) if target_tokens else empty)


def token_counts(dataset, tokenizer, num_proc: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Every row's input tokens and target tokens (with EOS), as BLOOMZ trains on them, without keeping ids."""
    columns = dataset.select_columns(["inputs", "targets"]).with_format("arrow")
    ins, tgts = [], []
    with tokenizer_threads(bool(num_proc and num_proc > 1)):
        for start in range(0, len(dataset), CHUNK_ROWS):
            _, in_offsets, _, _, target_tokens = encode_chunk(columns[start:start + CHUNK_ROWS], tokenizer)
            ins.append(np.diff(in_offsets))
            tgts.append(target_tokens)
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(ins) if ins else empty), (np.concatenate(tgts) if tgts else empty)


# -- the tokenized split, kept beside the build ------------------------------------------------------------------


def target_text(target: str) -> str:
    return target if target[:1].isspace() else " " + target


def fit_sample(input_ids: list[int], target_ids: list[int], max_length: int, overlong: str = "skip"):
    """The over-long rule for one sample (``tokenizing.fit_lengths`` is its column form, tested against it):
    (input ids, target ids, status) for a sample of at most
    ``max_length`` tokens. status is "ok", "truncated" (inputs lost tokens from the left; the target is never
    cut), "skipped" (too long, as BLOOMZ skipped it) or "empty" (no input, or no target token before EOS)."""
    status = "ok"
    if len(input_ids) + len(target_ids) > max_length:
        room = max_length - len(target_ids)
        if overlong != "truncate_left" or room < 1:
            return [], [], "skipped"
        input_ids, status = input_ids[len(input_ids) - room:], "truncated"
    if not input_ids or len(target_ids) < 2:
        return [], [], "empty"
    return input_ids, target_ids, status


def load_tokenizer(tokenizer, revision: str | None = None, trust_remote_code: bool = False):
    """A tokenizer as it is, or loaded from a Hub id or local folder (``None`` stays ``None``)."""
    if tokenizer is None or not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer), revision=revision, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - transformers raises OSError, ValueError, JSON and Rust errors here
        hint = "" if Path(tokenizer).exists() else " (not a local folder; is it a Hub id you can reach?)"
        reason = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise BloomzTuneError(f"cannot load a tokenizer from {str(tokenizer)!r}{hint}: {reason}") from None


def tokenizer_name(tokenizer) -> str:
    return getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__


def tokenizer_id(tokenizer) -> str:
    """A file-name-safe name for a tokenizer plus a short hash of its vocabulary, e.g.
    ``bigscience--bloom-560m-1a2b3c4d5e`` (a local folder is named by its last component)."""
    name = tokenizer_name(tokenizer)
    name = Path(name).name if Path(name).exists() else name.replace("/", "--")
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    digest = hashlib.sha256(vocab.encode("utf-8")).hexdigest()[:10]
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[-60:] or 'tokenizer'}-{digest}"
