"""Evaluation rows from a local folder, in whichever public layout it holds, detected from its files.

``--data-dir TASK=FOLDER`` accepts, for each task, the release files as the dataset's authors ship them and a
snapshot of the task's Hub repository:

- XCOPA (cambridgeltl/xcopa): ``data/<lang>/val.<lang>.jsonl`` and ``test.<lang>.jsonl``.
- XNLI 1.0 (the XNLI-1.0 zip): ``xnli.dev.tsv`` / ``xnli.test.tsv``, every language in one file.
- SuperGLUE (its per-task zips): ``CB/val.jsonl``, ``RTE/val.jsonl``, ``COPA/val.jsonl`` (string labels).
- ANLI (anli_v1.0): ``R1/dev.jsonl`` .. ``R3/dev.jsonl`` (context, hypothesis, label e/n/c).
- WinoGrande (winogrande_1.1): ``dev.jsonl``, its answers inline or in ``dev-labels.lst``.
- XWinograd (the release BLOOMZ evaluated on): ``data/<lang>/test.jsonl``.
- StoryCloze and XStoryCloze: the release CSV/TSV files with the original column names.
- A Hub snapshot: parquet or JSON files, listed by README.md's ``configs:`` section when it has one, otherwise
  found as ``<config>/<split>-*.parquet`` (or .json/.jsonl), also under ``data/``.

Only the files of the evaluated split are opened. Every row comes with where it was read ("FILE:LINE" for text
files, "FILE row N" for parquet), so a corrupt row is reported by file and line. The files are read here with
the standard json/csv modules and pyarrow rather than ``datasets.load_dataset``: the latter prepares every split
of a config (a corrupt test file breaks a validation run) and its errors lose the file and line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.hubdata import load_arguments

# A row and where it was read: ("FILE:LINE" or "FILE row N", {column: value}).
Located = tuple[str, dict]

# Column names of the original StoryCloze CSV -> the names the Hub copies use.
STORY_CSV_COLUMNS = {
    "InputStoryid": "story_id", "InputSentence1": "input_sentence_1", "InputSentence2": "input_sentence_2",
    "InputSentence3": "input_sentence_3", "InputSentence4": "input_sentence_4",
    "RandomFifthSentenceQuiz1": "sentence_quiz1", "RandomFifthSentenceQuiz2": "sentence_quiz2",
    "AnswerRightEnding": "answer_right_ending",
}
# Label strings of the releases -> the label integers of the Hub copies (their ClassLabel order).
NLI_LABELS = {"entailment": 0, "neutral": 1, "contradiction": 2}  # XNLI
ANLI_LABELS = {"e": 0, "n": 1, "c": 2}
SUPERGLUE_LABELS = {"cb": {"entailment": 0, "contradiction": 1, "neutral": 2},
                    "rte": {"entailment": 0, "not_entailment": 1}}
# How each release names the split we evaluate.
RELEASE_SPLIT = {"validation": ("val", "dev"), "eval": ("eval",), "test": ("test",)}
SNAPSHOT_SUFFIXES = (".parquet", ".jsonl", ".json")  # a Hub snapshot split's data files


# ---- readers: one file -> located rows -------------------------------------------------------------------------
def read_jsonl(path: Path) -> Iterator[Located]:
    """JSON lines (or one JSON array), each row with its line (item) number."""
    with open(path, encoding="utf-8") as f:
        head = f.read(1)
        while head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":
            try:
                items = json.load(f)
            except json.JSONDecodeError as err:
                raise BloomzTuneError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from err
            yield from ((f"{path} item {i}", _object(item, f"{path} item {i}")) for i, item in enumerate(items, 1))
            return
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise BloomzTuneError(f"{path}:{number}: not valid JSON: {err.msg}") from err
            yield f"{path}:{number}", _object(row, f"{path}:{number}")


def _object(row, where: str) -> dict:
    if not isinstance(row, dict):
        raise BloomzTuneError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def read_parquet(path: Path) -> Iterator[Located]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches()
        number = 0
        for batch in batches:
            for row in batch.to_pylist():
                number += 1
                yield f"{path} row {number}", row
    except (OSError, pa.ArrowException) as err:  # a missing file; ArrowInvalid (a ValueError) for a corrupt one
        raise BloomzTuneError(f"{path}: not a readable parquet file: {err}") from err


def read_delimited(path: Path, quoting: int = csv.QUOTE_MINIMAL) -> Iterator[Located]:
    """CSV, or TSV by suffix, with a header row; each row with its line number."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ",", quoting=quoting)
        for row in reader:
            if None in row or None in row.values():
                raise BloomzTuneError(f"{path}:{reader.line_num}: expected {len(reader.fieldnames)} fields "
                                      f"({', '.join(reader.fieldnames)}), the row has a different number")
            yield f"{path}:{reader.line_num}", row


def read_any(path: Path) -> Iterator[Located]:
    if path.suffix == ".parquet":
        return read_parquet(path)
    if path.suffix in (".csv", ".tsv"):
        return read_delimited(path)
    return read_jsonl(path)


# ---- layouts ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """One way a folder may hold a task's data: how its files are found and turned into Hub-schema rows."""

    description: str  # shown when a folder matches no layout
    find: Callable[[Path, object, str], list[Path]]  # (folder, task spec, language) -> the split's files
    rows: Callable[[list[Path], object, str], Iterator[Located]]  # (files, task spec, language) -> rows


def _glob(folder: Path, *patterns: str) -> list[Path]:
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def _plain(files, spec, language) -> Iterator[Located]:
    return chain.from_iterable(read_any(p) for p in files)


def _convert(files, convert: Callable[[dict], dict | None], reader=read_any) -> Iterator[Located]:
    """Rows through ``convert`` (None: not this language); a value it cannot map is reported with the row."""
    for where, row in chain.from_iterable(reader(p) for p in files):
        try:
            out = convert(row)
        except (KeyError, TypeError, ValueError) as err:
            raise BloomzTuneError(f"{where}: cannot read this row ({type(err).__name__}: {err})") from err
        if out is not None:
            yield where, out


def _label(table: dict, value):
    if value not in table:
        raise ValueError(f"label {value!r} is none of {', '.join(table)}")
    return table[value]


def _xnli_rows(files, spec, language):
    def convert(row):
        if row["language"] != language:
            return None
        return {"premise": row["sentence1"], "hypothesis": row["sentence2"],
                "label": _label(NLI_LABELS, row["gold_label"])}
    # XNLI's TSV holds unescaped quotes: read it as its Hub loader does, without quoting.
    return _convert(files, convert, lambda p: read_delimited(p, csv.QUOTE_NONE))


def _superglue_rows(files, spec, language):
    labels = SUPERGLUE_LABELS.get(spec.name)
    return _convert(files, lambda row: {**row, "label": _label(labels, row["label"]) if labels else row["label"]})


def _anli_rows(files, spec, language):
    return _convert(files, lambda row: {"premise": row["context"], "hypothesis": row["hypothesis"],
                                        "label": _label(ANLI_LABELS, row["label"])})


def _winogrande_rows(files, spec, language):
    for path in files:
        labels_file = path.with_name(f"{path.stem}-labels.lst")
        labels = labels_file.read_text(encoding="utf-8").split() if labels_file.is_file() else None
        for index, (where, row) in enumerate(read_jsonl(path)):
            if "answer" not in row and labels is not None:
                if index >= len(labels):
                    raise BloomzTuneError(f"{where}: {labels_file} has only {len(labels)} labels")
                row = {**row, "answer": labels[index]}
            yield where, row


def _story_rows(files, spec, language):
    return _convert(files, lambda row: {STORY_CSV_COLUMNS.get(k, k): v for k, v in row.items()})


def _split_names(spec) -> tuple[str, ...]:
    return RELEASE_SPLIT.get(spec.split, (spec.split,))


def _story_files(folder, spec, language):
    files = [p for p in _glob(folder, "**/*.csv", "**/*.tsv") if any(k in p.name.lower() for k in _split_names(spec))]
    if spec.name == "xstorycloze":  # spring2016.val.<lang>.tsv.split_20_80_eval.tsv
        files = [p for p in files if f".{language}." in p.name or p.parent.name == language]
    return files


def _superglue_files(folder, spec, language):
    return [p for p in _glob(folder, "**/val.jsonl") if p.parent.name.lower() == spec.name]


RELEASES: dict[str, Layout] = {
    "xcopa": Layout("XCOPA release: data/<lang>/val.<lang>.jsonl, test.<lang>.jsonl",
                    lambda folder, spec, lang: _glob(folder, *(f"**/{lang}/{s}.{lang}.jsonl"
                                                              for s in _split_names(spec))), _plain),
    "xnli": Layout("XNLI 1.0 release: xnli.dev.tsv, xnli.test.tsv",
                   lambda folder, spec, lang: _glob(folder, *(f"**/xnli.{s}.tsv" for s in _split_names(spec))),
                   _xnli_rows),
    **{name: Layout(f"SuperGLUE release: {name.upper()}/val.jsonl", _superglue_files, _superglue_rows)
       for name in ("cb", "rte", "copa")},
    **{f"anli_r{r}": Layout(f"ANLI release: R{r}/dev.jsonl",
                            lambda folder, spec, lang, r=r: _glob(folder, f"**/R{r}/dev.jsonl"), _anli_rows)
       for r in (1, 2, 3)},
    "winogrande": Layout("WinoGrande release: dev.jsonl (with dev-labels.lst when its rows have no answer)",
                         lambda folder, spec, lang: _glob(folder, *(f"**/{s}.jsonl" for s in _split_names(spec))),
                         _winogrande_rows),
    "xwinograd": Layout("XWinograd release: data/<lang>/test.jsonl",
                        lambda folder, spec, lang: _glob(folder, f"**/{lang}/test.jsonl"), _plain),
    "xstorycloze": Layout("XStoryCloze release: spring2016.val.<lang>.tsv.split_20_80_eval.tsv", _story_files,
                          _story_rows),
    "storycloze": Layout("StoryCloze release: the validation CSV (cloze_test_val__spring2016 ...csv)", _story_files,
                         _story_rows),
}


# ---- Hub snapshots ----------------------------------------------------------------------------------------------
def readme_configs(folder: Path) -> list[dict] | None:
    """The ``configs:`` section of a dataset card's YAML header, or None when there is none."""
    import yaml

    card = folder / "README.md"
    if not card.is_file():
        return None
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return None
    header = text.split("---", 2)[1] if text.count("---") >= 2 else ""
    try:
        meta = yaml.safe_load(header) or {}
    except yaml.YAMLError as err:
        raise BloomzTuneError(f"{card}: its YAML header does not parse: {err}") from err
    configs = meta.get("configs") if isinstance(meta, dict) else None
    return configs if isinstance(configs, list) and configs else None


def _card_split_files(folder: Path, configs: list[dict], spec, language: str) -> list[Path]:
    """The files that README.md's ``configs:`` list for the task's config and split."""
    config = spec.configs[language]
    names = [str(c.get("config_name", "default")) for c in configs]  # YAML reads a name like 2016 as a number
    if config is None:  # the default config: marked, named "default", or the only one
        marked = [c for c in configs if c.get("default")]
        chosen = marked[0] if marked else next((c for c, n in zip(configs, names) if n == "default"),
                                               configs[0] if len(configs) == 1 else None)
    else:
        chosen = next((c for c, n in zip(configs, names) if n == config), None)
    if chosen is None:
        raise BloomzTuneError(f"{folder / 'README.md'}: no config {config or 'default'!r} for {spec.title} "
                              f"{language}; its configs: {', '.join(map(str, names))}")
    entries = chosen.get("data_files", [])
    if isinstance(entries, (str, dict)):
        entries = [entries]
    by_split: dict[str, list[str]] = {}
    for entry in entries:
        split, paths = (entry.get("split", "train"), entry.get("path")) if isinstance(entry, dict) else ("train", entry)
        by_split.setdefault(split, []).extend([paths] if isinstance(paths, str) else paths or [])
    if spec.split not in by_split:
        raise BloomzTuneError(f"{folder}: no split {spec.split!r} for {spec.title} {language} (config {config!r}); "
                              f"README.md lists: {', '.join(by_split) or 'none'}")
    base = folder / chosen.get("data_dir", "")
    files = _glob(base, *by_split[spec.split])
    if not files:
        raise BloomzTuneError(f"{folder}: README.md lists {', '.join(by_split[spec.split])} for {spec.title} "
                              f"{language} split {spec.split!r}, but no such file is there")
    return files


def _snapshot_files(folder: Path, spec, language: str) -> list[Path]:
    """Without a card: ``[data/]<config>/<split>-*.parquet`` (or json/jsonl) files."""
    config, split = spec.configs[language], spec.split
    found = []
    for path in _glob(folder, "**/*"):
        rel = path.relative_to(folder)
        stem = path.name.split(".")[0]
        if path.suffix in SNAPSHOT_SUFFIXES and (stem == split or stem.startswith(split + "-")) \
                and (config is None or config in rel.parts[:-1]):
            found.append(path)
    return found


HUB_SNAPSHOT = ("Hub snapshot: README.md with a configs: section listing the data files, or "
                "[data/]<config>/<split>-*.parquet (or .json/.jsonl) files")


# ---- entry points -----------------------------------------------------------------------------------------------
def local_rows(folder, spec, language: str) -> Iterator[Located]:
    """The rows of ``spec``'s split for ``language`` from a local folder, in the Hub schema, located."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BloomzTuneError(f"data folder for {spec.name} does not exist: {folder}")
    configs = readme_configs(folder)
    if configs is not None:
        files = _card_split_files(folder, configs, spec, language)
        return _plain(files, spec, language)
    release = RELEASES.get(spec.name)
    files = release.find(folder, spec, language) if release else []
    if files:
        return release.rows(files, spec, language)
    files = _snapshot_files(folder, spec, language)
    if files:
        return _plain(files, spec, language)
    raise BloomzTuneError(_unrecognised(folder, spec, language, release))


def _unrecognised(folder: Path, spec, language: str, release: Layout | None) -> str:
    present = [str(p.relative_to(folder)) for p in _glob(folder, "**/*")]
    shown = ", ".join(present[:8]) + (f", ... ({len(present)} files)" if len(present) > 8 else "")
    accepted = ([release.description] if release else []) + ([HUB_SNAPSHOT] if spec.path or spec.aliases else [])
    return (f"{folder}: no {spec.title} data for {language} (split {spec.split!r}) in a layout I know. Accepted: "
            f"{'; '.join(accepted)}. Found: {shown or 'no files'} (a folder with some languages only: name them "
            f"with --languages)")


def hub_rows(spec, language: str) -> Iterator[Located]:
    """The rows of ``spec``'s split for ``language`` from the Hub (or its cache), through ``datasets``."""
    import datasets

    config = spec.configs[language]
    try:
        ds = datasets.load_dataset(**load_arguments(spec.path, config, spec.revision), split=spec.split)
    except ValueError as err:
        text = str(err)
        if "split" in text.lower():
            raise BloomzTuneError(f"{spec.path}: no split {spec.split!r} for {spec.title} {language} "
                                  f"(config {config!r}): {text}") from err
        raise BloomzTuneError(f"{spec.path}: cannot load config {config!r} for {spec.title} {language}: "
                              f"{text}") from err
    except Exception as err:  # noqa: BLE001 - datasets raises many kinds (offline, gated, missing repo)
        raise BloomzTuneError(f"cannot load {spec.title} ({spec.path}@{spec.revision or 'main'}, config {config!r}, "
                              f"split {spec.split!r}): "
                              f"{type(err).__name__}: {err}. "
                              + (spec.manual.format(name=spec.name) if spec.manual else
                                 f"Without network, download it and pass --data-dir {spec.name}=FOLDER.")) from err
    return ((f"{spec.path} ({config}, {spec.split}) row {i}", row) for i, row in enumerate(ds, 1))
