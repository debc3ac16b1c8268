"""Mixture sources in the layouts that BLOOMZ and its successors published: xP3 (xP3mt, xP3all), xP3x, the Aya
collection and the Aya dataset, read from a local copy of their files (a source's ``format``).

Their rows are already prompted (``inputs``, ``targets``). What a row is — its source dataset, its prompt, its
split, its language — is told by the release: xP3 by its file names (``<lang>/xp3_<dataset>_<subset>_<split>_
<prompt>.jsonl``, docs/bloomz.md §1.1), xP3x and the Aya collection by columns of each row, the Aya dataset by
its ``annotation_type``. A release source becomes one build part per (dataset, prompt, split): the mixture's
``source`` and ``template`` columns name them, and the per-(source, split, template) cap applies to each.

Languages: a source reads one of our languages (ISO 639-1 as xP3, or ``code``), found under the release's own
codes (ISO 639-3 plus script, ``fra_Latn``; Aya: ``fra`` and ``Latn``) through ``RELEASE_CODES``. A language
outside BLOOM's is refused unless the source sets ``allow_non_bloom_languages``; it is then named by the
release's code. Evaluation data inside a release (xP3all's evaluation files, xP3x rows of XNLI, an Aya
sub-dataset of XCOPA, ...) is refused, or left out with ``held_out: skip``, unless ``include_held_out``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.languages import our_language, release_codes
from bloomz_tune.mixture.releases import (
    GROUP_COLUMNS,
    LAYOUTS,
    held_out_message,
    held_out_name,
    missing_folder,
    release_files,
    release_root,
    xp3_files,
    xp3_name_parts,
)
from bloomz_tune.mixture.spec import MixtureSpec, SourceSpec
from bloomz_tune.mixture.templates import PromptTemplate, RowFilter
from bloomz_tune.runtime import print0
from bloomz_tune.tasks.releases import read_any
from bloomz_tune.tasks.table import held_out_task

# Our language code -> the release codes it is published under (ISO 639-3 + ISO 15924 script, as FLORES-200,
# xP3x and the Aya collection name them). xP3x files code by programming language (xmtf create_xp3x.py).

# Evaluation sets that xP3all adds beside BLOOMZ's held-out tasks (its card: WSC (Fixed), HellaSwag; T0 held them
# out too), as the words of their names; xP3 has neither.


def passthrough(name: str, file: str) -> PromptTemplate:
    """A 'template' that passes a published row's inputs and targets through: it names the release's prompt."""
    return PromptTemplate(name=name, file=file, input="{{ inputs if inputs is not none else '' }}",
                          target="{{ targets if targets is not none else '' }}")


# -- checks with the spec ------------------------------------------------------------------------------------


# -- finding the files -----------------------------------------------------------------------------------------


# -- reading -----------------------------------------------------------------------------------------------------

@dataclass
class ReleasePart:
    """One (dataset, prompt, split) of a release source: the rows, and the source copy that names them."""

    spec: SourceSpec
    template: PromptTemplate
    split: str
    rows: Any  # a datasets.Dataset


def read_release(spec: MixtureSpec, index: int, src: SourceSpec, work: Path) -> list[ReleasePart]:
    """Every (dataset, prompt, split) of a release source, its filter applied; held-out data refused or left out."""
    root = release_root(src, spec.spec_dir)
    if not root.is_dir():
        raise BloomzTuneError(f"source {src.label!r}: {missing_folder(src, root)}")
    wanted = None if src.splits == ["all"] else set(src.splits)
    parts, skipped = [], []
    files = xp3_files(root, src.language) if src.format == "xp3" else release_files(root, src.format, src.language)
    for k, file in enumerate(files):
        rows = _load_file(src, file)
        _check_columns(src, file, rows, ("inputs", "targets", *GROUP_COLUMNS.get(src.format, ())))
        if src.filter:
            rows = rows.filter(RowFilter(src.filter), cache_file_name=str(work / f"release{index}-{k}.arrow"),
                               load_from_cache_file=False, desc=f"filter {file.name}").flatten_indices(
                cache_file_name=str(work / f"release{index}-{k}-kept.arrow"))  # grouping reads the kept rows
        for dataset, split, prompt, held, rows_part in _file_parts(src, root, file, rows):
            if wanted is not None and split not in wanted:
                continue
            if held and not spec.include_held_out:
                if src.held_out == "skip":
                    skipped.append(f"{file.relative_to(root)} ({dataset})")
                    continue
                raise BloomzTuneError(held_out_message(src, f"{file} ({dataset})", held))
            part_src = replace(src, label=dataset, splits=[split], filter=None)
            parts.append(ReleasePart(part_src, passthrough(prompt, str(file)), split, rows_part))
    if skipped:
        print0(f"source {src.label!r}: left out held-out evaluation data: {', '.join(skipped[:5])}"
              f"{f' and {len(skipped) - 5} more' if len(skipped) > 5 else ''}")
    if not parts:
        raise BloomzTuneError(f"source {src.label!r}: no rows of language {src.language!r} (release codes "
                              f"{', '.join(sorted(release_codes(src.language)))}) and splits "
                              f"{', '.join(src.splits)} under {root} (layout: {LAYOUTS[src.format]})")
    return parts


def _file_parts(src: SourceSpec, root: Path, file: Path, rows):
    """(dataset, split, prompt, held-out dataset or None, rows) for each part of one file."""
    if src.format == "xp3":
        dataset, split, prompt = xp3_name_parts(file)
        yield dataset, split, prompt, held_out_name(file.name), rows
        return
    for key, index in _groups(rows, GROUP_COLUMNS[src.format]).items():
        values = dict(zip(GROUP_COLUMNS[src.format], key))
        language = (f"{values['language']}_{values['script']}" if src.format == "aya_collection"
                    else values.get("language") or values.get("language_code"))
        if not _is_language(language, src.language):
            continue
        if src.format == "xp3x":
            dataset, config = values["dataset"], values["config"]
            name, split, prompt = f"{dataset}/{config}" if config else dataset, values["split"], values["template"]
            held = _held_out_dataset(dataset, config)
        elif src.format == "aya_collection":
            dataset, sub = values["dataset_name"], values["sub_dataset_name"]
            name = f"{dataset}/{sub}" if sub and sub != "-" else dataset
            split, prompt = values["split"], f"template_{values['template_id']}"
            held = _held_out_dataset(dataset, sub) or held_out_name(str(file.relative_to(root).parent))
        else:  # the Aya dataset: human-written rows, one file per split
            name, split, prompt, held = src.dataset or root.name, file.name.split("-")[0], values["annotation_type"], None
        yield name, split or "train", prompt or "published", held, rows.select(index)


def _is_language(code: str | None, language: str) -> bool:
    if not code:
        return False
    code = str(code).lower()
    return code in release_codes(language) or our_language(code) == language


def _held_out_dataset(dataset: str | None, config: str | None) -> str | None:
    task = held_out_task(dataset or "", config or None)
    if task is not None:
        return f"{task.title} ({task.path or ', '.join(task.aliases)})"
    return held_out_name(f"{dataset or ''} {config or ''}")


def _groups(rows, columns) -> dict[tuple, np.ndarray]:
    """Row indices per distinct value of ``columns``, computed column-wise (Arrow dictionary codes), so that a
    file of millions of rows is grouped without a Python loop over its rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not len(rows):
        return {}
    codes, dictionaries = np.zeros(len(rows), dtype=np.int64), []
    for column in columns:
        values = pc.cast(rows.data.column(column).combine_chunks(), pa.string())
        encoded = values.dictionary_encode()
        index = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
        dictionaries.append([None, *encoded.dictionary.to_pylist()])
        codes = codes * len(dictionaries[-1]) + index
    uniques, inverse = np.unique(codes, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=len(uniques)))[:-1]
    groups = {}
    for code, index in zip(uniques, np.split(order, bounds)):
        key = []
        for dictionary in reversed(dictionaries):
            code, at = divmod(int(code), len(dictionary))
            key.append(dictionary[at])
        groups[tuple(reversed(key))] = index
    return groups


def _load_file(src: SourceSpec, file: Path):
    """One data file as a memory-mapped Dataset; a bad row is named with its file and line."""
    import datasets

    builder = "parquet" if file.suffix == ".parquet" else "json"
    if file.stat().st_size == 0:
        raise BloomzTuneError(f"source {src.label!r}: the data file {file} is empty")
    quiet = datasets.utils.logging.get_verbosity()
    datasets.utils.logging.set_verbosity(datasets.utils.logging.CRITICAL)
    try:
        return datasets.load_dataset(builder, data_files=str(file), split="train")
    except Exception as err:  # noqa: BLE001 - any loader failure becomes one clear message
        problem = local_file_problem({"path": builder, "data_files": [str(file)]})
        raise BloomzTuneError(f"source {src.label!r}: {problem or f'could not read {file} ({type(err).__name__})'}"
                              ) from None
    finally:
        datasets.utils.logging.set_verbosity(quiet)


def _check_columns(src: SourceSpec, file: Path, rows, needed) -> None:
    missing = [c for c in needed if c not in (rows.column_names or [])]
    if missing:
        raise BloomzTuneError(f"source {src.label!r}: {file} has no column(s) {', '.join(missing)} (a "
                              f"`format: {src.format}` file: {LAYOUTS[src.format]})")


LOADER_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet")  # the files datasets' local loaders read


def local_file_problem(kwargs: dict) -> str | None:
    """After a loader failure: the first local data file that is empty or has a bad row, named with its line."""

    base = Path(kwargs["path"])
    patterns = kwargs.get("data_files")
    if isinstance(patterns, dict):
        patterns = [p for value in patterns.values() for p in ([value] if isinstance(value, str) else value)]
    elif isinstance(patterns, str):
        patterns = [patterns]
    root = base if base.is_dir() else Path(".")
    if patterns:
        files = sorted({f for pattern in patterns for f in root.glob(pattern) if f.is_file()}) if not any(
            Path(p).is_absolute() for p in patterns) else sorted(Path(p) for p in patterns if Path(p).is_file())
    elif base.is_dir():
        files = sorted(f for f in base.rglob("*") if f.suffix in LOADER_SUFFIXES and f.is_file())
    else:
        return None
    for path in files:
        if path.stat().st_size == 0:
            return f"the data file {path} is empty"
        try:
            for _ in read_any(path):
                pass
        except BloomzTuneError as err:
            return str(err)
    return None
