"""A built mixture's datasheet: its numbers (datasheet.json), their Markdown form, and token counts.

``datasheet.json`` says what the build holds: rows per split, language, task cluster, source and template, what
was capped, filtered, dropped as empty and deduplicated, and the language sampling. It depends on nothing but
the rows. Token counts depend on a tokenizer as well, so they are stored beside the build, one file per
tokenizer, without changing the build's identity::

    <build>/tokens/<tokenizer name>-<hash of its vocabulary>.json

Each holds rows, input tokens and target tokens per split, and per split under each language, task cluster,
source and "source :: template". Tokens are counted as BLOOMZ trains on them (docs/bloomz.md §1.5): inputs as
they are, targets with a leading space and an end-of-sequence token (``bloomz_tune.tokens.batches.target_text``).
``datasheet_for(build, tokenizer)`` returns the datasheet with those counts, computing and storing them the
first time; ``datasheet.md`` then shows them, naming the tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from bloomz_tune import schema
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.build import BuildResult, Part
from bloomz_tune.version import __version__

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
        "not_yet_covered": spec.not_yet_covered + [f"{s.label}: {s.skip}" for s in spec.sources if s.skip],
        "spec": schema.to_dict(spec),
        "build_seconds": round(result.seconds, 2),
    }


def group_key(key: str, language: str, task: str, source: str, template: str) -> str:
    """The row of rollup ``key`` that a (language, task, source, template) belongs to."""
    return {"by_language": language, "by_task": task, "by_source": source,
            "by_template": f"{source} :: {template}"}[key]


def _rollup(parts: list[Part], key: str) -> dict[str, dict]:
    table: dict[str, dict] = {}
    for p in parts:
        row = table.setdefault(group_key(key, p.source.language, p.source.task, p.source.label, p.template),
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
    if sheet.get(CONTAMINATION_KEY):  # written by `mixture contamination`; last, where that command puts it
        out.append("\n" + contamination_markdown(sheet[CONTAMINATION_KEY]))
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


# -- the contamination section (written by `mixture contamination`) ------------------------------------------

CONTAMINATION_KEY = "contamination"  # the datasheet.json key of the report
CONTAMINATION_HEADING = "## Evaluation contamination"
WORST = 3  # sources named per dataset in the Markdown table (the JSON holds them all)


def contamination_markdown(report: dict) -> str:
    """The datasheet.md section (also what the command prints)."""
    n = report["ngram"]
    lines = [f"{CONTAMINATION_HEADING}\n\n",
             f"Evaluation examples that share a {n}-token n-gram with a row (inputs and targets) of the train split "
             f"({report['training_rows']:,} rows), measured by `bloomz-tune mixture contamination`. Tokens: "
             f"{report['rule']}"
             + (f" Key rule: {report['key_rule']} (column `key`; an example either rule finds counts once)."
                if report.get("key_rule") else "")
             + " Verbatim overlap only: paraphrases and translations are not found. Worst sources: "
             "evaluation examples they overlap (their rows).\n\n",
             "| dataset | language | split | examples | contaminated | share | n-gram | key | worst sources |\n"
             "|---|---|---|---:|---:|---:|---:|---:|---|\n"]
    for d in report["datasets"].values():
        named = list(d["sources"].items())
        worst = "; ".join(f"{name}: {c['examples']:,} ({c['rows']:,})" for name, c in named[:WORST])
        more = f"; {len(named) - WORST} more" if len(named) > WORST else ""
        rules = d.get("by_rule") or {}
        lines.append(f"| {d['title']} | {d['language']} | {d['split']} | {d['examples']:,} | {d['contaminated']:,} "
                     f"| {100 * d['share']:.2f}% | {rules.get('ngram', '-')} | {rules.get('key', '-')} "
                     f"| {worst or '-'}{more} |\n")
    return "".join(lines)
