"""xP3-style multitask mixtures: a YAML spec in, a reproducible Arrow dataset and its datasheet out.

Build and inspect a mixture::

    bloomz-tune mixture build data_mixtures/demo.yaml --output runs/mixtures/demo [--num-proc 4]
    bloomz-tune mixture show runs/mixtures/demo
    python -m bloomz_tune.mixture build data_mixtures/xp3_mini.yaml --output DIR   # same, without the console command

From Python::

    from bloomz_tune.mixture import prepare_mixture, load_built_mixture
    built = prepare_mixture("data_mixtures/demo.yaml", cache_root="runs/mixtures")   # builds or reuses
    dsd = load_built_mixture(built)        # DatasetDict: train / validation

The spec's keys are the fields of ``MixtureSpec`` and ``SourceSpec`` below (each documented where defined);
``data_mixtures/demo.yaml`` is a small complete example. The steps (BLOOMZ_FACTS.md section 1): load every source (Hub id or local folder, same code path), apply
each of its prompt templates to a seeded sample of at most ``cap`` rows per (split, template), drop rows whose
input or target renders empty, assign each *source example* to train or validation, drop exact duplicates
per language, resample sources by ``weight`` and languages by ``language_weights``, shuffle, save.
Rows live in memory-mapped Arrow files throughout; only numeric index arrays are held in memory.

Where this differs from BLOOMZ, and why: BLOOMZ split 95/5 after rendering, so the same example could sit
in train under one prompt and in validation under another; here the split is by source example, so
validation rows are unseen examples. Duplicates between validation and train are dropped from train.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bloomz_tune import __version__
from bloomz_tune.errors import BloomzTuneError, ConfigError
from bloomz_tune.runtime import is_main_process, print0
from bloomz_tune.templates import PromptTemplate, RowFilter, TemplateRenderError, check_filter, load_templates

# Bump when a change to this module changes the rows a spec builds (it is part of the fingerprint).
BUILD_FORMAT_VERSION = "1"
MAX_EXAMPLES_PER_DATASET_PROMPT = 100_000  # xmtf's cap per (dataset, prompt)
ROWS_PER_PROCESS = 2000  # below this many rows per worker, a step runs in this process (workers cost ~1 s)
COLUMNS = ["inputs", "targets", "language", "task", "source", "template", "choices"]
DATASET_DIR = "dataset"
DATASHEET_JSON = "datasheet.json"
DATASHEET_MD = "datasheet.md"
CHART_PNG = "distribution.png"

# BLOOM's pretraining languages (the codes xP3 uses) plus "code".
BLOOM_LANGUAGES = (
    "ak ar as bm bn ca code en es eu fon fr gu hi id ig ki kn lg ln ml mr ne nso ny or pa pt rn rw sn st sw "
    "ta te tn ts tum tw ur vi wo xh yo zh zu"
).split()
# Other ISO 639-1 codes (evaluation languages outside BLOOM's set, and the rest of the standard list).
OTHER_LANGUAGES = (
    "aa ab ae af am an av ay az ba be bg bh bi bo br bs ce ch co cr cs cu cv cy da de dv dz ee el eo et fa "
    "ff fi fj fo fy ga gd gl gn gv ha he ho hr ht hu hy hz ia ie ii ik io is it iu ja jp jv ka kg kj kk kl km "
    "ko kr ks ku kv kw ky la lb li lo lt lu lv mg mh mi mk mn ms mt my na nb nd ng nl nn no nr nv oc oj om os "
    "pi pl ps qu rm ro ru sa sc sd se sg si sk sl sm so sq sr ss su sv tg th ti tk tl to tr tt ty ug uk uz ve "
    "vo wa yi za"
).split()
KNOWN_LANGUAGES = frozenset(BLOOM_LANGUAGES) | frozenset(OTHER_LANGUAGES)

# BLOOMZ's language sampling weights (xmtf xp3capmixnewcodelong_train.txt): each language's share of xP3,
# code slightly upsampled. Used by xp3.yaml and the published-xP3 mixture.
BLOOMZ_LANGUAGE_WEIGHTS = {
    "en": 0.3925, "es": 0.0798, "pt": 0.0646, "code": 0.0593, "fr": 0.0584, "ar": 0.0493, "id": 0.0485,
    "zh": 0.0483, "hi": 0.0463, "vi": 0.0327,
}


@dataclass(frozen=True)
class EvalDataset:
    """A held-out evaluation dataset: its Hub id (parquet/JSON repo), and the configs that are held out."""

    title: str
    hub_id: str
    configs: tuple[str, ...] = ()      # empty: every config is held out
    aliases: tuple[str, ...] = ()      # other names it goes by (old canonical ids, folder names)


# The evaluation datasets BLOOMZ held out (BLOOMZ_FACTS.md section 1) and the Hub ids that load them with
# `datasets` 4+ (the ids lm-evaluation-harness task files use). One table: a moved dataset is one edit.
EVAL_DATASETS: dict[str, EvalDataset] = {
    "xnli": EvalDataset("XNLI", "facebook/xnli", aliases=("xnli",)),
    "xcopa": EvalDataset("XCOPA", "cambridgeltl/xcopa", aliases=("xcopa",)),
    "xstory_cloze": EvalDataset("XStoryCloze", "juletxara/xstory_cloze", aliases=("xstory_cloze",)),
    "xwinograd": EvalDataset("XWinograd", "Muennighoff/xwinograd", aliases=("xwinograd",)),
    "anli": EvalDataset("ANLI", "facebook/anli", aliases=("anli",)),
    "cb": EvalDataset("SuperGLUE CB", "aps/super_glue", configs=("cb",), aliases=("super_glue",)),
    "rte": EvalDataset("SuperGLUE RTE", "aps/super_glue", configs=("rte",), aliases=("super_glue",)),
    "copa": EvalDataset("SuperGLUE COPA", "aps/super_glue", configs=("copa",), aliases=("super_glue",)),
    "glue_rte": EvalDataset("GLUE RTE", "nyu-mll/glue", configs=("rte",), aliases=("glue",)),
    "winogrande": EvalDataset("WinoGrande", "allenai/winogrande", aliases=("winogrande",)),
    "story_cloze": EvalDataset("StoryCloze", "LSDSem/story_cloze", aliases=("story_cloze",)),
}


def held_out_match(path: str, name: str | None, dataset: str | None = None) -> EvalDataset | None:
    """The evaluation dataset a source reads, if any (by Hub id, alias, or a local folder's name)."""
    candidates = {str(path).rstrip("/").lower(), Path(str(path).rstrip("/")).name.lower()}
    if dataset:
        candidates |= {dataset.lower(), dataset.lower().split("/")[-1]}
    for ev in EVAL_DATASETS.values():
        names = {ev.hub_id.lower(), ev.hub_id.split("/")[-1].lower(), *(a.lower() for a in ev.aliases)}
        if candidates & names and (not ev.configs or (name or "").lower() in ev.configs):
            return ev
    return None


# -- the spec -----------------------------------------------------------------------------------------------

@dataclass
class SourceSpec:
    """One dataset (or one config of it) in a mixture."""

    path: str                                  # Hub id, local folder, or a packaged builder ("json", "parquet")
    language: str                              # language code of the rendered rows
    task: str                                  # task cluster, e.g. "sentiment", "multilingual_qa"
    name: str | None = None                    # dataset config (load_dataset's `name`)
    splits: list[str] = field(default_factory=lambda: ["train"])
    data_files: Any = None                     # load_dataset's `data_files` (str, list, or split -> files)
    data_dir: str | None = None
    dataset: str | None = None                 # the Hub id a local folder or data_files mirrors
    template_file: str | None = None           # our or promptsource's template file (relative to the spec)
    templates: list[str] | None = None         # template names to apply; None = all of the file
    template_vars: dict[str, str] = field(default_factory=dict)  # extra template variables (e.g. language names)
    cap: int | None = None                     # max rows per (split, template); default: the mixture's cap
    weight: float = 1.0                        # resample this source's train rows by this factor
    streaming: bool = False                    # stream the source and read only what the caps need
    prompted: bool = False                     # rows already hold `inputs`/`targets` (published xP3 files)
    filter: str | None = None                  # Jinja expression over a row; rows where it is false are left out
    label: str = ""                            # the `source` column; default: dataset or path (+ "/" + name)
    label_given: bool = field(default=False, repr=False, compare=False)

    def loader_kwargs(self, spec_dir: Path | None) -> dict[str, Any]:
        path = self.path
        if spec_dir is not None and (spec_dir / path).exists():
            path = str((spec_dir / path).resolve())
        kwargs: dict[str, Any] = {"path": path}
        if self.name:
            kwargs["name"] = self.name
        if self.data_files is not None:
            kwargs["data_files"] = self.data_files
        if self.data_dir:
            kwargs["data_dir"] = self.data_dir
        return kwargs


@dataclass
class MixtureSpec:
    """A mixture: sources, sampling and splitting. Field comments document the YAML keys."""

    name: str                                   # used in cache folder names: <cache_root>/<name>-<fingerprint>
    sources: list[SourceSpec]
    seed: int = 42
    validation_fraction: float = 0.05           # share of source examples kept for validation
    dedupe: bool = True                         # drop exact (inputs, targets) duplicates per language
    cap: int = MAX_EXAMPLES_PER_DATASET_PROMPT  # max rows per (source, split, template)
    language_weights: dict[str, float] | None = None  # resample train rows so languages follow these shares
    total_examples: int | None = None           # train size after language sampling; default: rows available
    prompt_language: str = "en"                 # "en": English prompts (xP3); "native": template translations (xP3mt)
    include_held_out: bool = False              # xP3all-style: allow evaluation datasets in a training mixture
    tokenizer: str | None = None                # tokenizer (Hub id or folder) for token counts in the datasheet
    not_yet_covered: list[str] = field(default_factory=list)  # sources of the original mixture not reproduced
    description: str = ""
    spec_path: str | None = None                # where the spec was read from (not part of the fingerprint)

    @property
    def spec_dir(self) -> Path | None:
        return Path(self.spec_path).parent if self.spec_path else None


_SOURCE_KEYS = {f for f in SourceSpec.__dataclass_fields__} - {"label_given"}
_SPEC_KEYS = {f for f in MixtureSpec.__dataclass_fields__} - {"spec_path"}


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _template_path(spec_dir: Path | None, template_file: str) -> Path:
    p = Path(template_file)
    if not p.is_absolute() and spec_dir is not None:
        p = spec_dir / p
    return p


def _parse_source(i: int, raw: Any, spec_dir: Path | None, problems: list[str]) -> SourceSpec | None:
    where = f"sources[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a mapping with at least path, language, task")
        return None
    for key in sorted(set(raw) - _SOURCE_KEYS):
        problems.append(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(_SOURCE_KEYS))})")
    ok = True
    for key in ("path", "language", "task"):
        if not isinstance(raw.get(key), str) or not raw.get(key).strip():
            problems.append(f"{where}.{key}: required, a non-empty string")
            ok = False
    lang = raw.get("language")
    if isinstance(lang, str) and lang and lang not in KNOWN_LANGUAGES:
        problems.append(f"{where}.language: unknown language code {lang!r} (use an ISO 639-1 code as in xP3, "
                        f"e.g. en, fr, zh, or 'code')")
        ok = False
    for key in ("name", "data_dir", "dataset", "template_file", "label"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            problems.append(f"{where}.{key}: must be a string")
            ok = False
    splits = raw.get("splits", ["train"])
    if isinstance(splits, str):
        splits = [splits]
    if not isinstance(splits, list) or not splits or not all(isinstance(s, str) and s for s in splits):
        problems.append(f"{where}.splits: must be a non-empty list of split names")
        ok = False
    templates = raw.get("templates")
    if isinstance(templates, str):
        templates = None if templates == "all" else [templates]
    if templates is not None and (not isinstance(templates, list) or not templates
                                  or not all(isinstance(t, str) for t in templates)):
        problems.append(f"{where}.templates: must be 'all' or a non-empty list of template names")
        ok = False
    cap = raw.get("cap")
    if cap is not None and (not _is_int(cap) or cap <= 0):
        problems.append(f"{where}.cap: must be an integer > 0, got {cap!r}")
        ok = False
    weight = raw.get("weight", 1.0)
    if not _is_num(weight) or weight <= 0:
        problems.append(f"{where}.weight: must be > 0, got {weight!r}")
        ok = False
    for key in ("streaming", "prompted"):
        if not isinstance(raw.get(key, False), bool):
            problems.append(f"{where}.{key}: must be true or false")
            ok = False
    tvars = raw.get("template_vars", {}) or {}
    if not isinstance(tvars, dict) or not all(isinstance(k, str) for k in tvars):
        problems.append(f"{where}.template_vars: must map names to values")
        ok = False
    data_files = raw.get("data_files")
    if data_files is not None and not isinstance(data_files, (str, list, dict)):
        problems.append(f"{where}.data_files: must be a string, a list, or a mapping split -> files")
        ok = False
    if raw.get("filter") is not None and check_filter(raw["filter"]):
        problems.append(f"{where}.filter: {check_filter(raw['filter'])}")
        ok = False
    prompted = raw.get("prompted", False) is True
    tfile = raw.get("template_file")
    if prompted and (tfile or templates):
        problems.append(f"{where}: a prompted source (rows already hold inputs/targets) takes no templates")
        ok = False
    if not prompted and not tfile and ok:
        problems.append(f"{where}.template_file: required (a template file), unless the source is `prompted`")
        ok = False
    if not ok:
        return None
    src = SourceSpec(
        path=raw["path"], language=lang, task=raw["task"], name=raw.get("name"), splits=list(splits),
        data_files=data_files, data_dir=raw.get("data_dir"), dataset=raw.get("dataset"), template_file=tfile,
        templates=templates, template_vars={k: v for k, v in tvars.items()}, cap=cap, weight=float(weight),
        streaming=raw.get("streaming", False), prompted=prompted, label=raw.get("label") or "",
        filter=raw.get("filter"),
    )
    src.label_given = bool(src.label)
    if not src.label:
        base = src.dataset or src.path
        src.label = f"{base}/{src.name}" if src.name else base
    return src


def load_mixture_spec(path: str | Path) -> MixtureSpec:
    """Read and validate a mixture spec; raises ConfigError listing every problem (file and key)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"mixture spec not found: {path}"], str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError([f"malformed YAML: {err}"], str(path)) from None
    return spec_from_dict(raw, spec_path=path)


def spec_from_dict(raw: Any, spec_path: str | Path | None = None) -> MixtureSpec:
    """Validate a spec given as a mapping (the parsed YAML); template files are read relative to spec_path."""
    source_name = str(spec_path) if spec_path else "<mixture spec>"
    if not isinstance(raw, dict):
        raise ConfigError(["the spec must be a YAML mapping with keys name, sources, ..."], source_name)
    problems: list[str] = []
    spec_dir = Path(spec_path).parent if spec_path else None
    for key in sorted(set(raw) - _SPEC_KEYS):
        problems.append(f"{key}: unknown key (allowed: {', '.join(sorted(_SPEC_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
        problems.append("name: required, a non-empty string without spaces or slashes")
    seed = raw.get("seed", 42)
    if not _is_int(seed):
        problems.append(f"seed: must be an integer, got {seed!r}")
    vf = raw.get("validation_fraction", 0.05)
    if not _is_num(vf) or not 0 <= vf < 1:
        problems.append(f"validation_fraction: must be in [0, 1), got {vf!r}")
    cap = raw.get("cap", MAX_EXAMPLES_PER_DATASET_PROMPT)
    if not _is_int(cap) or cap <= 0:
        problems.append(f"cap: must be an integer > 0, got {cap!r}")
    total = raw.get("total_examples")
    if total is not None and (not _is_int(total) or total <= 0):
        problems.append(f"total_examples: must be an integer > 0, got {total!r}")
    for key in ("dedupe", "include_held_out"):
        if not isinstance(raw.get(key, False), bool):
            problems.append(f"{key}: must be true or false")
    prompt_language = raw.get("prompt_language", "en")
    if prompt_language not in ("en", "native"):
        problems.append(f"prompt_language: must be 'en' (xP3) or 'native' (xP3mt), got {prompt_language!r}")
    tokenizer = raw.get("tokenizer")
    if tokenizer is not None and not isinstance(tokenizer, str):
        problems.append("tokenizer: must be a Hub id or a folder")
    nyc = raw.get("not_yet_covered", []) or []
    if not isinstance(nyc, list) or not all(isinstance(x, str) for x in nyc):
        problems.append("not_yet_covered: must be a list of strings")
        nyc = []
    weights = raw.get("language_weights")
    if weights is not None:
        if not isinstance(weights, dict) or not weights:
            problems.append("language_weights: must map language codes to weights > 0")
            weights = None
        else:
            for lang, w in weights.items():
                if lang not in KNOWN_LANGUAGES:
                    problems.append(f"language_weights.{lang}: unknown language code {lang!r}")
                if not _is_num(w) or w <= 0:
                    problems.append(f"language_weights.{lang}: must be > 0, got {w!r}")
    raw_sources = raw.get("sources")
    sources: list[SourceSpec] = []
    if not isinstance(raw_sources, list) or not raw_sources:
        problems.append("sources: required, a non-empty list")
    else:
        for i, rs in enumerate(raw_sources):
            src = _parse_source(i, rs, spec_dir, problems)
            if src is None:
                continue
            sources.append(src)
            where = f"sources[{i}]"
            if weights is not None and src.language not in weights:
                problems.append(f"{where}.language: {src.language!r} has no entry in language_weights")
            ev = held_out_match(src.path, src.name, src.dataset)
            if ev is not None and not raw.get("include_held_out", False):
                problems.append(
                    f"{where}: {src.label} is the held-out evaluation dataset {ev.title} ({ev.hub_id}); BLOOMZ "
                    f"never trains on it. Remove it, or set `include_held_out: true` for an xP3all-style mixture")
            if src.template_file:
                tpath = _template_path(spec_dir, src.template_file)
                try:
                    available = {t.name for t in load_templates(tpath)}
                except ConfigError as err:
                    problems.extend(f"{where}.template_file: {p} ({tpath})" for p in err.problems)
                    continue
                for tname in src.templates or []:
                    if tname not in available:
                        problems.append(f"{where}.templates: no template named {tname!r} in {tpath} "
                                        f"(it has: {', '.join(sorted(available))})")
        defaults = [s.label for s in sources if not s.label_given]
        for s in sources:  # sources that share a default label (e.g. one folder, one file per language)
            if not s.label_given and defaults.count(s.label) > 1:
                s.label = f"{s.label}:{s.language}"
        labels = [s.label for s in sources]
        for label in sorted({x for x in labels if labels.count(x) > 1}):
            problems.append(f"sources: two sources share the label {label!r}; give one a distinct `label`")
    if problems:
        raise ConfigError(problems, source_name)
    return MixtureSpec(
        name=name, sources=sources, seed=seed, validation_fraction=float(vf), dedupe=raw.get("dedupe", True),
        cap=cap, language_weights={k: float(v) for k, v in weights.items()} if weights else None,
        total_examples=total, prompt_language=prompt_language,
        include_held_out=raw.get("include_held_out", False), tokenizer=tokenizer, not_yet_covered=list(nyc),
        description=str(raw.get("description", "")), spec_path=str(spec_path) if spec_path else None,
    )


def source_templates(spec: MixtureSpec, src: SourceSpec) -> list[PromptTemplate | None]:
    """The templates a source applies, in order ([None] for a prompted source)."""
    if src.prompted:
        return [None]
    templates = load_templates(_template_path(spec.spec_dir, src.template_file))
    if src.templates is None:
        return templates
    by_name = {t.name: t for t in templates}
    return [by_name[n] for n in src.templates]


# -- fingerprint ----------------------------------------------------------------------------------------------

def _local_files_digest(root: Path) -> list:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    out = []
    for p in files:
        if any(part.startswith(".") for part in p.relative_to(root.parent).parts):
            continue
        size = p.stat().st_size
        digest = hashlib.sha256(p.read_bytes()).hexdigest()[:16] if size <= 8 << 20 else ""
        out.append([str(p.relative_to(root.parent)), size, digest])
    return out


def mixture_fingerprint(spec: MixtureSpec, tokenizer_name: str | None = None) -> str:
    """A hash of what decides the rows: spec content, seed, template versions and texts, local data files."""
    payload: dict[str, Any] = {"format": BUILD_FORMAT_VERSION, "spec": asdict(spec), "tokenizer": tokenizer_name}
    payload["spec"].pop("spec_path", None)
    payload["spec"].pop("description", None)
    payload["spec"].pop("not_yet_covered", None)
    sources = []
    for src in spec.sources:
        entry: dict[str, Any] = {"templates": [(t.name, t.version, t.digest()) if t else None
                                               for t in source_templates(spec, src)]}
        local = Path(src.loader_kwargs(spec.spec_dir)["path"])
        if local.exists():
            entry["files"] = _local_files_digest(local)
        sources.append(entry)
    payload["sources"] = sources
    blob = json.dumps(payload, sort_keys=True, default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


# -- loading sources ------------------------------------------------------------------------------------------

def _load_source_split(spec: MixtureSpec, src: SourceSpec, split: str):
    import datasets

    kwargs = src.loader_kwargs(spec.spec_dir)
    local = Path(kwargs["path"]).exists()
    try:
        return datasets.load_dataset(**kwargs, split=split, streaming=src.streaming)
    except Exception as err:  # noqa: BLE001 - any loader failure becomes one clear message
        if local:
            hint = "check the folder holds the dataset's data files (parquet/JSON/CSV) and the split exists"
        else:
            hint = ("check the Hub id, config name and split; with no network (HF_HUB_OFFLINE=1), or for data "
                    "behind a manual download (e.g. story_cloze), download the files and set `path` to a local "
                    "folder holding them")
        raise BloomzTuneError(f"source {src.label!r}: could not load split {split!r} of {kwargs['path']!r} "
                              f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
                              f"To fix: {hint}.") from None


def _stream_rows(dataset, limit: int):
    for i, row in enumerate(dataset):
        if i >= limit:
            break
        yield row


def _materialize_stream(ds, limit: int, work: Path, fingerprint: str, seed: int):
    """Read at most ``limit`` rows of a streamed split into an Arrow file in ``work`` (shuffle buffer 10k)."""
    from datasets import Dataset

    ds = ds.shuffle(seed=seed, buffer_size=10_000)
    return Dataset.from_generator(_stream_rows, gen_kwargs={"dataset": ds, "limit": limit},
                                  cache_dir=str(work / "streams"), fingerprint=fingerprint)


def _stable_int(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


# -- rendering (runs in datasets.map workers) -----------------------------------------------------------------

def _row_hash(language: str, inputs: str, targets: str) -> int:
    digest = hashlib.blake2b(f"{language}\x00{inputs}\x00{targets}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _render_batch(batch, indices, *, part, template, language, prompt_language, template_vars, row_index,
                  label, split, seed, val_fraction, tokenizer):
    columns = list(batch)
    out = {"inputs": [], "targets": [], "choices": [], "_hash": [], "_val": [], "_itok": [], "_ttok": []}
    for pos, i in enumerate(indices):
        row = {c: batch[c][pos] for c in columns}
        orig = int(row_index[i]) if row_index is not None else int(i)
        key = _stable_int(seed, label, split, orig)
        if template is None:
            inputs, targets, choices = str(row.get("inputs") or "").strip(), str(row.get("targets") or "").strip(), []
        else:
            row.update(template_vars)
            try:
                inputs, targets, choices = template.render(
                    row, language=language if prompt_language == "native" else None, row_seed=key)
            except TemplateRenderError as err:
                raise TemplateRenderError(f"source {label!r}, split {split!r}, row {orig}: {err}") from None
        if not inputs or not targets:
            continue
        out["inputs"].append(inputs)
        out["targets"].append(targets)
        out["choices"].append(list(choices))
        out["_hash"].append(_row_hash(language, inputs, targets))
        out["_val"].append((key % 1_000_003) / 1_000_003 < val_fraction)
    n = len(out["inputs"])
    out["_pid"] = [part] * n
    if tokenizer is not None and n:
        # What training sees: inputs as they are; targets with a leading space and an end-of-sequence token.
        ins = tokenizer(out["inputs"], add_special_tokens=False)["input_ids"]
        tgs = tokenizer([" " + t for t in out["targets"]], add_special_tokens=False)["input_ids"]
        out["_itok"] = [len(x) for x in ins]
        out["_ttok"] = [len(x) + 1 for x in tgs]
    else:
        out["_itok"] = [0] * n
        out["_ttok"] = [0] * n
    return out


def _work_features():
    from datasets import Features, List, Value

    return Features({"inputs": Value("string"), "targets": Value("string"), "choices": List(Value("string")),
                     "_hash": Value("int64"), "_val": Value("bool"), "_itok": Value("int32"),
                     "_ttok": Value("int32"), "_pid": Value("int32")})


def output_features():
    """The features of a built mixture's splits."""
    from datasets import Features, List, Value

    return Features({**{c: Value("string") for c in COLUMNS if c != "choices"}, "choices": List(Value("string"))})


def _load_tokenizer(tokenizer):
    if tokenizer is None or not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    except Exception as err:  # noqa: BLE001
        raise BloomzTuneError(f"could not load tokenizer {str(tokenizer)!r} for the datasheet token counts "
                              f"({type(err).__name__}); give a local folder or leave `tokenizer` unset") from None


def _tokenizer_name(tokenizer) -> str | None:
    if tokenizer is None:
        return None
    if isinstance(tokenizer, (str, Path)):
        return str(tokenizer)
    return getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__


# -- resampling -----------------------------------------------------------------------------------------------

def _resample(idx: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """``target`` elements of ``idx``: a sample without replacement, or whole repeats plus a sample."""
    n = len(idx)
    if target == n or n == 0:
        return idx
    if target < n:
        return np.sort(rng.choice(idx, size=target, replace=False))
    reps, rest = divmod(target, n)
    return np.concatenate([np.tile(idx, reps), np.sort(rng.choice(idx, size=rest, replace=False))])


# -- build ----------------------------------------------------------------------------------------------------

@dataclass
class _Part:
    source: int
    split: str
    template: str
    available: int
    selected: int
    rendered: int = 0


def is_built_mixture(path: str | Path) -> bool:
    path = Path(path)
    return (path / DATASHEET_JSON).is_file() and (path / DATASET_DIR / "dataset_dict.json").is_file()


def build_mixture(spec_or_path: MixtureSpec | str | Path, output_dir: str | Path, num_proc: int = 1,
                  tokenizer=None, overwrite: bool = False, progress: bool = True) -> Path:
    """Build a mixture into ``output_dir`` (dataset/, datasheet.json, datasheet.md, distribution.png).

    ``tokenizer`` (a tokenizer, Hub id or folder; default the spec's ``tokenizer``) only adds token counts
    to the datasheet. The build is written to a temporary folder next to ``output_dir`` and renamed at the
    end, so an interrupted build never looks finished. Returns ``output_dir``.
    """
    spec = spec_or_path if isinstance(spec_or_path, MixtureSpec) else load_mixture_spec(spec_or_path)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise BloomzTuneError(f"{output_dir} already exists and is not empty; choose another --output or "
                              f"pass overwrite=True (--overwrite)")
    tokenizer = tokenizer if tokenizer is not None else spec.tokenizer
    tok_name = _tokenizer_name(tokenizer)
    fingerprint = mixture_fingerprint(spec, tok_name)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.parent / f".{output_dir.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    if not progress:
        datasets.disable_progress_bars()
    try:
        _build_into(spec, tmp, fingerprint, max(1, int(num_proc)), _load_tokenizer(tokenizer), tok_name, progress)
        shutil.rmtree(tmp / "_work", ignore_errors=True)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
    return output_dir


def _build_into(spec: MixtureSpec, out: Path, fingerprint: str, num_proc: int, tokenizer, tok_name, progress):
    from datasets import Dataset, DatasetDict, concatenate_datasets
    from tqdm.auto import tqdm

    started = time.time()
    work = out / "_work"
    work.mkdir()
    print0(f"mixture {spec.name}: {len(spec.sources)} sources, fingerprint {fingerprint}")

    # 1. load every source split and check template columns up front (all problems at once)
    loaded: list[list[tuple[str, Any]]] = []
    templates_of: list[list[PromptTemplate | None]] = []
    problems: list[str] = []
    for si, src in enumerate(tqdm(spec.sources, desc="load sources", disable=not progress or not is_main_process())):
        templates = source_templates(spec, src)
        templates_of.append(templates)
        splits = []
        for split in src.splits:
            ds = _load_source_split(spec, src, split)
            if src.streaming:
                cap = src.cap or spec.cap
                ds = _materialize_stream(ds, cap, work, f"stream{si}-{_stable_int(fingerprint, si, split):x}",
                                         spec.seed)
            columns = set(ds.column_names or [])
            if src.filter:
                for col in sorted(RowFilter(src.filter).variables() - columns):
                    problems.append(f"sources[{si}] ({src.label}).filter: column {col!r} is missing from split "
                                    f"{split!r} (columns: {', '.join(sorted(columns))})")
            for t in templates:
                needed = {"inputs", "targets"} if t is None else t.variables() - set(src.template_vars)
                for col in sorted(needed - columns):
                    tname = "prompted rows" if t is None else f"template {t.name!r}"
                    problems.append(f"sources[{si}] ({src.label}), {tname}: column {col!r} is missing from "
                                    f"split {split!r} (columns: {', '.join(sorted(columns))})")
            splits.append((split, ds))
        loaded.append(splits)
    if problems:
        raise ConfigError(problems, spec.spec_path or spec.name)
    filtered_out: dict[tuple[int, str], int] = {}
    for si, src in enumerate(spec.sources):
        if not src.filter:
            continue
        for k, (split, ds) in enumerate(loaded[si]):
            before = len(ds)
            ds = ds.filter(RowFilter(src.filter), num_proc=num_proc if num_proc > 1 and before >= ROWS_PER_PROCESS * num_proc else None,
                           cache_file_name=str(work / f"filter{si}-{k}.arrow"), load_from_cache_file=False,
                           new_fingerprint=f"{fingerprint}-filter{si}-{k}", desc=f"filter {src.label} [{split}]")
            filtered_out[(si, split)] = before - len(ds)
            loaded[si][k] = (split, ds)

    # 2. render each (source, split, template) on a seeded sample of at most `cap` rows
    parts: list[_Part] = []
    rendered = []
    features = _work_features()
    for si, src in enumerate(spec.sources):
        cap = src.cap or spec.cap
        for split, ds in loaded[si]:
            n = len(ds)
            for template in templates_of[si]:
                tname = "published" if template is None else template.name
                rng = np.random.default_rng([spec.seed, _stable_int(src.label, split, tname) % (2**32)])
                if cap < n:
                    row_index = np.sort(rng.choice(n, size=cap, replace=False))
                    subset = ds.select(row_index)
                else:
                    row_index, subset = None, ds
                part = _Part(si, split, tname, available=n, selected=len(subset))
                if len(subset):
                    result = subset.map(
                        _render_batch, batched=True, batch_size=1000, with_indices=True,
                        remove_columns=subset.column_names, features=features,
                        num_proc=num_proc if num_proc > 1 and len(subset) >= ROWS_PER_PROCESS * num_proc else None,
                        fn_kwargs=dict(part=len(parts), template=template, language=src.language, prompt_language=spec.prompt_language,
                                       template_vars=src.template_vars, row_index=row_index, label=src.label,
                                       split=split, seed=spec.seed, val_fraction=spec.validation_fraction,
                                       tokenizer=tokenizer),
                        cache_file_name=str(work / f"part{len(parts)}.arrow"), load_from_cache_file=False,
                        new_fingerprint=f"{fingerprint}-part{len(parts)}",
                        desc=f"render {src.label} [{split}] {tname}",
                    )
                    part.rendered = len(result)
                    if len(result):
                        rendered.append(result)
                parts.append(part)

    warn_list: list[str] = []
    for si, src in enumerate(spec.sources):
        if sum(p.rendered for p in parts if p.source == si) == 0:
            msg = f"source {src.label!r} yielded zero rows (after rendering and dropping empty rows)"
            warn_list.append(msg)
            warnings.warn(msg, stacklevel=2)
            print0(f"warning: {msg}")
    if not rendered:
        raise BloomzTuneError(f"mixture {spec.name!r} is empty: no source yielded a row "
                              f"(see the warnings above)")
    full = concatenate_datasets(rendered)
    part_ids = full.data.column("_pid").to_numpy()
    part_source = np.array([p.source for p in parts], dtype=np.int32)
    langs = sorted({s.language for s in spec.sources})
    lang_of_source = np.array([langs.index(s.language) for s in spec.sources], dtype=np.int32)
    row_lang = lang_of_source[part_source[part_ids]]
    row_source = part_source[part_ids]
    is_val = full.data.column("_val").to_numpy(zero_copy_only=False).astype(bool)

    # 3. dedupe exact duplicates per language (validation rows win over train rows)
    order = np.argsort(~is_val, kind="stable")
    keep = np.ones(len(full), dtype=bool)
    if spec.dedupe:
        hashes = full.data.column("_hash").to_numpy()
        _, first = np.unique(hashes[order], return_index=True)
        keep[:] = False
        keep[order[first]] = True
    dup_by_part = np.bincount(part_ids[~keep], minlength=len(parts))

    # 4. resample train rows by source weight, then by language weight
    rng = np.random.default_rng(spec.seed)
    train_mask = keep & ~is_val
    by_source = []
    for si, src in enumerate(spec.sources):
        idx = np.flatnonzero(train_mask & (row_source == si))
        by_source.append(_resample(idx, int(round(len(idx) * src.weight)), rng) if src.weight != 1 else idx)
    train_pool = np.concatenate(by_source) if by_source else np.zeros(0, dtype=np.int64)
    pool_lang = row_lang[train_pool]
    available = {lang: int((pool_lang == li).sum()) for li, lang in enumerate(langs)}
    targets = dict(available)
    if spec.language_weights:
        total = spec.total_examples or sum(available.values())
        wsum = sum(spec.language_weights[lang] for lang in langs)
        targets = {lang: int(round(total * spec.language_weights[lang] / wsum)) if available[lang] else 0
                   for lang in langs}
    train_parts, val_parts = [], []
    for li, lang in enumerate(langs):
        train_parts.append(_resample(train_pool[pool_lang == li], targets[lang], rng))
        val_idx = np.flatnonzero(keep & is_val & (row_lang == li))
        ratio = targets[lang] / available[lang] if available[lang] else 1.0
        if ratio < 1:
            val_idx = _resample(val_idx, int(round(len(val_idx) * ratio)), rng)
        val_parts.append(val_idx)
    train_idx = rng.permutation(np.concatenate(train_parts))
    val_idx = rng.permutation(np.concatenate(val_parts))

    # 5. datasheet numbers, from the numeric columns only
    itok = full.data.column("_itok").to_numpy().astype(np.int64)
    ttok = full.data.column("_ttok").to_numpy().astype(np.int64)
    stats = {}
    for split_name, idx in (("train", train_idx), ("validation", val_idx)):
        pid = part_ids[idx]
        stats[split_name] = {
            "examples": np.bincount(pid, minlength=len(parts)),
            "input_tokens": np.bincount(pid, weights=itok[idx], minlength=len(parts)).astype(np.int64),
            "target_tokens": np.bincount(pid, weights=ttok[idx], minlength=len(parts)).astype(np.int64),
        }

    # 6. the dataset: constant columns per part, then select, shuffle and save
    internal = ["_hash", "_val", "_itok", "_ttok"]
    meta = _part_meta(spec, parts)
    splits = {}
    for split_name, idx in (("train", train_idx), ("validation", val_idx)):
        procs = num_proc if num_proc > 1 and len(idx) >= ROWS_PER_PROCESS * num_proc else None
        ds = full.select(idx).remove_columns(internal)
        ds = ds.flatten_indices(cache_file_name=str(work / f"{split_name}-flat.arrow"), num_proc=procs,
                                new_fingerprint=f"{fingerprint}-{split_name}-flat")
        ds = ds.map(_add_meta_batch, batched=True, batch_size=10_000, remove_columns=["_pid"], num_proc=procs,
                    fn_kwargs=dict(meta=meta), cache_file_name=str(work / f"{split_name}-meta.arrow"),
                    load_from_cache_file=False, new_fingerprint=f"{fingerprint}-{split_name}-meta",
                    desc=f"label {split_name} rows")
        splits[split_name] = ds.select_columns(COLUMNS) if len(ds) else Dataset.from_dict(
            {c: [] for c in COLUMNS}, features=output_features())
    # an empty split still gets one (empty) shard, so that it loads back
    DatasetDict(splits).save_to_disk(str(out / DATASET_DIR), num_proc=num_proc if num_proc > 1 else None,
                                     num_shards={k: 1 for k, v in splits.items() if len(v) == 0})

    sheet = _datasheet(spec, fingerprint, tok_name, parts, stats, dup_by_part, available, targets, warn_list,
                       time.time() - started)
    sheet["processing"]["filtered_out"] = {f"{spec.sources[si].label} [{split}]": n
                                           for (si, split), n in filtered_out.items()}
    (out / DATASHEET_JSON).write_text(json.dumps(sheet, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / DATASHEET_MD).write_text(datasheet_markdown(sheet), encoding="utf-8")
    _chart(sheet, out / CHART_PNG)
    print0(f"mixture {spec.name}: {sheet['splits']['train']} train / {sheet['splits']['validation']} validation "
           f"rows in {sheet['build_seconds']:.1f}s")


def _part_meta(spec: MixtureSpec, parts: list[_Part]) -> list[tuple[str, str, str, str]]:
    return [(spec.sources[p.source].language, spec.sources[p.source].task, spec.sources[p.source].label,
             p.template) for p in parts]


def _add_meta_batch(batch, *, meta):
    rows = [meta[p] for p in batch["_pid"]]
    return {"language": [r[0] for r in rows], "task": [r[1] for r in rows], "source": [r[2] for r in rows],
            "template": [r[3] for r in rows]}


# -- datasheet ------------------------------------------------------------------------------------------------

def _rollup(parts, stats, key) -> dict[str, dict[str, int]]:
    table: dict[str, dict[str, int]] = {}
    for i, p in enumerate(parts):
        k = key(p)
        row = table.setdefault(k, {"train": 0, "validation": 0, "input_tokens": 0, "target_tokens": 0})
        for split in ("train", "validation"):
            row[split] += int(stats[split]["examples"][i])
            row["input_tokens"] += int(stats[split]["input_tokens"][i])
            row["target_tokens"] += int(stats[split]["target_tokens"][i])
    total = sum(r["train"] for r in table.values()) or 1
    for row in table.values():
        row["share"] = round(row["train"] / total, 4)
    return dict(sorted(table.items(), key=lambda kv: -kv[1]["train"]))


def _datasheet(spec, fingerprint, tok_name, parts, stats, dup_by_part, available, targets, warn_list, seconds):
    src = spec.sources
    sheet = {
        "name": spec.name,
        "description": spec.description,
        "fingerprint": fingerprint,
        "spec_file": spec.spec_path,
        "bloomz_tune_version": __version__,
        "seed": spec.seed,
        "tokenizer": tok_name,
        "splits": {s: int(stats[s]["examples"].sum()) for s in ("train", "validation")},
        "tokens": {s: {"input": int(stats[s]["input_tokens"].sum()), "target": int(stats[s]["target_tokens"].sum())}
                   for s in ("train", "validation")},
        "by_language": _rollup(parts, stats, lambda p: src[p.source].language),
        "by_task": _rollup(parts, stats, lambda p: src[p.source].task),
        "by_source": _rollup(parts, stats, lambda p: src[p.source].label),
        "by_template": _rollup(parts, stats, lambda p: f"{src[p.source].label} :: {p.template}"),
        "language_sampling": {
            lang: {"available": available[lang], "target": targets[lang],
                   "weight": (spec.language_weights or {}).get(lang)} for lang in available},
        "processing": {
            "rows_read": int(sum(p.available for p in parts)),
            "capped": int(sum(p.available - p.selected for p in parts)),
            "dropped_empty": int(sum(p.selected - p.rendered for p in parts)),
            "deduplicated": int(dup_by_part.sum()),
        },
        "parts": [{"source": src[p.source].label, "split": p.split, "template": p.template,
                   "rows_available": p.available, "rows_selected": p.selected,
                   "capped": p.available - p.selected, "dropped_empty": p.selected - p.rendered,
                   "deduplicated": int(dup_by_part[i]), "train": int(stats["train"]["examples"][i]),
                   "validation": int(stats["validation"]["examples"][i])} for i, p in enumerate(parts)],
        "warnings": warn_list,
        "not_yet_covered": spec.not_yet_covered,
        "spec": {k: v for k, v in asdict(spec).items() if k != "spec_path"},
        "build_seconds": round(seconds, 2),
    }
    return sheet


def _md_table(title: str, table: dict[str, dict[str, int]], with_tokens: bool) -> str:
    head = f"| {title} | train | validation | share |" + (" input tokens | target tokens |" if with_tokens else "")
    sep = "|---|---:|---:|---:|" + ("---:|---:|" if with_tokens else "")
    lines = [head, sep]
    for key, r in table.items():
        line = f"| {key} | {r['train']:,} | {r['validation']:,} | {100 * r['share']:.1f}% |"
        if with_tokens:
            line += f" {r['input_tokens']:,} | {r['target_tokens']:,} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def datasheet_markdown(sheet: dict) -> str:
    """The readable datasheet (datasheet.md) from the datasheet.json content."""
    tok = bool(sheet.get("tokenizer"))
    p = sheet["processing"]
    out = [f"# Mixture datasheet: {sheet['name']}\n"]
    if sheet.get("description"):
        out.append(sheet["description"].strip() + "\n")
    out.append(f"- fingerprint: `{sheet['fingerprint']}` (spec `{sheet['spec_file']}`, seed {sheet['seed']})\n"
               f"- rows: {sheet['splits']['train']:,} train, {sheet['splits']['validation']:,} validation\n"
               f"- token counts: {('with ' + sheet['tokenizer']) if tok else 'not computed (no tokenizer given)'}\n"
               f"- processing: {p['rows_read']:,} (source row, template) pairs, {p['capped']:,} left out by caps, "
               f"{p['dropped_empty']:,} dropped (empty input or target), {p['deduplicated']:,} exact duplicates "
               f"dropped\n")
    for where, n in (p.get("filtered_out") or {}).items():
        out.append(f"- filter of {where}: {n:,} rows left out\n")
    if tok:
        t = sheet["tokens"]["train"]
        out.append(f"- train tokens: {t['input']:,} input, {t['target']:,} target (target + EOS)\n")
    for title, key in (("language", "by_language"), ("task cluster", "by_task"), ("source", "by_source"),
                       ("source :: template", "by_template")):
        out.append(f"\n## By {title}\n\n" + _md_table(title, sheet[key], tok))
    out.append("\n## Language sampling\n\n| language | available | target | weight |\n|---|---:|---:|---:|\n")
    for lang, r in sheet["language_sampling"].items():
        w = "" if r["weight"] is None else f"{r['weight']:g}"
        out.append(f"| {lang} | {r['available']:,} | {r['target']:,} | {w} |\n")
    out.append("\n## Per source, split and template\n\n| source | split | template | available | capped | "
               "dropped empty | duplicates | train | validation |\n|---|---|---|---:|---:|---:|---:|---:|---:|\n")
    for r in sheet["parts"]:
        out.append(f"| {r['source']} | {r['split']} | {r['template']} | {r['rows_available']:,} | {r['capped']:,} | "
                   f"{r['dropped_empty']:,} | {r['deduplicated']:,} | {r['train']:,} | {r['validation']:,} |\n")
    if sheet.get("warnings"):
        out.append("\n## Warnings\n\n" + "".join(f"- {w}\n" for w in sheet["warnings"]))
    if sheet.get("not_yet_covered"):
        out.append("\n## Sources of the original mixture not yet covered\n\n"
                   + "".join(f"- {w}\n" for w in sheet["not_yet_covered"]))
    return "".join(out)


def _chart(sheet: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * max(len(sheet["by_language"]), len(sheet["by_task"]), 6) + 1.5))
    for ax, key, title in ((axes[0], "by_language", "language"), (axes[1], "by_task", "task cluster")):
        items = list(sheet[key].items())[::-1]
        ax.barh([k for k, _ in items], [v["train"] for _, v in items], color="#4c72b0")
        ax.set_title(f"train examples by {title}")
        ax.set_xlabel("examples")
    fig.suptitle(f"mixture {sheet['name']} ({sheet['splits']['train']:,} train rows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -- reuse ----------------------------------------------------------------------------------------------------

def load_built_mixture(path: str | Path):
    """The DatasetDict (train, validation) of a finished build."""
    from datasets import load_from_disk

    path = Path(path)
    if not is_built_mixture(path):
        raise BloomzTuneError(f"{path} is not a finished mixture build (expected {DATASHEET_JSON} and "
                              f"{DATASET_DIR}/); build one with `bloomz-tune mixture build SPEC --output {path}`")
    dsd = load_from_disk(str(path / DATASET_DIR))
    missing = [c for c in COLUMNS if c not in dsd["train"].column_names]
    if missing or set(dsd) != {"train", "validation"}:
        raise BloomzTuneError(f"{path}: the dataset lacks splits train/validation or columns {missing}")
    return dsd


def read_datasheet(path: str | Path) -> dict:
    return json.loads((Path(path) / DATASHEET_JSON).read_text(encoding="utf-8"))


def prepare_mixture(spec_path_or_built_dir: str | Path, cache_root: str | Path, num_proc: int = 1,
                    tokenizer=None) -> Path:
    """A finished build for a spec (reused from ``cache_root/<name>-<fingerprint>`` when present) or a built dir."""
    target = Path(spec_path_or_built_dir)
    if target.is_dir():
        load_built_mixture(target)
        return target
    spec = load_mixture_spec(target)
    tok = tokenizer if tokenizer is not None else spec.tokenizer
    fingerprint = mixture_fingerprint(spec, _tokenizer_name(tok))
    out = Path(cache_root) / f"{spec.name}-{fingerprint}"
    if is_built_mixture(out) and read_datasheet(out).get("fingerprint") == fingerprint:
        print0(f"mixture {spec.name}: reusing finished build {out}")
        return out
    return build_mixture(spec, out, num_proc=num_proc, tokenizer=tok, overwrite=True)


# -- command line ---------------------------------------------------------------------------------------------

def show_mixture(path: str | Path, samples_per_task: int = 2) -> str:
    """The datasheet and a few rendered samples per task cluster, as text."""
    dsd = load_built_mixture(path)
    lines = [(Path(path) / DATASHEET_MD).read_text(encoding="utf-8"), "\n## Samples\n"]
    train = dsd["train"]
    tasks = train.data.column("task").to_numpy(zero_copy_only=False)
    for task in sorted(set(tasks.tolist())):
        for i in np.flatnonzero(tasks == task)[:samples_per_task]:
            row = train[int(i)]
            choices = f"\nchoices: {row['choices']}" if row["choices"] else ""
            lines.append(f"\n### {task} · {row['language']} · {row['source']} :: {row['template']}\n"
                         f"```\n{row['inputs']}\n--> {row['targets']}{choices}\n```\n")
    return "".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`mixture build SPEC --output DIR [--num-proc N]` and `mixture show DIR`; 2 on a user error."""
    parser = argparse.ArgumentParser(prog="bloomz-tune mixture", description="Build and inspect xP3-style mixtures.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a mixture spec into a directory")
    b.add_argument("spec", help="mixture spec (YAML), e.g. data_mixtures/xp3_mini.yaml")
    b.add_argument("--output", "-o", required=True, help="directory to write the build to")
    b.add_argument("--num-proc", type=int, default=1, help="worker processes for rendering and saving")
    b.add_argument("--tokenizer", default=None, help="tokenizer (Hub id or folder) for token counts")
    b.add_argument("--overwrite", action="store_true", help="replace an existing build in --output")
    s = sub.add_parser("show", help="print a build's datasheet and sample rows")
    s.add_argument("dir", help="a built mixture directory")
    s.add_argument("--samples", type=int, default=2, help="samples per task cluster")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            out = build_mixture(args.spec, args.output, num_proc=args.num_proc, tokenizer=args.tokenizer,
                                overwrite=args.overwrite)
            print0(f"wrote {out} (datasheet: {out / DATASHEET_MD})")
        else:
            print0(show_mixture(args.dir, args.samples))
    except BloomzTuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
