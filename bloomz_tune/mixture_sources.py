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

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.eval_tasks import _words, held_out_in_name, held_out_task
from bloomz_tune.mixture_spec import BLOOM_LANGUAGES, MixtureSpec, SourceSpec
from bloomz_tune.runtime import print0
from bloomz_tune.templates import PromptTemplate, RowFilter


# Our language code -> the release codes it is published under (ISO 639-3 + ISO 15924 script, as FLORES-200,
# xP3x and the Aya collection name them). xP3x files code by programming language (xmtf create_xp3x.py).
RELEASE_CODES: dict[str, tuple[str, ...]] = {
    "ak": ("aka_Latn",), "ar": ("arb_Arab", "ara_Arab"), "as": ("asm_Beng",), "bm": ("bam_Latn",),
    "bn": ("ben_Beng",), "ca": ("cat_Latn",), "en": ("eng_Latn",), "es": ("spa_Latn",), "eu": ("eus_Latn",),
    "fon": ("fon_Latn",), "fr": ("fra_Latn",), "gu": ("guj_Gujr",), "hi": ("hin_Deva",), "id": ("ind_Latn",),
    "ig": ("ibo_Latn",), "ki": ("kik_Latn",), "kn": ("kan_Knda",), "lg": ("lug_Latn",), "ln": ("lin_Latn",),
    "ml": ("mal_Mlym",), "mr": ("mar_Deva",), "ne": ("npi_Deva", "nep_Deva"), "nso": ("nso_Latn",),
    "ny": ("nya_Latn",), "or": ("ory_Orya", "ori_Orya"), "pa": ("pan_Guru",), "pt": ("por_Latn",),
    "rn": ("run_Latn",), "rw": ("kin_Latn",), "sn": ("sna_Latn",), "st": ("sot_Latn",),
    "sw": ("swh_Latn", "swa_Latn"), "ta": ("tam_Taml",), "te": ("tel_Telu",), "tn": ("tsn_Latn",),
    "ts": ("tso_Latn",), "tum": ("tum_Latn",), "tw": ("twi_Latn",), "ur": ("urd_Arab",), "vi": ("vie_Latn",),
    "wo": ("wol_Latn",), "xh": ("xho_Latn",), "yo": ("yor_Latn",), "zh": ("zho_Hans", "zho_Hant", "cmn_Hans"),
    "zu": ("zul_Latn",), "code": ("code", "python", "java", "jupyter-notebook"),
}
_OURS = {code.lower(): ours for ours, codes in RELEASE_CODES.items() for code in codes}
_OURS_BY_BASE = {code.split("_")[0].lower(): ours for ours, codes in RELEASE_CODES.items() for code in codes}

# Evaluation sets that xP3all adds beside BLOOMZ's held-out tasks (its card: WSC (Fixed), HellaSwag; T0 held them
# out too), as the words of their names; xP3 has neither.
XP3ALL_EVALUATION_EXTRAS = {"super glue wsc": "SuperGLUE WSC (super_glue/wsc.fixed)", "hellaswag": "HellaSwag"}
XP3_SPLITS = ("train", "validation", "test", "dev", "devtest", "eval", "val")
LAYOUTS = {
    "xp3": "<path>/<language>/xp3_<dataset>_<subset>_<split>_<prompt>.jsonl (xP3, xP3mt, xP3all)",
    "xp3x": "<path>/[data/]<lang_Script>/*.jsonl or <path>/<lang_Script>.jsonl with columns inputs, targets, "
            "language, split, template, dataset, config",
    "aya_collection": "<path>/[<source>/]*.parquet with columns inputs, targets, dataset_name, sub_dataset_name, "
                      "template_id, language, script, split",
    "aya_dataset": "<path>/[data/]<split>-*.parquet with columns inputs, targets, language_code, annotation_type",
}
GROUP_COLUMNS = {
    "xp3x": ("language", "dataset", "config", "split", "template"),
    "aya_collection": ("language", "script", "dataset_name", "sub_dataset_name", "split", "template_id"),
    "aya_dataset": ("language_code", "annotation_type"),
}


def our_language(code: str | None) -> str | None:
    """Our code for a release's language code (``fra_Latn``, ``fra``, ``python``), or None outside BLOOM's."""
    if not code:
        return None
    code = str(code).strip().lower()
    return _OURS.get(code) or (_OURS_BY_BASE.get(code) if "_" not in code else None)


def release_codes(language: str) -> set[str]:
    """The release codes a source's ``language`` is read from (lower case): BLOOM's through ``RELEASE_CODES``,
    any other as written (the release's own code, for a source that allows non-BLOOM languages)."""
    return {c.lower() for c in RELEASE_CODES.get(language, (language,))}


def passthrough(name: str, file: str) -> PromptTemplate:
    """A 'template' that passes a published row's inputs and targets through: it names the release's prompt."""
    return PromptTemplate(name=name, file=file, input="{{ inputs if inputs is not none else '' }}",
                          target="{{ targets if targets is not none else '' }}")


# -- checks with the spec ------------------------------------------------------------------------------------

def release_source_problems(where: str, src: SourceSpec, spec_dir: Path | None, include_held_out: bool) -> list[str]:
    """What is wrong with a release source before anything is read: its keys, its language, its folder, and
    (xP3) evaluation files among the files it would read."""
    out = [f"{where}.{key}: a `format: {src.format}` source takes no `{key}` (its rows are already prompted and "
           f"its files are found by language)" for key in ("template_file", "templates", "data_files", "data_dir",
                                                          "name") if getattr(src, key)]
    if src.streaming:
        out.append(f"{where}.streaming: a `format: {src.format}` source reads local files; it cannot be streamed")
    if src.language not in BLOOM_LANGUAGES and not src.allow_non_bloom_languages:
        out.append(f"{where}.language: source {src.label!r} asks for {src.language!r}, which is not one of BLOOM's "
                   f"languages (docs/bloomz.md §1.1); set `allow_non_bloom_languages: true` on the source to read "
                   f"it (named by the release's code, e.g. deu_Latn)")
    if not src.language.strip() or any(c in src.language for c in "/\\ *?"):
        out.append(f"{where}.language: must be a language code, got {src.language!r}")
        return out
    root = release_root(src, spec_dir)
    if not root.exists():  # not downloaded yet: the build says so (a shipped spec validates without the files)
        return out
    if not root.is_dir():
        return out + [f"{where}.path: {missing_folder(src, root)}"]
    if src.format == "xp3":
        files = xp3_files(root, src.language)
        if not files:
            return out + [f"{where}.path: {root / src.language} holds no xp3_*.jsonl files (layout: "
                          f"{LAYOUTS['xp3']})"]
        if not include_held_out and src.held_out == "refuse":
            held = next(((f, t) for f in files if (t := held_out_name(f.name))), None)
            if held:
                out.append(f"{where}: {held_out_message(src, held[0].relative_to(root), held[1])}")
    return out


def release_root(src: SourceSpec, spec_dir: Path | None) -> Path:
    return Path(src.loader_kwargs(spec_dir)["path"])


def missing_folder(src: SourceSpec, root: Path) -> str:
    return (f"{root} is not a folder; a `format: {src.format}` source reads a local copy of the release (download "
            f"it first, e.g. `hf download <repo> --repo-type dataset --local-dir {root}`), laid out as "
            f"{LAYOUTS[src.format]}")


def held_out_name(text: str) -> str | None:
    """The held-out evaluation dataset a name shows (file name, dataset/config), as 'title (id)', or None."""
    task = held_out_in_name(text)
    if task is not None:
        return f"{task.title} ({task.path or ', '.join(task.aliases)})"
    words = f" {_words(text)} "
    return next((title for key, title in XP3ALL_EVALUATION_EXTRAS.items() if f" {key} " in words), None)


def held_out_message(src: SourceSpec, file, dataset: str) -> str:
    return (f"source {src.label!r}: {file} holds the held-out evaluation dataset {dataset}; BLOOMZ never trains "
            f"on it (docs/bloomz.md §1.3). Leave it out with `held_out: skip` on the source, or set "
            f"`include_held_out: true` for an xP3all-style mixture")


# -- finding the files -----------------------------------------------------------------------------------------

def xp3_files(root: Path, language: str) -> list[Path]:
    """xP3's files for one language: ``<root>/<language>/xp3_*.jsonl`` (merged_<lang>.jsonl copies are not read)."""
    return sorted(p for p in (root / language).glob("xp3_*.jsonl") if p.is_file())


def xp3_name_parts(file: Path) -> tuple[str, str, str]:
    """(dataset, split, prompt) from an xP3 file name: ``xp3_<dataset>_<subset>_<split>_<prompt>.jsonl`` with
    '/', '-' and ' ' already turned into '_' by the release (so the names are as lossy as the file's). The first
    split word after the dataset divides them; a subset of None is dropped."""
    words = file.stem.removeprefix("xp3_").split("_")
    at = next((i for i, w in enumerate(words) if i > 0 and w in XP3_SPLITS), None)
    if at is None:
        return file.stem, "train", "published"
    dataset = words[:at] if words[at - 1] != "None" else words[:at - 1]
    return "_".join(dataset), words[at], "_".join(words[at + 1:]) or "published"


def release_files(root: Path, fmt: str, language: str) -> list[Path]:
    """A release's data files that may hold the language (all of them when the layout does not name it)."""
    suffix = ".jsonl" if fmt == "xp3x" else ".parquet"
    files = sorted(p for p in root.rglob(f"*{suffix}") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if fmt != "xp3x":
        return files
    codes = release_codes(language)
    named = [p for p in files if {part.lower() for part in (*p.relative_to(root).parent.parts, p.stem)} & codes]
    lang_script = re.compile(r"[a-z]{2,3}_[A-Z][a-z]{3}")
    coded = [p for p in files
             if any(lang_script.fullmatch(part) for part in (*p.relative_to(root).parent.parts, p.stem))]
    return named if coded else files


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
        from bloomz_tune.mixture_build import local_file_problem
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
