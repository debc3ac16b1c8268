"""A built mixture's datasheet: its numbers (datasheet.json), their Markdown form, and token counts.

``datasheet.json`` says what the build holds: rows per split, language, task cluster, source and template, what
was capped, filtered, dropped as empty and deduplicated, and the language sampling. It depends on nothing but
the rows. Token counts depend on a tokenizer as well, so they are stored beside the build, one file per
tokenizer, without changing the build's identity::

    <build>/tokens/<tokenizer name>-<hash of its vocabulary>.json

Each holds rows, input tokens and target tokens per split, and per split under each language, task cluster,
source and "source :: template". Tokens are counted as BLOOMZ trains on them (docs/bloomz.md §1.5): inputs as
they are, targets with a leading space and an end-of-sequence token (``bloomz_tune.data.target_text``).
``datasheet_for(build, tokenizer)`` returns the datasheet with those counts, computing and storing them the
first time; ``datasheet.md`` then shows them, naming the tokenizer.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from pathlib import Path

from bloomz_tune import __version__, schema
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture_build import DATASET_DIR, BuildResult, Part

DATASHEET_JSON = "datasheet.json"
DATASHEET_MD = "datasheet.md"
TOKENS_DIR = "tokens"
SPLITS = ("train", "validation")
ROLLUPS = {"by_language": "language", "by_task": "task cluster", "by_source": "source",
           "by_template": "source :: template"}


# -- the datasheet of a build ---------------------------------------------------------------------------------

def build_datasheet(result: BuildResult) -> dict:
    """datasheet.json's content for a finished build."""
    spec, parts, sel = result.spec, result.parts, result.selection
    return {
        "name": spec.name,
        "description": spec.description,
        "fingerprint": result.fingerprint,
        "spec_file": spec.spec_path,
        "bloomz_tune_version": __version__,
        "seed": spec.seed,
        "splits": {s: sum(getattr(p, s) for p in parts) for s in SPLITS},
        **{key: _rollup(parts, key) for key in ROLLUPS},
        "language_sampling": {lang: {"available": sel.available[lang], "target": sel.targets[lang],
                                     "weight": (spec.language_weights or {}).get(lang)} for lang in sel.available},
        "processing": {
            "rows_read": sum(p.available for p in parts),
            "capped": sum(p.available - p.selected for p in parts),
            "dropped_empty": sum(p.selected - p.rendered for p in parts),
            "deduplicated": sum(p.deduplicated for p in parts),
            "filtered_out": {f"{s.spec.label} [{split.name}]": split.filtered_out
                             for s in result.sources for split in s.splits if split.filtered_out is not None},
        },
        "parts": [{"source": p.source.label, "split": p.split, "template": p.template,
                   "rows_available": p.available, "rows_selected": p.selected, "capped": p.available - p.selected,
                   "dropped_empty": p.selected - p.rendered, "deduplicated": p.deduplicated, "train": p.train,
                   "validation": p.validation} for p in parts],
        "warnings": result.warnings,
        "not_yet_covered": spec.not_yet_covered,
        "spec": schema.to_dict(spec),
        "build_seconds": round(result.seconds, 2),
    }


def _group_key(key: str, language: str, task: str, source: str, template: str) -> str:
    """The row of rollup ``key`` that a (language, task, source, template) belongs to."""
    return {"by_language": language, "by_task": task, "by_source": source,
            "by_template": f"{source} :: {template}"}[key]


def _rollup(parts: list[Part], key: str) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for p in parts:
        row = table.setdefault(_group_key(key, p.source.language, p.source.task, p.source.label, p.template),
                               {"train": 0, "validation": 0})
        row["train"] += p.train
        row["validation"] += p.validation
    total = sum(r["train"] for r in table.values()) or 1
    for row in table.values():
        row["share"] = round(row["train"] / total, 4)
    return dict(sorted(table.items(), key=lambda kv: -kv[1]["train"]))


def read_datasheet(path: str | Path) -> dict:
    """A build's datasheet.json."""
    file = Path(path) / DATASHEET_JSON
    if not file.is_file():
        raise BloomzTuneError(f"{path} is not a finished mixture build (no {DATASHEET_JSON})")
    return json.loads(file.read_text(encoding="utf-8"))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# -- Markdown ---------------------------------------------------------------------------------------------------

def datasheet_markdown(sheet: dict) -> str:
    """The readable datasheet (datasheet.md) from a datasheet dict (with token columns when it has counts)."""
    tok = bool(sheet.get("tokenizer"))
    p = sheet["processing"]
    counted = (f"with {sheet['tokenizer']} ({sheet['token_counts']}; inputs as they are, targets with a leading "
               f"space and EOS)" if tok else "not computed (give a tokenizer: `mixture build --tokenizer`)")
    out = [f"# Mixture datasheet: {sheet['name']}\n"]
    if sheet.get("description"):
        out.append(sheet["description"].strip() + "\n")
    out.append(f"- fingerprint: `{sheet['fingerprint']}` (spec `{sheet['spec_file']}`, seed {sheet['seed']})\n"
               f"- rows: {sheet['splits']['train']:,} train, {sheet['splits']['validation']:,} validation\n"
               f"- token counts: {counted}\n"
               f"- processing: {p['rows_read']:,} (source row, template) pairs, {p['capped']:,} left out by caps, "
               f"{p['dropped_empty']:,} dropped (empty input, or not exactly one target), "
               f"{p['deduplicated']:,} exact duplicates dropped\n")
    out += [f"- filter of {where}: {n:,} rows left out\n" for where, n in (p.get("filtered_out") or {}).items()]
    if tok:
        t = sheet["tokens"]["train"]
        out.append(f"- train tokens: {t['input']:,} input, {t['target']:,} target (target + EOS)\n")
    for key, title in ROLLUPS.items():
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
    if sheet.get("contamination"):  # written by `mixture contamination`; last, where that command puts it
        from bloomz_tune.contamination import contamination_markdown

        out.append("\n" + contamination_markdown(sheet["contamination"]))
    return "".join(out)


def _md_table(title: str, table: dict[str, dict], with_tokens: bool) -> str:
    head = f"| {title} | train | validation | share |" + (" input tokens | target tokens |" if with_tokens else "")
    lines = [head, "|---|---:|---:|---:|" + ("---:|---:|" if with_tokens else "")]
    for key, r in table.items():
        line = f"| {key} | {r['train']:,} | {r['validation']:,} | {100 * r['share']:.1f}% |"
        if with_tokens:
            line += f" {r['input_tokens']:,} | {r['target_tokens']:,} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


# -- token counts ------------------------------------------------------------------------------------------------

def datasheet_for(built_dir: str | Path, tokenizer=None, num_proc: int = 1, counted: dict | None = None) -> dict:
    """A build's datasheet; with ``tokenizer`` (a tokenizer, Hub id or folder) also its token counts for that
    tokenizer: read from ``tokens/``, or computed and stored there (and shown in datasheet.md) the first time.
    ``counted`` ({split: (input tokens, target tokens) per row}) gives splits already tokenized, e.g. by the
    training tokenization (``tokenization.tokenized_split``), so that they are not tokenized again."""
    built_dir = Path(built_dir)
    sheet = read_datasheet(built_dir)
    if tokenizer is None:
        return sheet
    tokenizer = load_tokenizer(tokenizer)
    path = built_dir / TOKENS_DIR / f"{tokenizer_id(tokenizer)}.json"
    counts = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if counts is None or counts.get("fingerprint") != sheet["fingerprint"]:
        path.parent.mkdir(exist_ok=True)
        counts = count_tokens(built_dir / DATASET_DIR, tokenizer, max(1, int(num_proc)), counted or {})
        counts = {"tokenizer": tokenizer_name(tokenizer), "file": f"{TOKENS_DIR}/{path.name}",
                  "fingerprint": sheet["fingerprint"], **counts}
        write_atomic(path, json.dumps(counts, indent=2, ensure_ascii=False) + "\n")
        sheet = with_token_counts(sheet, counts)
        write_atomic(built_dir / DATASHEET_MD, datasheet_markdown(sheet))
        return sheet
    return with_token_counts(sheet, counts)


def with_token_counts(sheet: dict, counts: dict) -> dict:
    """The datasheet with a tokens file's counts: totals per split, and input/target tokens in every rollup row
    (both splits together)."""
    sheet = copy.deepcopy(sheet)
    sheet["tokenizer"], sheet["token_counts"] = counts["tokenizer"], counts["file"]
    sheet["tokens"] = {s: {"input": c["input_tokens"], "target": c["target_tokens"]}
                       for s, c in counts["splits"].items()}
    for key in ROLLUPS:
        for name, row in sheet[key].items():
            by_split = counts[key].get(name, {})
            for kind in ("input_tokens", "target_tokens"):
                row[kind] = sum(c[kind] for c in by_split.values())
    return sheet


def count_tokens(dataset_dir: Path, tokenizer, num_proc: int, counted: dict) -> dict:
    """{"splits": {split: counts}, "by_language": {language: {split: counts}}, ...}, counts being rows, input
    tokens and target tokens; whole columns tokenized at once (``tokenization.token_counts``) unless ``counted``
    has the split's per-row counts already, then summed per group with Arrow."""
    from datasets import load_from_disk

    dsd = load_from_disk(str(dataset_dir))
    out: dict = {"splits": {}, **{key: {} for key in ROLLUPS}}
    for split in SPLITS:
        out["splits"][split] = {"rows": 0, "input_tokens": 0, "target_tokens": 0}
        for group in _token_sums(dsd[split], tokenizer, num_proc, counted.get(split)):
            _add(out["splits"][split], group)
            for key in ROLLUPS:
                name = _group_key(key, group["language"], group["task"], group["source"], group["template"])
                _add(out[key].setdefault(name, {}).setdefault(split, {}), group)
    return out


def _add(total: dict, group: dict) -> None:
    for kind in ("rows", "input_tokens", "target_tokens"):
        total[kind] = total.get(kind, 0) + group[kind]


def _token_sums(split, tokenizer, num_proc: int, counted) -> list[dict]:
    """Rows and token sums per (language, task, source, template) of one split."""
    import pyarrow as pa

    from bloomz_tune.tokenization import token_counts

    if not len(split):
        return []
    input_tokens, target_tokens = counted if counted is not None else token_counts(split, tokenizer, num_proc)
    if len(input_tokens) != len(split):
        raise BloomzTuneError(f"token counts for {len(input_tokens)} rows given for a split of {len(split)} rows")
    keys = ["language", "task", "source", "template"]
    table = split.select_columns(keys).with_format("arrow")[:]
    table = pa.table({**{k: table.column(k) for k in keys}, "input_tokens": pa.array(input_tokens, pa.int64()),
                      "target_tokens": pa.array(target_tokens, pa.int64())})
    grouped = table.group_by(keys).aggregate([("input_tokens", "sum"), ("target_tokens", "sum"),
                                              ("input_tokens", "count")])
    return [{**{k: g[k] for k in keys}, "rows": g["input_tokens_count"], "input_tokens": g["input_tokens_sum"],
             "target_tokens": g["target_tokens_sum"]} for g in grouped.to_pylist()]


def load_tokenizer(tokenizer):
    """A tokenizer as it is, or loaded from a Hub id or folder."""
    if not isinstance(tokenizer, (str, Path)):
        return tokenizer
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(tokenizer))
    except Exception as err:  # noqa: BLE001
        raise BloomzTuneError(f"could not load tokenizer {str(tokenizer)!r} for the mixture's token counts "
                              f"({type(err).__name__}); give a local folder or leave the tokenizer out") from None


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
