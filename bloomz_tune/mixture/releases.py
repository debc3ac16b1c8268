"""The published releases a source can read (``format``): their folder layouts, which files hold a language,
what a file's name says, and what is wrong with a release source before anything is read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from bloomz_tune.mixture.languages import BLOOM_LANGUAGES, release_codes
from bloomz_tune.tasks.table import held_out_in_name, name_words

if TYPE_CHECKING:
    from bloomz_tune.mixture.spec import SourceSpec

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
    words = f" {name_words(text)} "
    return next((title for key, title in XP3ALL_EVALUATION_EXTRAS.items() if f" {key} " in words), None)

def held_out_message(src: SourceSpec, file, dataset: str) -> str:
    return (f"source {src.label!r}: {file} holds the held-out evaluation dataset {dataset}; BLOOMZ never trains "
            f"on it (docs/bloomz.md §1.3). Leave it out with `held_out: skip` on the source, or set "
            f"`include_held_out: true` for an xP3all-style mixture")

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
