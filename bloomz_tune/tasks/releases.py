"""Evaluation rows from a local folder, in whichever public layout it holds, detected from its files.

``--data-dir TASK=FOLDER`` accepts, for each task, the release files as the dataset's authors ship them and a
snapshot of the task's Hub repository. Each release layout names the exact files that hold a (language, split),
relative to the release's top folder: the folder given, or one folder inside it (an archive's
``<repo>-<branch>/``); sibling folders are never swept in:

- XCOPA (cambridgeltl/xcopa): ``data/<lang>/val.<lang>.jsonl`` and ``test.<lang>.jsonl``. The clone's
  ``data-gmt/`` holds English machine translations under the same names: never read, and refused when pointed at.
- XNLI 1.0 (the XNLI-1.0 zip): ``xnli.dev.tsv`` / ``xnli.test.tsv``, every language in one file.
- SuperGLUE (its per-task zips): ``CB/val.jsonl``, ``RTE/val.jsonl``, ``COPA/val.jsonl`` (string labels).
- ANLI (anli_v1.0): ``R1/dev.jsonl`` .. ``R3/dev.jsonl`` (context, hypothesis, label e/n/c).
- WinoGrande (winogrande_1.1): ``dev.jsonl``, its answers inline or in ``dev-labels.lst``.
- XWinograd: ``data/<lang>/test.jsonl`` (the repackaging BLOOMZ scored), or the crosslingual Winograd release's
  ``dataset.tsv`` (every language in one file), read into the same rows.
- XStoryCloze: ``spring2016.val.<lang>.tsv.split_20_80_eval.tsv``, one file per language (the ``_train`` files
  beside them are another split). StoryCloze: its 2016 validation CSV, told apart from XStoryCloze's files by name.
- A Hub snapshot: parquet or JSON files, listed by README.md's ``configs:`` section when it has one, otherwise
  found as ``<config>/<split>-*.parquet`` (or .json/.jsonl), also under ``data/``.

Two candidate files for one (language, split) are refused, naming both. A release's rows are counted against the
count its authors document (``TaskSpec.documented_rows``; dataset.tsv's own counts here): another count is an
error naming the file. Only the files of the evaluated split are opened. Every row comes with where it was read
("FILE:LINE" for text files, "FILE row N" for parquet), so a corrupt row is reported by file and line. The files
are read here with the standard json/csv modules and pyarrow rather than ``datasets.load_dataset``: the latter
prepares every split of a config (a corrupt test file breaks a validation run) and its errors lose the file and
line.
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
    """One release as its authors ship it: the exact files that hold a (language, split), how they read.

    ``patterns`` are paths relative to the release's top folder (the folder given, or one folder inside it, such
    as the ``<repo>-<branch>/`` folder an archive unpacks into); ``inner`` are paths relative to the folder given
    when it is itself the release's data folder, named ``inner_folder`` (``data/`` of a clone, ``RTE/`` of
    SuperGLUE). Both are ``str.format`` templates over ``lang``, ``split`` (the release's name of the split),
    ``name`` (the task name, upper-cased as SuperGLUE ships it) and ``r`` (ANLI's round)."""

    description: str  # shown when a folder matches no layout
    patterns: tuple[str, ...]
    rows: Callable[[list[Path], object, str], Iterator[Located]]  # (files, task spec, language) -> rows
    inner: tuple[str, ...] = ()
    inner_folder: str = ""
    counts: dict | None = None  # {split: rows or {language: rows}} when not the task's own ``documented_rows``


def _glob(folder: Path, *patterns: str) -> list[Path]:
    return sorted({p for pattern in patterns for p in folder.glob(pattern) if p.is_file()})


def _plain(files, spec, language) -> Iterator[Located]:
    return chain.from_iterable(read_any(p) for p in files)


def _convert(files, convert: Callable[[dict], dict | None], reader=read_any) -> Iterator[Located]:
    """Rows through ``convert`` (None: not this language); a value it cannot map is reported with the row."""
    for where, row in chain.from_iterable(reader(p) for p in files):
        try:
            out = convert(row)
        except (KeyError, TypeError, ValueError, IndexError) as err:
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


def read_columns(path: Path, header: bool) -> Iterator[tuple[str, list[str]]]:
    """A TSV read by position (no quoting: the releases hold unescaped quotes), with its line numbers."""
    with open(path, encoding="utf-8", newline="") as f:
        for number, line in enumerate(f, 1):
            if (header and number == 1) or not line.strip():
                continue
            yield f"{path}:{number}", line.rstrip("\r\n").split("\t")


def _xstory_rows(files, spec, language):
    """XStoryCloze's TSVs, by position: story id, four sentences, two endings, the right ending (1 or 2). The
    English file keeps StoryCloze's column names, the others do not, so the header is not read."""
    for path in files:
        for where, cells in read_columns(path, header=True):
            if len(cells) != 8:
                raise BloomzTuneError(f"{where}: expected 8 tab-separated fields (story id, 4 sentences, 2 endings, "
                                      f"answer), the row has {len(cells)}")
            yield where, dict(zip(STORY_CSV_COLUMNS.values(), cells))


def _storycloze_rows(files, spec, language):
    return _convert(files, lambda row: {STORY_CSV_COLUMNS.get(k, k): v for k, v in row.items()})


def _blank_pronoun(sentence: str, tokens: list[str], start: int, end: int) -> str:
    """``sentence`` with its tokens start..end (as dataset.tsv numbers them) replaced by "_"."""
    at, spans = 0, []
    for token in tokens:
        at = sentence.index(token, at)
        spans.append((at, at + len(token)))
        at += len(token)
    return sentence[:spans[start][0]] + "_" + sentence[spans[end - 1][1]:]


def _xwinograd_tsv_rows(files, spec, language):
    """The crosslingual Winograd release's ``dataset.tsv`` (no header): language, source, a mark, the sentence,
    its tokens, the pronoun (text, token span, tokens) and the candidates (text, span, tokens, correct), as JSON
    -> the Hub repackaging's row: the pronoun replaced by "_", the candidates as options, the answer "1"/"2"."""
    for path in files:
        for where, cells in read_columns(path, header=False):
            if cells[0] != language:
                continue
            try:
                tokens, pronoun, candidates = (json.loads(c) for c in cells[4:7])
                answer = [i for i, c in enumerate(candidates, 1) if c[3] is True]
                if len(candidates) != 2 or len(answer) != 1:
                    raise ValueError(f"expected two candidates, one of them right; got {candidates!r}")
                sentence = _blank_pronoun(cells[3], tokens, *pronoun[1])
            except (IndexError, ValueError, TypeError) as err:
                raise BloomzTuneError(f"{where}: not a dataset.tsv row ({type(err).__name__}: {err})") from err
            yield where, {"sentence": sentence, "option1": candidates[0][0], "option2": candidates[1][0],
                          "answer": str(answer[0])}


# dataset.tsv's rows per language, as its authors count them (3,961 in all); its zh set is 16 rows, where the Hub
# repackaging BLOOMZ scored has 504 from another source, so a zh score from it is not comparable with the paper's.
XWINOGRAD_TSV_ROWS = {"test": {"en": 2325, "fr": 83, "jp": 959, "pt": 263, "ru": 315, "zh": 16}}
STORYCLOZE_FILES = {"validation": "cloze_test_val__spring2016 - cloze_test_ALL_val.csv",
                    "test": "cloze_test_test__spring2016 - cloze_test_ALL_test.csv"}
XCOPA_TRANSLATIONS = "data-gmt"  # the XCOPA clone's English machine translations, in the data/ file names

RELEASES: dict[str, tuple[Layout, ...]] = {
    "xcopa": (Layout("XCOPA repository (a clone or its archive folder): data/<lang>/val.<lang>.jsonl, "
                     "test.<lang>.jsonl", ("data/{lang}/{split}.{lang}.jsonl",), _plain,
                     ("{lang}/{split}.{lang}.jsonl",), "data"),),
    "xnli": (Layout("XNLI 1.0 release (XNLI-1.0/): xnli.dev.tsv, xnli.test.tsv", ("xnli.{split}.tsv",), _xnli_rows),),
    **{name: (Layout(f"SuperGLUE release: {name.upper()}/val.jsonl", ("{name}/{split}.jsonl",), _superglue_rows,
                     ("{split}.jsonl",), name.upper()),) for name in ("cb", "rte", "copa")},
    **{f"anli_r{r}": (Layout(f"ANLI release (anli_v1.0/): R{r}/dev.jsonl", (f"R{r}/dev.jsonl",), _anli_rows,
                             ("dev.jsonl",), f"R{r}"),) for r in (1, 2, 3)},
    "winogrande": (Layout("WinoGrande release (winogrande_1.1/): dev.jsonl (with dev-labels.lst when its rows have "
                          "no answer)", ("{split}.jsonl",), _winogrande_rows),),
    "xwinograd": (Layout("XWinograd as BLOOMZ scored it (Muennighoff/xwinograd): data/<lang>/test.jsonl",
                         ("data/{lang}/test.jsonl",), _plain, ("{lang}/test.jsonl",), "data"),
                  Layout("crosslingual Winograd release: dataset.tsv (every language in one file)", ("dataset.tsv",),
                         _xwinograd_tsv_rows, counts=XWINOGRAD_TSV_ROWS)),
    "xstorycloze": (Layout("XStoryCloze release: spring2016.val.<lang>.tsv.split_20_80_eval.tsv",
                           ("spring2016.val.{lang}.tsv.split_20_80_{split}.tsv",), _xstory_rows),),
    "storycloze": (Layout(f"StoryCloze release: {STORYCLOZE_FILES['validation']!r}",
                          ("{storycloze}",), _storycloze_rows),),
}


def _split_names(spec) -> tuple[str, ...]:
    return RELEASE_SPLIT.get(spec.split, (spec.split,))


def _top_folders(folder: Path) -> list[Path]:
    """The folder, and each folder directly inside it (an archive's ``<repo>-<branch>/``, ``XNLI-1.0/``, ...)."""
    inside = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX")))
    return [folder, *inside]


def release_files(folder: Path, layout: Layout, spec, language: str) -> list[Path]:
    """The files of ``layout`` that hold ``spec``'s split for ``language`` in ``folder``: exact paths, never a
    sibling folder's (translations, other languages, other splits)."""
    found = []
    for split in _split_names(spec):
        values = {"lang": language, "split": split, "name": spec.name.upper(),
                  "storycloze": STORYCLOZE_FILES.get(spec.split, "")}
        found += [top / p.format(**values) for top in _top_folders(folder) for p in layout.patterns]
        if layout.inner and folder.name.lower() == layout.inner_folder.lower():
            found += [folder / p.format(**values) for p in layout.inner]
    return sorted({p.resolve(): p for p in found if p.is_file()}.values())


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
@dataclass
class LocalData:
    """What was read from a local folder for one (task, language, split): the files, and each row located."""

    folder: Path
    files: list[Path]
    rows: list[Located]
    file_of_row: list[int]  # index into ``files`` for each row


def local_data(folder, spec, language: str) -> LocalData:
    """The rows of ``spec``'s split for ``language`` from a local folder, in the Hub schema, located; for a release
    layout, checked against the row count its authors document. Raises BloomzTuneError when the folder holds no
    known layout, two candidate files for the split, a count other than the documented one, or a corrupt row."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BloomzTuneError(f"data folder for {spec.name} does not exist: {folder}")
    configs = readme_configs(folder)
    if configs is not None:
        return _read(folder, _card_split_files(folder, configs, spec, language), _plain, spec, language)
    layouts = RELEASES.get(spec.name, ())
    found = [(layout, files) for layout in layouts if (files := release_files(folder, layout, spec, language))]
    candidates = [f for _, files in found for f in files]
    if spec.name == "xcopa" and XCOPA_TRANSLATIONS in folder.resolve().parts + tuple(
            part for f in candidates for part in f.resolve().parts):
        raise BloomzTuneError(f"{folder}: {XCOPA_TRANSLATIONS}/ holds English machine translations of XCOPA, not its "
                              f"{language} examples; pass the clone (or its data/ folder) as --data-dir xcopa=")
    if len(candidates) > 1:
        raise BloomzTuneError(f"{folder}: two candidate files for {spec.title} {language} (split {spec.split!r}): "
                              f"{', '.join(str(f.relative_to(folder)) for f in candidates)}; point --data-dir at "
                              f"the one to read")
    if found:
        layout, files = found[0]
        data = _read(folder, files, layout.rows, spec, language)
        _check_count(data, layout.counts or spec.documented_rows, spec, language)
        return data
    if spec.name == "storycloze" and _glob(folder, "**/spring2016.val.*.tsv.split_20_80_*.tsv"):
        raise BloomzTuneError(f"{folder} holds the XStoryCloze release, not StoryCloze's: its English eval file is "
                              f"1,511 of StoryCloze's 1,871 validation stories. Run --tasks xstorycloze --languages "
                              f"en on it, or pass the StoryCloze release ({STORYCLOZE_FILES['validation']!r})")
    files = _snapshot_files(folder, spec, language)
    if files:
        return _read(folder, files, _plain, spec, language)
    raise BloomzTuneError(_unrecognised(folder, spec, language, layouts))


def local_rows(folder, spec, language: str) -> Iterator[Located]:
    """``local_data``'s rows."""
    return iter(local_data(folder, spec, language).rows)


def _read(folder: Path, files: list[Path], rows, spec, language: str) -> LocalData:
    data = LocalData(folder, files, [], [])
    for i, path in enumerate(files):
        try:
            for located in rows([path], spec, language):
                data.rows.append(located)
                data.file_of_row.append(i)
        except (OSError, UnicodeDecodeError) as err:
            raise BloomzTuneError(f"{path}: cannot read it ({type(err).__name__}: {err})") from None
    return data


def _check_count(data: LocalData, counts: dict | None, spec, language: str) -> None:
    expected = (counts or {}).get(spec.split)
    expected = expected.get(language) if isinstance(expected, dict) else expected
    if expected is not None and len(data.rows) != expected:
        files = ", ".join(str(f) for f in data.files)
        raise BloomzTuneError(f"{files}: {len(data.rows):,} rows for {spec.title} {language} (split {spec.split!r}), "
                              f"but its authors document {expected:,}: a partial, edited or different copy; "
                              f"evaluate a subset with --limit instead")


def file_record(folder: Path, path: Path, rows: int) -> dict:
    """What a report says of a data file: its path relative to the data folder, size, sha256 and rows used."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path),
            "size": path.stat().st_size, "sha256": digest.hexdigest(), "rows": rows}


def _unrecognised(folder: Path, spec, language: str, layouts) -> str:
    present = [str(p.relative_to(folder)) for p in _glob(folder, "**/*")]
    shown = ", ".join(present[:8]) + (f", ... ({len(present)} files)" if len(present) > 8 else "")
    accepted = [lay.description for lay in layouts] + ([HUB_SNAPSHOT] if spec.path or spec.aliases else [])
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
