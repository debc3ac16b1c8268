"""Token counts of a built mixture for one tokenizer, stored beside the build without changing its identity::

    <build>/tokens/<tokenizer name>-<hash of its vocabulary>.json

Each holds rows, input tokens and target tokens per split, and per split under each language, task cluster,
source and "source :: template". Tokens are counted as BLOOMZ trains on them (docs/bloomz.md §1.5): inputs as
they are, targets with a leading space and an end-of-sequence token (``tokenizing.target_text``).
``datasheet_for(build, tokenizer)`` returns the datasheet with those counts, computing and storing them the
first time; ``datasheet.md`` then shows them, naming the tokenizer.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.build import DATASET_DIR
from bloomz_tune.mixture.builds import build_mixture, cache_dir, prepare_mixture, register_build
from bloomz_tune.mixture.datasheet import (
    DATASHEET_MD,
    ROLLUPS,
    SPLITS,
    TOKENS_DIR,
    datasheet_markdown,
    group_key,
    read_datasheet,
)
from bloomz_tune.mixture.spec import MixtureSpec, load_mixture_spec, mixture_fingerprint
from bloomz_tune.runtime import print0
from bloomz_tune.storage import write_atomic, write_json
from bloomz_tune.tokens.tokenizing import load_tokenizer, token_counts, tokenizer_id, tokenizer_name


def build_and_count(spec, output_dir=None, cache=None, num_proc: int = 1, tokenizer=None,
                    overwrite: bool = False) -> Path:
    """Build a mixture (or reuse its finished build) and store token counts for ``tokenizer`` beside it.

    ``spec``: a spec file, a MixtureSpec or a finished build folder. Without ``output_dir`` the build is the one in
    ``cache`` with the spec's fingerprint (built there when missing, rebuilt with ``overwrite``); with
    ``output_dir`` it is built there and registered in ``cache``. ``tokenizer`` defaults to the spec's
    ``tokenizer`` and is loaded before anything is built, so a bad one fails first; the counts never decide
    which build is used.
    """
    is_spec = isinstance(spec, MixtureSpec) or not Path(spec).is_dir()
    if is_spec and not isinstance(spec, MixtureSpec):
        spec = load_mixture_spec(spec)
    tokenizer = load_tokenizer(tokenizer if tokenizer is not None or not is_spec else spec.tokenizer)
    if output_dir is not None:
        if not is_spec:
            raise BloomzTuneError(f"{spec} is already a build; give a spec to build into {output_dir}")
        built = build_mixture(spec, output_dir, num_proc=num_proc, overwrite=overwrite)
        pointer = register_build(built, cache) if cache is not None else None
        if pointer is not None:
            print0(f"registered in the mixture cache: {pointer}")
    elif overwrite and is_spec:
        built = build_mixture(spec, cache_dir(cache, spec.name, mixture_fingerprint(spec)), num_proc=num_proc,
                              overwrite=True)
    else:
        built = prepare_mixture(spec, cache, num_proc=num_proc)
    if tokenizer is not None:
        datasheet_for(built, tokenizer, num_proc)
    return Path(built)


def datasheet_for(built_dir: str | Path, tokenizer=None, num_proc: int = 1, counted: dict | None = None) -> dict:
    """A build's datasheet; with ``tokenizer`` (a tokenizer, Hub id or folder) also its token counts for that
    tokenizer: read from ``tokens/``, or computed and stored there (and shown in datasheet.md) the first time.
    ``counted`` ({split: (input tokens, target tokens) per row}) gives splits already tokenized, e.g. by the
    training tokenization (``tokenizing.tokenized_split``), so that they are not tokenized again."""
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
        write_json(path, counts)
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
    tokens and target tokens; whole columns tokenized at once (``tokenizing.token_counts``) unless ``counted``
    has the split's per-row counts already, then summed per group with Arrow."""
    from datasets import load_from_disk

    dsd = load_from_disk(str(dataset_dir))
    out: dict = {"splits": {}, **{key: {} for key in ROLLUPS}}
    for split in SPLITS:
        out["splits"][split] = {"rows": 0, "input_tokens": 0, "target_tokens": 0}
        for group in _token_sums(dsd[split], tokenizer, num_proc, counted.get(split)):
            _add(out["splits"][split], group)
            for key in ROLLUPS:
                name = group_key(key, group["language"], group["task"], group["source"], group["template"])
                _add(out[key].setdefault(name, {}).setdefault(split, {}), group)
    return out


def _add(total: dict, group: dict) -> None:
    for kind in ("rows", "input_tokens", "target_tokens"):
        total[kind] = total.get(kind, 0) + group[kind]


def _token_sums(split, tokenizer, num_proc: int, counted) -> list[dict]:
    """Rows and token sums per (language, task, source, template) of one split."""
    import pyarrow as pa


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


