"""Evaluation contamination of a built mixture: how many evaluation examples share a long n-gram with its rows.

    bloomz-tune mixture contamination runs/mixtures/demo --tasks xnli,xcopa [--languages en,zh] \\
        [--data-dir xnli=XNLI-1.0 ...] [--split test] [--ngram 13] [--num-proc 2]

For each evaluation dataset and language (``table.TASKS``) the report gives the share of its examples whose
own text shares an n-gram with a training row of the build (inputs and targets of the train split), and the
training sources (the ``source`` column) of those rows, with counts. It is written into the build's datasheet
(``datasheet.json`` key ``contamination``, a section of ``datasheet.md``, so ``mixture show`` prints it) and
printed as a table. The rule follows the decontamination of GPT-3 (Brown et al. 2020, appendix C: an example is
dirty if it shares an N-gram with any training document) with lm-evaluation-harness's fixed N = 13:

- An example's text is its own fields, joined: premise and hypothesis (NLI), premise and both choices (COPA),
  the four story sentences and both endings (StoryCloze), sentence and both options (Winograd). Never our
  prompts, whose words are in every rendered row.
- Text is normalised: lower-cased, each punctuation mark or symbol replaced by a space, each Chinese or Japanese
  character made a token of its own (those scripts put no spaces between words), then split on whitespace.
- Its n-grams are all runs of n consecutive tokens. An example shorter than n tokens is one gram, its whole
  text: it counts as contaminated only when a training row holds all of it, in order.
- The key rule, for short examples split by a prompt's words: the example's key columns (``TaskKind.key_columns``:
  the premise, the sentence, the story) are one more gram when shorter than n tokens and at least
  ``MIN_KEY_TOKENS`` tokens or ``MIN_KEY_CHARS`` characters long; the report counts each rule (``by_rule``) and
  an example found by either once.

The scan streams the training rows in Arrow batches (``datasets.map``: progress bar on a terminal, worker
processes with ``--num-proc``) and never holds their n-grams: each batch's n-grams are hashed and looked up in
the sorted array of the evaluation n-grams' 64-bit hashes, and only the hits are kept. Normalising, splitting
and mapping tokens to ids run in Arrow's C++ kernels, hashing and lookup in numpy: about 6 times the rows per
second of a per-row Python scan with n-gram tuples in a set (benchmarks/contamination.py). docs/contamination.md
states what the report measures and its limits.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.build import workers_for
from bloomz_tune.mixture.builds import load_built_mixture
from bloomz_tune.mixture.datasheet import (
    CONTAMINATION_HEADING,
    CONTAMINATION_KEY,
    DATASHEET_JSON,
    DATASHEET_MD,
    contamination_markdown,
    read_datasheet,
)
from bloomz_tune.runtime import interactive, print0
from bloomz_tune.storage import write_atomic
from bloomz_tune.tasks.releases import hub_rows, local_rows
from bloomz_tune.tasks.table import TASKS, resolve_tasks, task_data_dirs

NGRAM = 13
# The key rule's floor: a key of fewer tokens and fewer normalised characters (spaces not counted) than these is too
# common to tell an example ("i coughed"); characters let an unspaced Thai or Burmese key qualify, tokens a
# Chinese one (a token per character). docs/contamination.md gives the measurement behind the choice.
MIN_KEY_TOKENS, MIN_KEY_CHARS = 4, 16
# The fields of a raw evaluation row (eval_data's Hub schema) that make up its text, per task kind.
# One regex pass: a Chinese or Japanese character gets spaces around it; punctuation, symbols and Unicode spaces
# become ASCII spaces (so that the faster ASCII whitespace split then finds every token).
SPLIT_PATTERN = (r"([\p{Han}\p{Hiragana}\p{Katakana}])|[\p{P}\p{S}\x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}"
                 r"\x{2029}\x{202F}\x{205F}\x{3000}]")  # the Unicode spaces but " ": matching every " " is slow
RULE = ("lower-cased; punctuation and symbols replaced by spaces; each Chinese or Japanese character a token; "
        "split on whitespace. Examples shorter than n tokens: their whole text is the one gram.")
KEY_RULE = (f"the example's key (premise for NLI and COPA, the sentence for Winograd, the four story sentences), "
            f"normalised the same way, shorter than n tokens and of at least {MIN_KEY_TOKENS} tokens or "
            f"{MIN_KEY_CHARS} characters without spaces, found whole and in order in a training row")
MULTIPLIER = np.uint64(0x100000001B3)  # polynomial hash of a window: h = h * MULTIPLIER + token value (mod 2**64)


# -- text to token values ---------------------------------------------------------------------------------------

def normalized_tokens(texts):
    """Texts (an Arrow string array) -> the list array of their normalised tokens (the module docstring's rule)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pc.utf8_lower(texts)
    texts = pc.replace_substring_regex(texts, pattern=SPLIT_PATTERN, replacement=r" \1 ")
    tokens = pc.ascii_split_whitespace(pc.ascii_trim_whitespace(texts))  # untrimmed ends would split off ''
    return tokens.combine_chunks() if isinstance(tokens, pa.ChunkedArray) else tokens


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64: token ids -> well-spread 64-bit values, so window hashes of different texts rarely collide."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _flat(tokens) -> tuple:
    """A list array -> (its flat tokens, offsets from 0), without the '' that stands for a blank text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    flat = tokens.flatten()
    offsets = np.asarray(tokens.offsets, dtype=np.int64)
    offsets = offsets - offsets[0]
    keep = pc.not_equal(flat, "").to_numpy(zero_copy_only=False)
    if keep.all():
        return flat, offsets
    return flat.filter(pa.array(keep)), np.concatenate([[0], np.cumsum(keep)])[offsets]


def _slot(hashes: np.ndarray, length: int, bits: int) -> np.ndarray:
    """Where a hash of a gram of ``length`` tokens falls in a prefilter of 2**bits entries."""
    salt = _mix(np.array([length]))[0]
    return ((hashes ^ salt) >> np.uint64(64 - bits)).astype(np.intp)


def window_hashes(values: np.ndarray, offsets: np.ndarray, lengths: set[int],
                  prefilter: np.ndarray | None = None) -> dict[int, tuple]:
    """{L: (start positions, hashes)} of every window of L consecutive tokens that lies inside one text, for each
    L in ``lengths``; ``values`` are the tokens' values, text i being values[offsets[i]:offsets[i+1]]. One pass
    per length up to the largest: after pass k, h[i] is the hash of the k tokens from i. With ``prefilter``
    (booleans, see ``EvalIndex``) only the windows whose slot is set there."""
    total = len(values)
    room = np.repeat(offsets[1:], np.diff(offsets)) - np.arange(total)  # tokens from i to the end of its text
    h = np.zeros(total, dtype=np.uint64)
    out = {}
    for k in range(1, max(lengths, default=0) + 1):
        m = total - k + 1
        if m <= 0:
            break
        h[:m] *= MULTIPLIER
        h[:m] += values[k - 1:]
        if k in lengths:
            ok = room[:m] >= k
            if prefilter is not None:  # drops most windows before the costlier binary search
                ok &= prefilter[_slot(h[:m], k, int(len(prefilter)).bit_length() - 1)]
            pos = np.flatnonzero(ok)
            out[k] = (pos, h[pos])
    return out


# -- the evaluation n-grams ---------------------------------------------------------------------------------------

@dataclass
class EvalIndex:
    """The hashed n-grams of every evaluation example, for lookups from the training scan."""

    vocab: object  # Arrow string array: every evaluation token; a training token's id is its index here
    values: np.ndarray  # uint64 value of each token id; the last entry stands for any token not in vocab
    grams: dict  # gram length -> (sorted unique hashes, start of each hash's owners, owners: example numbers)
    prefilter: np.ndarray  # 2**b booleans, set at the slot of every gram: a window whose slot is unset is no gram


def build_index(texts: list[str], n: int = NGRAM, keys: list[str] | None = None,
                min_key: tuple[int, int] = (MIN_KEY_TOKENS, MIN_KEY_CHARS)) -> tuple[EvalIndex, np.ndarray]:
    """The index of the examples' grams, and each example's length in tokens.

    Grams of example i (of E) are owned by i: its n-grams, or its whole text when shorter than n tokens. With
    ``keys`` (each example's key columns, joined), the key of example i is one more gram, owned by E + i, when it
    is shorter than n tokens (a longer key's n-grams are the example's) and holds at least ``min_key`` tokens or
    characters once normalised (spaces not counted)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    count, keys = len(texts), list(keys or [])
    flat, offsets = _flat(normalized_tokens(pa.array(list(texts) + keys, pa.string())))
    vocab = pc.unique(flat)
    values = _mix(np.arange(len(vocab) + 1))
    sizes = np.diff(offsets)
    chars = np.add.reduceat(np.append(pc.utf8_length(flat).to_numpy(zero_copy_only=False), 0), offsets[:-1])
    whole = (sizes > 0) & (sizes < n)  # texts whose one gram is all of them
    whole[count:] &= (sizes[count:] >= min_key[0]) | (chars[count:] >= min_key[1])
    windows = window_hashes(values[pc.index_in(flat, value_set=vocab).to_numpy()], offsets,
                            {int(s) for s in sizes[whole]} | {n})
    owner_of = np.repeat(np.arange(len(sizes)), sizes)
    grams = {}
    for length, (pos, hashes) in windows.items():
        if length < n:  # a short text's one gram: the window at its start that spans it all
            keep = np.isin(pos, offsets[:-1][whole & (sizes == length)])
        else:  # n-grams of the examples only (a key as long as n is covered by them)
            keep = owner_of[pos] < count
        pos, hashes = pos[keep], hashes[keep]
        if not len(pos):
            continue
        pairs = np.unique(np.stack([hashes, owner_of[pos].astype(np.uint64)], axis=1), axis=0)
        keys_, starts = np.unique(pairs[:, 0], return_index=True)
        grams[length] = (keys_, np.append(starts, len(pairs)), pairs[:, 1].astype(np.int64))
    total = sum(len(g[0]) for g in grams.values())
    bits = min(max(int(total * 16).bit_length(), 16), 26)  # about 1 slot in 16 set: ~6% of windows pass
    prefilter = np.zeros(2 ** bits, dtype=bool)
    for length, (keys_, _, _) in grams.items():
        prefilter[_slot(keys_, length, bits)] = True
    return EvalIndex(vocab, values, grams, prefilter), sizes[:count]


def _hits(index: EvalIndex, texts) -> tuple[np.ndarray, np.ndarray]:
    """(text number, example number) of every text that holds a gram of an example, without repeats."""
    import pyarrow.compute as pc

    flat, offsets = _flat(normalized_tokens(texts))
    ids = pc.index_in(flat, value_set=index.vocab).fill_null(len(index.vocab)).to_numpy()
    windows = window_hashes(index.values[ids], offsets, set(index.grams), index.prefilter)
    found_pos, found_owner = [], []
    for length, (pos, hashes) in windows.items():
        keys, starts, owners = index.grams[length]
        at = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
        hit = keys[at] == hashes
        pos, at = pos[hit], at[hit]
        counts = starts[at + 1] - starts[at]  # a gram may belong to several examples
        first = np.repeat(starts[at] - (np.cumsum(counts) - counts), counts)
        found_pos.append(np.repeat(pos, counts))
        found_owner.append(owners[first + np.arange(counts.sum())])
    pos, owner = np.concatenate(found_pos or [[]]).astype(np.int64), np.concatenate(found_owner or [[]])
    text = np.searchsorted(offsets, pos, side="right") - 1
    pairs = np.unique(np.stack([text, owner.astype(np.int64)], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def _scan_batch(batch, indices: list[int], *, index: EvalIndex):
    """datasets.map over Arrow batches: one output row per (training row, evaluation example) that overlap."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = pc.binary_join_element_wise(batch["inputs"], batch["targets"], "\n")
    rows, examples = _hits(index, texts)
    return pa.table({"row": pa.array(np.asarray(indices, dtype=np.int64)[rows], pa.int64()),
                     "example": pa.array(examples, pa.int64()),
                     "source": batch["source"].take(pa.array(rows, pa.int64()))})


# -- evaluation examples -----------------------------------------------------------------------------------------

@dataclass
class EvalSet:
    """The texts of one evaluation dataset and language."""

    task: str
    title: str
    language: str
    split: str
    data: str  # the folder or Hub id it was read from
    texts: list[str]
    keys: list[str]  # each example's key columns, joined (the key rule's text)

    @property
    def key(self) -> str:
        return f"{self.task}/{self.language}"


def load_eval_sets(tasks, languages=None, data_dirs: dict | None = None, split: str | None = None) -> list[EvalSet]:
    """The texts of each (task, language): from ``data_dirs[task]`` in a layout ``releases`` knows, else the
    Hub; ``split`` replaces each task's evaluated split (default: the one ``TASKS`` names)."""

    plan = resolve_tasks(tasks, languages)
    dirs = task_data_dirs(data_dirs)
    sets = []
    for task, langs in plan.items():
        spec = TASKS[task] if not split else replace(TASKS[task], split=split)
        folder = dirs.get(task)
        if folder is None and spec.path is None:
            raise BloomzTuneError(f"{spec.title} needs a local data folder. " + spec.manual.format(name=task))
        columns, key_columns = spec.task_kind.text_columns, spec.task_kind.key_columns
        for language in langs:
            texts, keys = [], []
            try:
                for at, raw in (local_rows(folder, spec, language) if folder else hub_rows(spec, language)):
                    missing = [c for c in columns if c not in raw]
                    if missing:
                        raise BloomzTuneError(f"{at} ({spec.title} {language}) lacks column(s) {', '.join(missing)}"
                                              f"; it has: {', '.join(raw)}")
                    texts.append("\n".join(str(raw[c] or "").strip() for c in columns))
                    keys.append(" ".join(str(raw[c] or "").strip() for c in key_columns))
            except (OSError, UnicodeDecodeError) as err:
                raise BloomzTuneError(f"cannot read {spec.title} {language} from {folder}: "
                                      f"{type(err).__name__}: {err}") from None
            if not texts:
                raise BloomzTuneError(f"{spec.title} {language} ({folder or spec.path}, split {spec.split!r}) "
                                      f"has no rows")
            sets.append(EvalSet(task, spec.title, language, spec.split, str(folder or spec.path), texts, keys))
    return sets


# -- the scan and its report -------------------------------------------------------------------------------------

BATCH_ROWS = 1000


def scan(train, index: EvalIndex, num_proc: int = 1, progress: bool | None = None):
    """The hits of a training split (a Dataset with inputs, targets, source): an Arrow table with one row per
    (training row number, evaluation example number, source) that overlap."""
    import datasets
    import pyarrow as pa

    data = train.select_columns(["inputs", "targets", "source"]).with_format("arrow")
    if not len(data):
        return pa.table({"row": pa.array([], pa.int64()), "example": pa.array([], pa.int64()),
                         "source": pa.array([], pa.string())})
    bars_were_on = datasets.is_progress_bar_enabled()
    if not (interactive() if progress is None else progress):
        datasets.disable_progress_bars()
    try:  # the hits are few: kept in memory, nothing is written beside the build
        out = data.map(_scan_batch, batched=True, batch_size=BATCH_ROWS, with_indices=True,
                       remove_columns=data.column_names, fn_kwargs={"index": index},
                       num_proc=workers_for(max(1, int(num_proc)), len(data)), keep_in_memory=True,
                       new_fingerprint="contamination-hits", desc="contamination scan")
        return pa.table({name: out.data.column(name).combine_chunks() for name in ("row", "example", "source")})
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def contamination_report(built_dir, tasks=None, languages=None, data_dirs: dict | None = None,
                         split: str | None = None, n: int = NGRAM, num_proc: int = 1,
                         progress: bool | None = None) -> dict:
    """Scan a finished build's train split against the evaluation data; returns the report (see the module
    docstring) without writing it (``write_report`` does). Fails, before scanning, on an unknown task or
    language, a folder that is not a finished build, or evaluation data that cannot be read."""

    if not isinstance(n, int) or n < 1:
        raise BloomzTuneError(f"--ngram must be a positive number of tokens, got {n!r}")
    resolve_tasks(tasks, languages)  # an unknown task fails before the build is opened
    train = load_built_mixture(built_dir)["train"]
    sets = load_eval_sets(tasks, languages, data_dirs, split)
    index, sizes = build_index([t for s in sets for t in s.texts], n, [k for s in sets for k in s.keys])
    start = time.perf_counter()
    print0(f"contamination: {len(sizes):,} evaluation examples ({len(sets)} datasets) against {len(train):,} "
           f"training rows, {n}-grams")
    hits = scan(train, index, num_proc, progress)
    seconds = time.perf_counter() - start
    return {"ngram": n, "rule": RULE, "key_rule": KEY_RULE, "scanned": "train", "training_rows": len(train),
            "fingerprint": read_datasheet(built_dir).get("fingerprint"), "seconds": round(seconds, 2),
            "datasets": summarise(sets, sizes, hits, n)}


def summarise(sets: list[EvalSet], sizes: np.ndarray, hits, n: int) -> dict:
    """{task/language: counts and sources} from the scan's hits (owners run over ``sets`` in order: example i by
    its n-grams, E + i by its key; ``build_index``)."""
    import pyarrow as pa

    total = len(sizes)
    owner = hits.column("example").to_numpy()
    example = owner % total if total else owner
    set_of = np.repeat(np.arange(len(sets)), [len(s.texts) for s in sets])
    table = pa.table({"set": set_of[example], "example": example, "rule": owner // max(total, 1),
                      "row": hits.column("row"), "source": hits.column("source")})
    dirty = {g["set"]: g["example_count_distinct"]
             for g in table.group_by("set").aggregate([("example", "count_distinct")]).to_pylist()}
    by_rule = {(g["set"], g["rule"]): g["example_count_distinct"]
               for g in table.group_by(["set", "rule"]).aggregate([("example", "count_distinct")]).to_pylist()}
    by_source: dict[int, list] = {}
    for g in table.group_by(["set", "source"]).aggregate([("example", "count_distinct"),
                                                           ("row", "count_distinct")]).to_pylist():
        by_source.setdefault(g["set"], []).append((g["source"], g["example_count_distinct"],
                                                   g["row_count_distinct"]))
    out, first = {}, 0
    for i, s in enumerate(sets):
        size = sizes[first:first + len(s.texts)]
        first += len(s.texts)
        worst = sorted(by_source.get(i, []), key=lambda x: (-x[1], -x[2], x[0]))
        contaminated = int(dirty.get(i, 0))
        out[s.key] = {"task": s.task, "title": s.title, "language": s.language, "split": s.split, "data": s.data,
                      "examples": len(s.texts), "short_examples": int((size < n).sum()),
                      "contaminated": contaminated, "share": contaminated / len(s.texts),
                      "by_rule": {"ngram": int(by_rule.get((i, 0), 0)), "key": int(by_rule.get((i, 1), 0))},
                      "sources": {name: {"examples": int(e), "rows": int(r)} for name, e, r in worst}}
    return out


# -- the datasheet ------------------------------------------------------------------------------------------------


def with_section(markdown: str, section: str) -> str:
    """``markdown`` with its contamination section replaced by ``section`` (appended when it has none)."""
    start = markdown.find(f"\n{CONTAMINATION_HEADING}\n")
    if start < 0:
        return markdown.rstrip("\n") + "\n\n" + section
    end = markdown.find("\n## ", start + len(CONTAMINATION_HEADING) + 2)
    return markdown[:start + 1] + section + (markdown[end:] if end >= 0 else "")


def write_report(built_dir, report: dict) -> None:
    """Put the report into the build's datasheet.json (key ``contamination``, replacing an earlier report) and
    datasheet.md (its section); each file is replaced whole, so an interrupted write leaves the old one."""
    built_dir = Path(built_dir)
    sheet = read_datasheet(built_dir)
    sheet[CONTAMINATION_KEY] = report
    write_atomic(built_dir / DATASHEET_JSON, json.dumps(sheet, indent=2, ensure_ascii=False) + "\n")
    md = built_dir / DATASHEET_MD
    write_atomic(md, with_section(md.read_text(encoding="utf-8"), contamination_markdown(report)))


# -- command line -------------------------------------------------------------------------------------------------


