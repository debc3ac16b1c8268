"""The mixture spec: a YAML file naming the sources of an xP3-style mixture and how they are sampled.

The keys are the fields of ``MixtureSpec`` and ``SourceSpec`` below, each documented where it is defined
(``bloomz-tune mixture build --help`` prints them all); ``data_mixtures/demo.yaml`` is a small complete example.
A spec is read through the schema layer (``bloomz_tune.schema``), so every problem is reported at once, naming
the file and the key; checks that read other files (template files, the held-out table) are among them.
``mixture_fingerprint`` names a build by what decides its rows.
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bloomz_tune import schema
from bloomz_tune.errors import ConfigError
from bloomz_tune.hubdata import bare_id_problem, load_arguments
from bloomz_tune.mixture import promptsource
from bloomz_tune.mixture.languages import KNOWN_LANGUAGES
from bloomz_tune.mixture.releases import release_source_problems
from bloomz_tune.mixture.templates import (
    PromptTemplate,
    check_filter,
    load_templates,
    select_templates,
    template_file_help,
)
from bloomz_tune.schema import bounded, internal
from bloomz_tune.tasks.table import held_out_in_name, held_out_task

# Bump when a change to the build (build.py) changes the rows a spec builds: it is part of the fingerprint.
BUILD_FORMAT_VERSION = "4"  # 4: promptsource's answer_choices None when absent, code sources keep the newline
MAX_EXAMPLES_PER_DATASET_PROMPT = 100_000  # xmtf's cap per (dataset, prompt), docs/bloomz.md §1.2

# BLOOM's pretraining languages (the codes xP3 uses) plus "code".
# Other ISO 639-1 codes (evaluation languages outside BLOOM's set, and the rest of the standard list).

# BLOOMZ's language sampling weights (xmtf xp3capmixnewcodelong_train.txt, docs/bloomz.md §1.4): each language's
# share of xP3, code slightly upsampled. Used by xp3.yaml and the published-xP3 mixture.


def _language_problem(key: str, code: str) -> list[str]:
    if code in KNOWN_LANGUAGES:
        return []
    return [f"{key}: unknown language code {code!r} (use an ISO 639-1 code as in xP3, e.g. en, fr, zh, or 'code')"]


@dataclass
class SourceSpec:
    """One dataset (or one config of it) in a mixture."""

    path: str
    """A Hub id, a local folder holding the same files (relative to the spec or absolute), or a packaged
    builder such as ``json`` or ``parquet`` together with ``data_files``."""
    language: str
    """Language code of the rendered rows (ISO 639-1 as in xP3, or ``code``)."""
    task: str
    """Task cluster, e.g. sentiment or multilingual_qa; xP3's are listed in docs/bloomz.md §1.2."""
    name: str | None = None
    """Dataset config (``load_dataset``'s ``name``)."""
    splits: list[str] = field(default_factory=lambda: ["train"])
    """Splits to read; a single name is read as a list of one."""
    data_files: str | list[str] | dict[str, str | list[str]] | None = None
    """``load_dataset``'s ``data_files``: a file or glob, a list, or a mapping of split to files."""
    data_dir: str | None = None
    """``load_dataset``'s ``data_dir``; with ``revision: refs/convert/parquet``, the export's config (its folder)."""
    revision: str | None = None
    """The Hub revision to read (a branch, tag or commit; null: main). ``refs/convert/parquet`` reads the Hub's
    parquet export of a repository whose main branch holds only a loading script, which datasets 4+ refuses;
    ``data_dir`` then names the export's config, whose name can differ from the script's (``default``)."""
    skip: str | None = None
    """Leave this source out of the build, for this reason (e.g. its Hub repository holds only a loading script
    and has no parquet export). The build and ``mixture check`` print the reason and the datasheet lists it;
    point ``path`` at a local copy and remove ``skip`` to include it."""
    dataset: str | None = None
    """The Hub id that a local folder or ``data_files`` mirrors (names the source, and is checked against the
    held-out evaluation datasets)."""
    template_file: str | None = None
    """Our template file or promptsource's ``templates.yaml`` (relative to the spec), or ``promptsource``: this
    dataset's prompts from the spec's ``promptsource`` checkout, found by ``dataset`` (else ``path``) and
    ``name`` as promptsource lays them out. Required unless ``prompted``."""
    templates: list[str] | None = None
    """Names of the templates to apply, in order; ``all`` or null for every template of the file. Where a
    promptsource file gives two templates one name, the last keeps it and each earlier one is
    ``<name>#<first 8 characters of its id>``."""
    promptsource_prompts: str | None = None
    """With ``template_file: promptsource``: the checkout folder to take the prompts from, ``<dataset>[/<subset>]``,
    instead of the source's own (xP3 gave every xquad language the English prompts of ``xquad/xquad.en``)."""
    template_vars: dict[str, Any] = field(default_factory=dict)
    """Extra template variables, the same for every row (e.g. language names of a translation pair)."""
    cap: int | None = bounded(None, gt=0)
    """At most this many rows per (split, template), a seeded sample; null: the mixture's ``cap``."""
    weight: float = bounded(1.0, gt=0)
    """Resample this source's train rows by this factor (2.0: each row twice) before language sampling."""
    streaming: bool = False
    """Stream the source and read only what the caps need (a shuffle buffer of 10,000 rows)."""
    prompted: bool = False
    """The rows already hold ``inputs`` and ``targets`` (published xP3 files): no templates are applied."""
    filter: str | None = None
    """A Jinja expression over a row's columns; rows where it is false are left out, e.g.
    ``id.startswith('indonesian')``."""
    label: str = ""
    """The rows' ``source`` column; default: ``dataset`` or ``path``, plus ``/name`` (plus ``:language`` when
    sources would otherwise share it)."""
    format: Literal["datasets", "xp3", "xp3x", "aya_collection", "aya_dataset"] = "datasets"
    """How ``path`` is read. ``datasets``: ``datasets.load_dataset`` (a Hub id, a folder or a packaged builder).
    A published release, already prompted, from a local copy of its files (``path``: the folder), one build part
    per (dataset, prompt, split) that the release names: ``xp3`` (bigscience/xP3, xP3mt, xP3all:
    ``<path>/<language>/xp3_*.jsonl``), ``xp3x`` (xP3x: ``<lang_Script>`` files or folders), ``aya_collection``
    (parquet; dataset_name, template_id, language, script, split columns), ``aya_dataset`` (parquet;
    language_code, annotation_type). ``language`` picks the language; ``splits: all`` reads every split."""
    allow_non_bloom_languages: bool = False
    """A release source (``format``) may read a language outside BLOOM's (docs/bloomz.md §1.1), named by the
    release's own code (``deu_Latn`` in xP3x, ``deu`` in the Aya dataset). Off: such a language is refused."""
    held_out: Literal["refuse", "skip"] = "refuse"
    """Held-out evaluation data inside a release source (xP3all's XNLI files, xP3x rows of XCOPA, ...):
    ``refuse`` stops the build naming the file and dataset; ``skip`` leaves it out. The spec's
    ``include_held_out`` reads it instead."""
    label_given: bool = internal(False)

    @classmethod
    def coerce(cls, raw: dict) -> dict:
        if isinstance(raw.get("splits"), str):  # `splits: all` (a release source): every split it holds
            raw["splits"] = [raw["splits"]]
        if raw.get("templates") == "all":
            raw["templates"] = None
        elif isinstance(raw.get("templates"), str):
            raw["templates"] = [raw["templates"]]
        return raw

    def __post_init__(self):
        self.label_given = self.label_given or bool(self.label)

    @property
    def default_label(self) -> str:
        base = self.dataset or self.path
        return f"{base}/{self.name}" if self.name else base

    def problems(self) -> list[str]:
        out = [f"{key}: must not be empty" for key in ("path", "task") if not getattr(self, key).strip()]
        if self.format != "datasets":  # a release: checked with the spec (mixture_sources.release_source_problems)
            return out
        out += _language_problem("language", self.language)
        if not self.splits or not all(s.strip() for s in self.splits):
            out.append("splits: must list one or more split names")
        if self.templates is not None and not self.templates:
            out.append("templates: must be 'all' or list one or more template names")
        if self.filter is not None and check_filter(self.filter):
            out.append(f"filter: {check_filter(self.filter)}")
        if self.prompted and (self.template_file or self.templates):
            out.append("prompted: a prompted source (rows already hold inputs/targets) takes no templates")
        elif not self.prompted and not self.template_file:
            out.append("template_file: required (a template file), unless the source is `prompted`")
        if self.promptsource_prompts and self.template_file != promptsource.FROM_CHECKOUT:
            out.append(f"promptsource_prompts: only with `template_file: {promptsource.FROM_CHECKOUT}`")
        if self.skip is not None and not self.skip.strip():
            out.append("skip: give the reason the source is left out")
        return out

    def hub_id_problem(self, spec_dir: Path | None) -> str | None:
        """Why ``path`` names no Hub dataset (an id without an owner), unless it is a local path or a packaged
        builder (json, parquet, ...)."""
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

        path = self.loader_kwargs(spec_dir)["path"]
        if self.skip or self.format != "datasets" or Path(path).exists() or path in _PACKAGED_DATASETS_MODULES:
            return None
        return bare_id_problem(path)

    def loader_kwargs(self, spec_dir: Path | None) -> dict[str, Any]:
        """The ``datasets.load_dataset`` arguments (a relative local path resolved against the spec's folder)."""
        path = self.path
        if spec_dir is not None and (spec_dir / path).exists():
            path = str((spec_dir / path).resolve())
        kwargs: dict[str, Any] = load_arguments(path, self.name, self.revision, self.data_dir)
        if self.data_files is not None:
            kwargs["data_files"] = self.data_files
        return kwargs


@dataclass
class MixtureSpec:
    """A mixture: its sources, how they are sampled, and how the validation split is drawn."""

    name: str
    """Names the build: its cache folder is ``<cache>/<name>-<fingerprint>``. No spaces or slashes."""
    sources: list[SourceSpec]
    """The datasets in the mixture."""
    seed: int = 42
    """Seed of every sample, split and shuffle: the same spec and seed give the same rows."""
    validation_fraction: float = bounded(0.05, ge=0, lt=1)
    """Share of source examples held out for validation (BLOOMZ: 5%, docs/bloomz.md §1.4). The split is by
    source example, so a validation example is never in train under another prompt."""
    dedupe: bool = True
    """Drop exact (inputs, targets) duplicates per language; validation rows win over train rows."""
    cap: int = bounded(MAX_EXAMPLES_PER_DATASET_PROMPT, gt=0)
    """At most this many rows per (source, split, template) (xP3: 100,000)."""
    language_weights: dict[str, float] | None = None
    """Resample train rows so that languages follow these shares (renormalised over the languages present);
    every source language needs an entry. Null: languages as they come."""
    total_examples: int | None = bounded(None, gt=0)
    """Train rows after language sampling (needs ``language_weights``); null: the rows available."""
    prompt_language: Literal["en", "native"] = "en"
    """``en``: English prompts (xP3); ``native``: each template's wording for the row's language where it has
    one (xP3mt)."""
    include_held_out: bool = False
    """Allow the held-out evaluation datasets (docs/bloomz.md §1.3) in a training mixture, as xP3all does."""
    tokenizer: str | None = None
    """Tokenizer (Hub id or folder) whose token counts ``mixture build`` stores beside the build when no
    ``--tokenizer`` is given. Not part of the build's identity."""
    promptsource: str | None = None
    """A promptsource checkout (relative to the spec unless it is there only relative to the working folder)
    whose ``promptsource/templates/<dataset>/[<subset>/]templates.yaml`` files give the prompts of sources with
    ``template_file: promptsource``. xP3 used the fork Muennighoff/promptsource, branch ``tr13`` (docs/bloomz.md
    §2.1)."""
    not_yet_covered: list[str] = field(default_factory=list)
    """Sources of the original mixture not reproduced here (listed in the datasheet)."""
    description: str = ""
    """What the mixture is for (the datasheet's first line)."""
    spec_path: str | None = internal()

    def __post_init__(self):
        # Sources that share a default label (one folder, one file per language) are told apart by language.
        defaults = [s.default_label for s in self.sources if s is not None and not s.label_given]
        for s in self.sources:
            if s is not None and not s.label_given:
                s.label = s.default_label + (f":{s.language}" if defaults.count(s.default_label) > 1 else "")

    @property
    def spec_dir(self) -> Path | None:
        return Path(self.spec_path).parent if self.spec_path else None

    def problems(self) -> list[str]:
        out = []
        if not self.name.strip() or any(c in self.name for c in "/\\ "):
            out.append("name: must be a non-empty name without spaces or slashes (it names the build folder)")
        if not self.sources:
            out.append("sources: must list one or more sources")
        if self.total_examples is not None and not self.language_weights:
            out.append("total_examples: takes effect with language_weights (the rows are sampled to those shares); "
                       "give language_weights or leave total_examples out")
        if self.language_weights is not None:
            if not self.language_weights:
                out.append("language_weights: must map language codes to weights > 0 (or be left out)")
            release_languages = {s.language for s in self.sources if s is not None and s.format != "datasets"}
            for lang, w in self.language_weights.items():
                out += _language_problem(f"language_weights.{lang}", lang) if lang not in release_languages else []
                out += [f"language_weights.{lang}: must be > 0, got {w:g}"] if w <= 0 else []
        users = [i for i, s in enumerate(self.sources)
                 if s is not None and s.template_file == promptsource.FROM_CHECKOUT]
        checkout = []
        if users or self.promptsource:
            try:
                promptsource_root(self)
            except ConfigError as err:  # said once here, not once per source
                checkout = err.problems
                out += [p if self.promptsource else f"{p} (asked for by sources[{users[0]}])" for p in err.problems]
        for i, src in enumerate(self.sources):
            if src is not None:
                out += self._source_problems(f"sources[{i}]", src, templates=not (checkout and i in users))
        labels = [s.label for s in self.sources if s is not None]
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            out.append(f"sources: two sources share the label {label!r}; give one a distinct `label`")
        return out

    def _source_problems(self, where: str, src: SourceSpec, templates: bool = True) -> list[str]:
        """What a source's neighbours in the spec and other files say against it."""
        out = []
        if self.language_weights and src.language not in self.language_weights:
            out.append(f"{where}.language: {src.language!r} has no entry in language_weights")
        if src.format != "datasets":
            return out + release_source_problems(where, src, self.spec_dir, self.include_held_out)
        moved = src.hub_id_problem(self.spec_dir)
        out += [f"{where}.path: {moved}"] if moved else []
        task, what = held_out_task(src.path, src.name, src.dataset), "is"
        if task is None:
            file, task = next(((f, t) for f in _data_file_names(src, self.spec_dir) if (t := held_out_in_name(f))),
                              (None, None))
            what = f"reads {file}, a file of"
        if task is not None and not self.include_held_out:
            out.append(f"{where}: {src.label} {what} the held-out evaluation dataset {task.title} "
                       f"({task.path or ', '.join(task.aliases)}); BLOOMZ never trains on it (docs/bloomz.md "
                       f"§1.3). Remove it, or set `include_held_out: true` for an xP3all-style mixture")
        if src.template_file and templates:
            try:
                tpath = source_template_file(self, src)
                names = [t.name for t in load_templates(tpath)]
            except ConfigError as err:
                inside = f"{err.source}: " if err.source else ""
                return out + [f"{where}.template_file: {inside}{p}" for p in err.problems]
            out += [f"{where}.templates: no template named {name!r} in {tpath} ({_nearest_names(name, names)})"
                    for name in src.templates or [] if name not in names]
        return out


def _nearest_names(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    return f"did you mean: {', '.join(close)}" if close else f"it has: {', '.join(sorted(names))}"


def _data_file_names(src: SourceSpec, spec_dir: Path | None) -> list[str]:
    """The names of the files a source reads, as far as they are known before loading: its ``data_files``
    patterns as written, the names of the local files they match, a local folder ``path``'s own name and its files
    (relative to it)."""
    patterns = [] if src.data_files is None else [src.data_files] if isinstance(src.data_files, str) \
        else src.data_files
    if isinstance(patterns, dict):
        patterns = [p for v in patterns.values() for p in ([v] if isinstance(v, str) else v)]
    local = Path(src.loader_kwargs(spec_dir)["path"])
    base = local if local.is_dir() else Path(".")
    names = list(patterns)
    names += [Path(f).name for pattern in patterns if "://" not in pattern
              for f in glob.glob(str(base / pattern), recursive=True)]
    if local.is_dir():  # the folder's own name too: a release (RTE/) or an archive (xcopa-master/) shows it
        names += [local.resolve().name]
    if local.is_dir() and src.data_files is None:
        names += [str(p.relative_to(local)) for p in local.rglob("*") if p.is_file()]
    return names


def template_path(spec_dir: Path | None, template_file: str) -> Path:
    """A source's template file, relative to the spec's folder unless absolute."""
    p = Path(template_file)
    return spec_dir / p if not p.is_absolute() and spec_dir is not None else p


def source_template_file(spec: MixtureSpec, src: SourceSpec) -> Path:
    """The template file a source reads: its ``template_file``, or with ``template_file: promptsource`` its
    dataset's file in the spec's promptsource checkout (ConfigError with one problem when there is none)."""
    if src.template_file != promptsource.FROM_CHECKOUT:
        return template_path(spec.spec_dir, src.template_file)
    return promptsource.prompt_file(promptsource_root(spec), src.dataset or src.path, src.name,
                                    src.promptsource_prompts)


def promptsource_root(spec: MixtureSpec) -> Path:
    """The ``promptsource/templates`` folder of the spec's checkout; ConfigError with one problem when the spec
    names none or the folder is not a checkout."""
    if not spec.promptsource:
        raise ConfigError(["promptsource: no promptsource checkout given; `template_file: promptsource` needs "
                           "one (git clone -b tr13 https://github.com/Muennighoff/promptsource)"])
    folder = Path(spec.promptsource)
    if spec.spec_dir is not None and not folder.is_absolute() and (spec.spec_dir / folder).exists():
        folder = spec.spec_dir / folder
    return promptsource.templates_root(folder)


def load_mixture_spec(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> MixtureSpec:
    """Read and check a mixture spec (plus ``key=value`` overrides); raises ConfigError listing every problem."""
    return schema.load(MixtureSpec, path, "mixture spec", overrides, spec_path=str(path))


def spec_from_dict(raw: Any, spec_path: str | Path | None = None) -> MixtureSpec:
    """A spec from a mapping with the same keys as a spec file; template files are read relative to spec_path."""
    where = str(spec_path) if spec_path else "<mixture spec>"
    return schema.build(MixtureSpec, raw, where, spec_path=str(spec_path) if spec_path else None)


def source_templates(spec: MixtureSpec, src: SourceSpec) -> list[PromptTemplate | None]:
    """The templates a source applies, in order ([None] for a prompted source)."""
    if src.prompted or src.format != "datasets":
        return [None]
    return select_templates(load_templates(source_template_file(spec, src)), src.templates)


# -- the fingerprint: what decides the rows -----------------------------------------------------------------------

def mixture_fingerprint(spec: MixtureSpec) -> str:
    """A hash of what decides the rows, and nothing else: the spec's content and seed, the template versions and
    texts, local data files, and the build format. (Description, notes and tokenizer do not change rows.)"""
    content = schema.to_dict(spec)
    for key in ("description", "not_yet_covered", "tokenizer"):
        content.pop(key)
    sources = []
    for src in spec.sources:
        entry: dict[str, Any] = {"templates": [(t.name, t.version, t.digest()) if t else None
                                               for t in source_templates(spec, src)]}
        local = Path(src.loader_kwargs(spec.spec_dir)["path"])
        if local.exists():
            entry["files"] = _local_files_digest(local)
        elif src.data_files is not None:  # a packaged builder (json, parquet, ...) reading local files
            entry["files"] = _data_files_digest(src.data_files)
        sources.append(entry)
    payload = {"format": BUILD_FORMAT_VERSION, "spec": content, "sources": sources}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _local_files_digest(root: Path) -> list:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return [_file_digest(p, p.relative_to(root.parent)) for p in files
            if not any(part.startswith(".") for part in p.relative_to(root.parent).parts)]


def _data_files_digest(data_files: str | list | dict) -> list:
    """The local files that ``data_files`` patterns match (as datasets reads them: relative to the working
    folder); remote ones (hf://, https://) are named by the spec alone."""
    patterns = [data_files] if isinstance(data_files, str) else data_files
    if isinstance(patterns, dict):
        patterns = [p for v in patterns.values() for p in ([v] if isinstance(v, str) else v)]
    files = sorted({f for pattern in patterns if "://" not in pattern
                    for f in glob.glob(pattern, recursive=True) if Path(f).is_file()})
    return [_file_digest(Path(f), f) for f in files]


def _file_digest(path: Path, name) -> list:
    """[name, size, content hash] (the hash only for files up to 8 MiB; larger ones by size)."""
    size = path.stat().st_size
    return [str(name), size, hashlib.sha256(path.read_bytes()).hexdigest()[:16] if size <= 8 << 20 else ""]


def spec_help() -> str:
    """Every spec key, every source key and every template-file key, with type, default and meaning."""
    return (f"Mixture spec keys:\n\n{schema.describe(MixtureSpec)}\n\n"
            f"Template file keys (data_mixtures/templates/*.yaml; a promptsource templates.yaml is read as it "
            f"is):\n\n{template_file_help()}")
