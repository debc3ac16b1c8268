"""Building a mixture's rows: load the sources, render their templates, dedupe, split, resample, save.

The steps (docs/bloomz.md §1, §2): load every source (Hub id or local folder, same code path) and apply its row
filter; apply each of its prompt templates to a seeded sample of at most ``cap`` rows per (split, template),
dropping rows whose input or target renders empty; assign each *source example* to train or validation; drop
exact duplicates per language; resample sources by ``weight`` and languages by ``language_weights``; shuffle;
save. Rows live in memory-mapped Arrow files throughout; only numeric index arrays are held in memory.

Each step is a function that takes and returns named objects: a ``LoadedSource`` per source, a ``Part`` per
(source, split, template) rendering, a ``Selection`` of row indices, and the ``BuildResult`` that the datasheet
is written from. A change here that changes the rows a spec builds bumps ``spec.BUILD_FORMAT_VERSION``.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bloomz_tune.errors import BloomzTuneError, ConfigError
from bloomz_tune.mixture.sources import local_file_problem, read_release
from bloomz_tune.mixture.spec import MixtureSpec, SourceSpec, source_templates
from bloomz_tune.mixture.templates import PromptTemplate, RowFilter, TemplateRenderError
from bloomz_tune.runtime import is_main_process, print0

ROWS_PER_PROCESS = 2000  # below this many rows per worker, a step runs in this process (workers cost ~1 s)
COLUMNS = ["inputs", "targets", "language", "task", "source", "template", "choices"]
DATASET_DIR = "dataset"


# -- what the steps pass on ------------------------------------------------------------------------------------

@dataclass
class LoadedSplit:
    name: str
    rows: Any  # a datasets.Dataset
    filtered_out: int | None = None  # rows the source's filter left out (None: the source has no filter)


@dataclass
class LoadedSource:
    index: int  # position in spec.sources
    spec: SourceSpec
    templates: list[PromptTemplate | None]  # [None] for a prompted source
    splits: list[LoadedSplit] = field(default_factory=list)


@dataclass
class Part:
    """One (source, split, template) rendering and what became of its rows."""

    id: int
    source: SourceSpec
    source_index: int
    split: str
    template: str
    available: int  # rows of the split
    selected: int  # rows sampled under the cap
    rendered: int = 0  # rows with a non-empty input and target
    deduplicated: int = 0
    train: int = 0
    validation: int = 0


@dataclass
class Selection:
    train: np.ndarray  # indices into the rendered rows, in their final order
    validation: np.ndarray
    available: dict[str, int]  # train rows per language before language sampling
    targets: dict[str, int]  # ... and after


@dataclass
class BuildResult:
    spec: MixtureSpec
    fingerprint: str
    sources: list[LoadedSource]
    parts: list[Part]
    selection: Selection
    warnings: list[str]
    seconds: float


def build_rows(spec: MixtureSpec, out: Path, fingerprint: str, num_proc: int, progress: bool) -> BuildResult:
    """Every step, writing the dataset to ``out/dataset`` (scratch files go to ``out/_work``)."""
    from datasets import concatenate_datasets

    started = time.time()
    work = out / "_work"
    work.mkdir()
    print0(f"mixture {spec.name}: {len(spec.sources)} sources, fingerprint {fingerprint}")
    sources = load_sources(spec, work, fingerprint, progress)
    apply_filters(sources, work, fingerprint, num_proc)
    parts, rendered = render_parts(spec, sources, work, fingerprint, num_proc)
    warn_list = _empty_source_warnings(spec, parts)
    if not rendered:
        raise BloomzTuneError(f"mixture {spec.name!r} is empty: no source yielded a row (see the warnings above)")
    full = concatenate_datasets(rendered)
    selection = select_rows(spec, full, parts)
    save_splits(full, selection, parts, out, num_proc)
    return BuildResult(spec, fingerprint, sources, parts, selection, warn_list, time.time() - started)


def workers_for(num_proc: int, rows: int) -> int | None:
    """Worker processes for a step over ``rows`` rows (None: in this process)."""
    return num_proc if num_proc > 1 and rows >= ROWS_PER_PROCESS * num_proc else None


# -- 1. load ---------------------------------------------------------------------------------------------------

def load_sources(spec: MixtureSpec, work: Path, fingerprint: str, progress: bool) -> list[LoadedSource]:
    """Every split of every source, its columns checked against its templates and filter (all problems at once)."""
    from tqdm.auto import tqdm

    loaded, problems = [], []
    for si, src in enumerate(tqdm(spec.sources, desc="load sources", disable=not progress or not is_main_process())):
        if src.skip:
            print0(f"source {src.label!r} left out: {src.skip}")
            continue
        if src.format != "datasets":  # a published release: one source per (dataset, prompt, split) it names
            loaded += [LoadedSource(si, part.spec, [part.template], [LoadedSplit(part.split, part.rows)])
                       for part in read_release(spec, si, src, work)]
            continue
        source = LoadedSource(si, src, source_templates(spec, src))
        for split in src.splits:
            rows = _load_split(spec, source, split, work, fingerprint)
            problems += _column_problems(source, split, set(rows.column_names or []))
            source.splits.append(LoadedSplit(split, rows))
        loaded.append(source)
    if problems:
        raise ConfigError(problems, spec.spec_path or spec.name)
    return loaded


def _load_split(spec: MixtureSpec, source: LoadedSource, split: str, work: Path, fingerprint: str):
    import datasets

    src = source.spec
    kwargs = src.loader_kwargs(spec.spec_dir)
    quiet = datasets.utils.logging.get_verbosity()
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)  # we report failures ourselves, in one line
    try:
        rows = datasets.load_dataset(**kwargs, split=split, streaming=src.streaming)
    except Exception as err:  # noqa: BLE001 - any loader failure becomes one clear message
        problem = local_file_problem(kwargs)
        if problem:  # the loader's own message loses the file and the row
            raise BloomzTuneError(f"source {src.label!r}, split {split!r}: {problem}") from None
        if Path(kwargs["path"]).exists():
            hint = "check the folder holds the dataset's data files (parquet/JSON/CSV) and the split exists"
        else:
            hint = ("check the Hub id, config name and split; with no network (HF_HUB_OFFLINE=1), or for data "
                    "behind a manual download (e.g. story_cloze), download the files and set `path` to a local "
                    "folder holding them")
        raise BloomzTuneError(f"source {src.label!r}: could not load split {split!r} of {kwargs['path']!r} "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
                              f"To fix: {hint}.") from None
    finally:
        datasets.utils.logging.set_verbosity(quiet)
    if not src.streaming:
        return rows
    # Read at most `cap` rows of the stream (shuffle buffer 10k) into an Arrow file.
    name = f"stream{source.index}-{_stable_int(fingerprint, source.index, split):x}"
    return datasets.Dataset.from_generator(
        _stream_rows, gen_kwargs={"dataset": rows.shuffle(seed=spec.seed, buffer_size=10_000),
                                  "limit": src.cap or spec.cap},
        cache_dir=str(work / "streams"), fingerprint=name)


def _stream_rows(dataset, limit: int):
    for i, row in enumerate(dataset):
        if i >= limit:
            break
        yield row


def _column_problems(source: LoadedSource, split: str, columns: set[str]) -> list[str]:
    src, where = source.spec, f"sources[{source.index}] ({source.spec.label})"
    have = f"split {split!r} (columns: {', '.join(sorted(columns))})"
    out = []
    if src.filter:
        out += [f"{where}.filter: column {col!r} is missing from {have}"
                for col in sorted(RowFilter(src.filter).variables() - columns)]
    for t in source.templates:
        needed = {"inputs", "targets"} if t is None else t.variables() - set(src.template_vars)
        what = "prompted rows" if t is None else f"template {t.name!r}"
        named = columns | {c.replace("-", "_") for c in columns} if t is not None and t.promptsource else columns
        out += [f"{where}, {what}: column {col!r} is missing from {have}" for col in sorted(needed - named)]
    return out


def apply_filters(sources: list[LoadedSource], work: Path, fingerprint: str, num_proc: int) -> None:
    """Keep the rows that pass each source's ``filter`` (counting the rest)."""
    for source in sources:
        if not source.spec.filter:
            continue
        for k, split in enumerate(source.splits):
            before = len(split.rows)
            split.rows = split.rows.filter(
                RowFilter(source.spec.filter), num_proc=workers_for(num_proc, before),
                cache_file_name=str(work / f"filter{source.index}-{k}.arrow"), load_from_cache_file=False,
                new_fingerprint=f"{fingerprint}-filter{source.index}-{k}",
                desc=f"filter {source.spec.label} [{split.name}]")
            split.filtered_out = before - len(split.rows)


# -- 2. render (runs in datasets.map workers) -------------------------------------------------------------------

def render_parts(spec: MixtureSpec, sources: list[LoadedSource], work: Path, fingerprint: str,
                 num_proc: int) -> tuple[list[Part], list]:
    """Each (source, split, template) on a seeded sample of at most ``cap`` rows: the parts, and their rows."""
    parts, rendered = [], []
    for source in sources:
        for split in source.splits:
            for template in source.templates:
                part, rows = _render_part(spec, source, split, template, len(parts), work, fingerprint, num_proc)
                parts.append(part)
                if rows is not None:
                    rendered.append(rows)
    return parts, rendered


def _render_part(spec: MixtureSpec, source: LoadedSource, split: LoadedSplit, template: PromptTemplate | None,
                 part_id: int, work: Path, fingerprint: str, num_proc: int):
    src = source.spec
    cap, n = src.cap or spec.cap, len(split.rows)
    tname = "published" if template is None else template.name
    rng = np.random.default_rng([spec.seed, _stable_int(src.label, split.name, tname) % (2**32)])
    row_index = np.sort(rng.choice(n, size=cap, replace=False)) if cap < n else None
    subset = split.rows.select(row_index) if row_index is not None else split.rows
    part = Part(part_id, src, source.index, split.name, tname, available=n, selected=len(subset))
    if not len(subset):
        return part, None
    try:
        rows = subset.map(
            _render_batch, batched=True, batch_size=1000, with_indices=True, remove_columns=subset.column_names,
            features=_work_features(), num_proc=workers_for(num_proc, len(subset)),
            fn_kwargs=dict(part=part_id, template=template, language=src.language,
                           prompt_language=spec.prompt_language, template_vars=src.template_vars,
                           row_index=row_index, label=src.label, split=split.name, seed=spec.seed,
                           val_fraction=spec.validation_fraction),
            cache_file_name=str(work / f"part{part_id}.arrow"), load_from_cache_file=False,
            new_fingerprint=f"{fingerprint}-part{part_id}", desc=f"render {src.label} [{split.name}] {tname}")
    except UnicodeDecodeError as err:  # Arrow's JSON reader keeps invalid bytes; they fail when a row is read
        raise BloomzTuneError(f"source {src.label!r}, split {split.name!r}: a text column is not valid UTF-8 "
                              f"({err.reason}, byte 0x{err.object[err.start]:02x}); re-encode the source's files "
                              "as UTF-8") from None
    part.rendered = len(rows)
    return part, (rows if len(rows) else None)


def _render_batch(batch, indices, *, part, template, language, prompt_language, template_vars, row_index,
                  label, split, seed, val_fraction):
    columns = list(batch)
    out = {"inputs": [], "targets": [], "choices": [], "_hash": [], "_val": []}
    for pos, i in enumerate(indices):
        row = {c: batch[c][pos] for c in columns}
        orig = int(row_index[i]) if row_index is not None else int(i)
        key = _stable_int(seed, label, split, orig)
        if template is None:
            inputs, targets, choices = str(row.get("inputs") or "").strip(), str(row.get("targets") or "").strip(), []
        else:
            row.update(template_vars)
            try:
                inputs, targets, choices = template.render(  # code keeps its input/target newline (§2.2)
                    row, language=language if prompt_language == "native" else None, row_seed=key,
                    strip_connection=language != "code")
            except TemplateRenderError as err:
                raise TemplateRenderError(f"source {label!r}, split {split!r}, row {orig}: {err}") from None
        if not inputs or not targets:
            continue
        out["inputs"].append(inputs)
        out["targets"].append(targets)
        out["choices"].append(list(choices))
        out["_hash"].append(_row_hash(language, inputs, targets))
        out["_val"].append((key % 1_000_003) / 1_000_003 < val_fraction)
    out["_pid"] = [part] * len(out["inputs"])
    return out


def _stable_int(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def _row_hash(language: str, inputs: str, targets: str) -> int:
    digest = hashlib.blake2b(f"{language}\x00{inputs}\x00{targets}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _work_features():
    from datasets import Features, List, Value

    return Features({"inputs": Value("string"), "targets": Value("string"), "choices": List(Value("string")),
                     "_hash": Value("int64"), "_val": Value("bool"), "_pid": Value("int32")})


def output_features():
    """The features of a built mixture's splits."""
    from datasets import Features, List, Value

    return Features({**{c: Value("string") for c in COLUMNS if c != "choices"}, "choices": List(Value("string"))})


def _empty_source_warnings(spec: MixtureSpec, parts: list[Part]) -> list[str]:
    out = []
    for si, src in enumerate(spec.sources):
        if not src.skip and sum(p.rendered for p in parts if p.source_index == si) == 0:
            msg = f"source {src.label!r} yielded zero rows (after rendering and dropping empty rows)"
            out.append(msg)
            warnings.warn(msg, stacklevel=3)
            print0(f"warning: {msg}")
    return out


# -- 3. dedupe, split and resample (numeric columns only) -------------------------------------------------------

def select_rows(spec: MixtureSpec, full, parts: list[Part]) -> Selection:
    """The train and validation rows: duplicates dropped, sources and languages resampled, shuffled."""
    part_ids = full.data.column("_pid").to_numpy()
    row_source = np.array([p.source_index for p in parts], dtype=np.int32)[part_ids]
    langs = sorted({s.language for s in spec.sources})
    row_lang = np.array([langs.index(s.language) for s in spec.sources], dtype=np.int32)[row_source]
    is_val = full.data.column("_val").to_numpy(zero_copy_only=False).astype(bool)
    keep = np.ones(len(full), dtype=bool)
    if spec.dedupe:
        keep = _first_of_duplicates(full.data.column("_hash").to_numpy(), is_val)

    rng = np.random.default_rng(spec.seed)
    pool = _weighted_train_pool(spec, keep & ~is_val, row_source, rng)
    pool_lang = row_lang[pool]
    available = {lang: int((pool_lang == li).sum()) for li, lang in enumerate(langs)}
    targets = _language_targets(spec, langs, available)
    train_parts, val_parts = [], []
    for li, lang in enumerate(langs):
        train_parts.append(_resample(pool[pool_lang == li], targets[lang], rng))
        val_idx = np.flatnonzero(keep & is_val & (row_lang == li))
        ratio = targets[lang] / available[lang] if available[lang] else 1.0
        val_parts.append(_resample(val_idx, int(round(len(val_idx) * ratio)), rng) if ratio < 1 else val_idx)
    selection = Selection(rng.permutation(np.concatenate(train_parts)), rng.permutation(np.concatenate(val_parts)),
                          available, targets)
    counts = {name: np.bincount(part_ids[idx], minlength=len(parts))
              for name, idx in (("deduplicated", ~keep), ("train", selection.train),
                                ("validation", selection.validation))}
    for p in parts:
        p.deduplicated, p.train, p.validation = (int(counts[k][p.id])
                                                 for k in ("deduplicated", "train", "validation"))
    return selection


def _first_of_duplicates(hashes: np.ndarray, is_val: np.ndarray) -> np.ndarray:
    """True for the first row of each distinct hash, validation rows first (so they win over train rows)."""
    order = np.argsort(~is_val, kind="stable")
    _, first = np.unique(hashes[order], return_index=True)
    keep = np.zeros(len(hashes), dtype=bool)
    keep[order[first]] = True
    return keep


def _weighted_train_pool(spec: MixtureSpec, train_mask: np.ndarray, row_source: np.ndarray,
                         rng: np.random.Generator) -> np.ndarray:
    """Train row indices, each source's resampled by its ``weight``."""
    by_source = []
    for si, src in enumerate(spec.sources):
        idx = np.flatnonzero(train_mask & (row_source == si))
        by_source.append(_resample(idx, int(round(len(idx) * src.weight)), rng) if src.weight != 1 else idx)
    return np.concatenate(by_source) if by_source else np.zeros(0, dtype=np.int64)


def _language_targets(spec: MixtureSpec, langs: list[str], available: dict[str, int]) -> dict[str, int]:
    """Train rows per language after sampling: as available, or ``language_weights`` shares of the total."""
    if not spec.language_weights:
        return dict(available)
    total = spec.total_examples or sum(available.values())
    wsum = sum(spec.language_weights[lang] for lang in langs)
    return {lang: int(round(total * spec.language_weights[lang] / wsum)) if available[lang] else 0 for lang in langs}


def _resample(idx: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """``target`` elements of ``idx``: a sample without replacement, or whole repeats plus a sample."""
    n = len(idx)
    if target == n or n == 0:
        return idx
    if target < n:
        return np.sort(rng.choice(idx, size=target, replace=False))
    reps, rest = divmod(target, n)
    return np.concatenate([np.tile(idx, reps), np.sort(rng.choice(idx, size=rest, replace=False))])


# -- 4. save ---------------------------------------------------------------------------------------------------

def save_splits(full, selection: Selection, parts: list[Part], out: Path, num_proc: int) -> None:
    """The selected rows, labelled with their language, task, source and template, saved to ``out/dataset``."""
    from datasets import DatasetDict

    meta = [(p.source.language, p.source.task, p.source.label, p.template) for p in parts]
    splits = {name: _final_split(full, idx, meta, out / "_work" / f"{name}.arrow")
              for name, idx in (("train", selection.train), ("validation", selection.validation))}
    # an empty split still gets one (empty) shard, so that it loads back
    DatasetDict(splits).save_to_disk(str(out / DATASET_DIR), num_proc=num_proc if num_proc > 1 else None,
                                     num_shards={k: 1 for k, v in splits.items() if len(v) == 0})


SAVE_CHUNK_ROWS = 100_000


def _final_split(full, idx: np.ndarray, meta: list, path: Path):
    """Rows ``idx`` of the rendered rows, in that order, with their part's labels, written to ``path`` (an Arrow
    file, memory-mapped back). Arrow ``take`` and a lookup per part do in bulk what ``flatten_indices`` and a
    labelling ``map`` did batch by batch (they cast every 1,000-row batch again: most of a large build's time)."""
    import pyarrow as pa
    from datasets import Dataset

    table = full.data.table.select(["inputs", "targets", "choices", "_pid"])
    labels = {c: pa.array([m[k] for m in meta], pa.string()) for k, c in enumerate(("language", "task", "source",
                                                                                    "template"))}
    schema = output_features().arrow_schema
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for start in range(0, len(idx), SAVE_CHUNK_ROWS):
            rows = table.take(pa.array(idx[start:start + SAVE_CHUNK_ROWS]))
            pid = rows.column("_pid").combine_chunks()
            columns = {"inputs": rows.column("inputs"), "targets": rows.column("targets"),
                       **{c: lab.take(pid) for c, lab in labels.items()}, "choices": rows.column("choices")}
            writer.write_table(pa.table({c: columns[c] for c in COLUMNS}, schema=schema))
    return Dataset.from_file(str(path))
