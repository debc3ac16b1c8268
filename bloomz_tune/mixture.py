"""xP3-style multitask mixtures: a YAML spec in, a reproducible Arrow dataset and its datasheet out.

Build and inspect a mixture::

    bloomz-tune mixture build data_mixtures/demo.yaml [--num-proc 4] [--tokenizer bigscience/bloom-560m]
    bloomz-tune mixture build data_mixtures/demo.yaml --output runs/mixtures/demo
    bloomz-tune mixture show runs/mixtures/demo
    bloomz-tune mixture contamination runs/mixtures/demo --tasks xnli,xcopa [--data-dir xnli=FOLDER ...]
    bloomz-tune mixture build --help          # every spec, source and template-file key

Without ``--output`` a build goes to the mixture cache (``--cache``, by default the recipe's
``data.mixture_cache``) as ``<name>-<fingerprint>``; with ``--output DIR`` it goes to DIR and is registered in
the cache (``<cache>/<name>-<fingerprint>.json`` names DIR). Either way training, which asks the cache for the
spec's fingerprint, reuses it. From Python::

    from bloomz_tune.mixture import prepare_mixture, load_built_mixture, datasheet_for
    built = prepare_mixture("data_mixtures/demo.yaml", cache_root="runs/mixtures")   # builds or reuses
    dsd = load_built_mixture(built)        # DatasetDict: train / validation
    sheet = datasheet_for(built, tokenizer)  # the datasheet, with token counts for that tokenizer

The spec (``mixture_spec.py``), the build steps (``mixture_build.py``), the datasheet and token counts
(``datasheet.py``) and the chart (``charts.py``) each have their module; this one holds the entry points.

Where this differs from BLOOMZ, and why: BLOOMZ split 95/5 after rendering (docs/bloomz.md §1.4), so the same
example could sit in train under one prompt and in validation under another; here the split is by source
example, so validation rows are unseen examples. Duplicates between validation and train are dropped from train.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from bloomz_tune.charts import plot_mixture
from bloomz_tune.datasheet import (DATASHEET_JSON, DATASHEET_MD, build_datasheet, datasheet_for, datasheet_markdown,
                                   load_tokenizer, read_datasheet, write_atomic)
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture_build import COLUMNS, DATASET_DIR, build_rows
from bloomz_tune.mixture_spec import (BLOOMZ_LANGUAGE_WEIGHTS, MAX_EXAMPLES_PER_DATASET_PROMPT, MixtureSpec,
                                      SourceSpec, load_mixture_spec, mixture_fingerprint, source_templates,
                                      spec_help)
from bloomz_tune.recipe import DataSection
from bloomz_tune.runtime import interactive, print0

__all__ = ["BLOOMZ_LANGUAGE_WEIGHTS", "CHART_PNG", "COLUMNS", "DATASET_DIR", "DATASHEET_JSON", "DATASHEET_MD",
           "DEFAULT_CACHE", "MAX_EXAMPLES_PER_DATASET_PROMPT", "MixtureSpec", "SourceSpec", "build_mixture",
           "datasheet_for", "find_build", "is_built_mixture", "load_built_mixture", "load_mixture_spec", "main",
           "mixture_fingerprint", "prepare_mixture", "read_datasheet", "register_build", "show_mixture",
           "source_templates"]

CHART_PNG = "distribution.png"
DEFAULT_CACHE = DataSection.mixture_cache


# -- building ---------------------------------------------------------------------------------------------------

BUILDING_PREFIX, BUILDING_TAG = ".", ".building-"  # a build in progress: .<name>.building-<pid>


def remove_orphan_builds(folder: Path) -> None:
    """Delete the temporary folders of builds whose process is gone (killed builds leave them behind)."""
    from .rundir import pid_alive

    for tmp in folder.glob(f"{BUILDING_PREFIX}*{BUILDING_TAG}*"):
        pid = tmp.name.rpartition(BUILDING_TAG)[2]
        if tmp.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            print0(f"removed {tmp}: the temporary folder of a build whose process ({pid}) is gone")


def build_mixture(spec_or_path: MixtureSpec | str | Path, output_dir: str | Path, num_proc: int = 1,
                  tokenizer=None, overwrite: bool = False, progress: bool | None = None) -> Path:
    """Build a mixture into ``output_dir`` (dataset/, datasheet.json, datasheet.md, distribution.png).

    ``tokenizer`` (a tokenizer, Hub id or folder; default the spec's ``tokenizer``) adds token counts beside the
    build (``tokens/``, see ``datasheet_for``); it does not change the rows. The build is written to a temporary
    folder next to ``output_dir`` and renamed at the end, so an interrupted build never looks finished.
    Returns ``output_dir``.
    """
    spec = spec_or_path if isinstance(spec_or_path, MixtureSpec) else load_mixture_spec(spec_or_path)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise BloomzTuneError(f"{output_dir} already exists and is not empty; choose another --output or "
                              f"pass overwrite=True (--overwrite)")
    tokenizer = load_tokenizer(tokenizer if tokenizer is not None else spec.tokenizer)  # fails before the build
    fingerprint = mixture_fingerprint(spec)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_orphan_builds(output_dir.parent)
    tmp = output_dir.parent / f"{BUILDING_PREFIX}{output_dir.name}{BUILDING_TAG}{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    import datasets

    bars_were_on = datasets.is_progress_bar_enabled()
    if progress is None:  # bars on a terminal or in a notebook; plain lines in a log file or a pipe
        progress = interactive()
    if not progress:
        datasets.disable_progress_bars()
    try:
        result = build_rows(spec, tmp, fingerprint, max(1, int(num_proc)), progress)
        sheet = build_datasheet(result)
        (tmp / DATASHEET_JSON).write_text(json.dumps(sheet, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (tmp / DATASHEET_MD).write_text(datasheet_markdown(sheet), encoding="utf-8")
        plot_mixture(sheet, tmp / CHART_PNG)
        shutil.rmtree(tmp / "_work", ignore_errors=True)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        os.replace(tmp, output_dir)
        print0(f"mixture {spec.name}: {sheet['splits']['train']} train / {sheet['splits']['validation']} "
               f"validation rows in {sheet['build_seconds']:.1f}s")
        if tokenizer is not None:
            datasheet_for(output_dir, tokenizer, num_proc)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
    return output_dir


def is_built_mixture(path: str | Path) -> bool:
    path = Path(path)
    return (path / DATASHEET_JSON).is_file() and (path / DATASET_DIR / "dataset_dict.json").is_file()


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


# -- the cache --------------------------------------------------------------------------------------------------

def cache_dir(cache_root: str | Path, name: str, fingerprint: str) -> Path:
    """Where a build of this spec goes in the cache."""
    return Path(cache_root).expanduser() / f"{name}-{fingerprint}"


def _pointer(cache_root: str | Path, name: str, fingerprint: str) -> Path:
    folder = cache_dir(cache_root, name, fingerprint)
    return folder.with_name(folder.name + ".json")


def register_build(built_dir: str | Path, cache_root: str | Path) -> Path | None:
    """Record a finished build made outside the cache (``mixture build --output``) in the cache, so that
    ``prepare_mixture`` reuses it: ``<cache>/<name>-<fingerprint>.json`` names its folder. Returns that file
    (None when the build is the cache's own folder)."""
    built_dir = Path(built_dir).resolve()
    sheet = read_datasheet(built_dir)
    if built_dir == cache_dir(cache_root, sheet["name"], sheet["fingerprint"]).resolve():
        return None
    pointer = _pointer(cache_root, sheet["name"], sheet["fingerprint"])
    pointer.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(pointer, json.dumps({"path": str(built_dir), "name": sheet["name"],
                                      "fingerprint": sheet["fingerprint"]}, indent=2) + "\n")
    return pointer


def find_build(cache_root: str | Path, name: str, fingerprint: str) -> Path | None:
    """A finished build with this fingerprint: the cache's own folder, or one registered there. A pointer to
    a folder that is gone or holds another fingerprint is ignored."""
    candidates = [cache_dir(cache_root, name, fingerprint)]
    pointer = _pointer(cache_root, name, fingerprint)
    if pointer.is_file():
        try:
            candidates.append(Path(json.loads(pointer.read_text(encoding="utf-8"))["path"]))
        except (ValueError, KeyError, TypeError):
            pass
    for path in candidates:
        if is_built_mixture(path) and read_datasheet(path).get("fingerprint") == fingerprint:
            return path
    return None


def prepare_mixture(spec_path_or_built_dir: str | Path, cache_root: str | Path, num_proc: int = 1,
                    tokenizer=None) -> Path:
    """A finished build: a build folder as it is; for a spec, the finished build with its fingerprint found in
    ``cache_root`` (its own ``<name>-<fingerprint>`` folder, or one that ``mixture build --output`` registered),
    else a new build there. With ``tokenizer`` (default: the spec's ``tokenizer``) its token counts are stored
    beside the build too (see ``datasheet_for``); they never decide which build is used."""
    target = Path(spec_path_or_built_dir)
    if target.is_dir():
        load_built_mixture(target)
        built = target
    else:
        spec = load_mixture_spec(target)
        tokenizer = load_tokenizer(tokenizer if tokenizer is not None else spec.tokenizer)
        fingerprint = mixture_fingerprint(spec)
        built = find_build(cache_root, spec.name, fingerprint)
        if built is None:
            return build_mixture(spec, cache_dir(cache_root, spec.name, fingerprint), num_proc=num_proc,
                                 tokenizer=tokenizer, overwrite=True)
        print0(f"mixture {spec.name}: reusing finished build {built}")
    if tokenizer is not None:
        datasheet_for(built, tokenizer, num_proc)
    return built


# -- command line -----------------------------------------------------------------------------------------------

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bloomz-tune mixture", description="Build and inspect xP3-style mixtures.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a mixture spec (into the cache, or into --output)",
                       description="Build a mixture spec. Without --output the build goes to the cache as "
                                   "<name>-<fingerprint>; with --output DIR it goes to DIR and is registered in the "
                                   "cache. Training reuses either.",
                       epilog=spec_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("spec", help="mixture spec (YAML), e.g. data_mixtures/xp3_mini.yaml")
    b.add_argument("--output", "-o", default=None, help="build into this folder (and register it in the cache)")
    b.add_argument("--cache", default=DEFAULT_CACHE,
                   help=f"the mixture cache, as the recipe's data.mixture_cache (default: {DEFAULT_CACHE})")
    b.add_argument("--num-proc", type=int, default=1, help="worker processes for rendering, saving, counting")
    b.add_argument("--tokenizer", default=None,
                   help="tokenizer (Hub id or folder) whose token counts are stored beside the build")
    b.add_argument("--overwrite", action="store_true", help="replace an existing build instead of keeping it")
    s = sub.add_parser("show", help="print a build's datasheet and sample rows")
    s.add_argument("dir", help="a built mixture directory")
    s.add_argument("--samples", type=int, default=2, help="samples per task cluster")
    from bloomz_tune import contamination

    contamination.add_arguments(sub.add_parser("contamination", help="share of evaluation examples that share an "
                                                                     "n-gram with the build's training rows"))
    return parser


def _build_command(args) -> Path:
    if args.output:
        out = build_mixture(args.spec, args.output, num_proc=args.num_proc, tokenizer=args.tokenizer,
                            overwrite=args.overwrite)
        pointer = register_build(out, args.cache)
        if pointer is not None:
            print0(f"registered in the mixture cache: {pointer}")
        return out
    if args.overwrite:
        spec = load_mixture_spec(args.spec)
        return build_mixture(spec, cache_dir(args.cache, spec.name, mixture_fingerprint(spec)),
                             num_proc=args.num_proc, tokenizer=args.tokenizer, overwrite=True)
    return prepare_mixture(args.spec, args.cache, num_proc=args.num_proc, tokenizer=args.tokenizer)


def main(argv: list[str] | None = None) -> int:
    """`mixture build SPEC [--output DIR] [--cache DIR] ...`, `mixture show DIR` and `mixture contamination DIR
    --tasks ...`; 2 on a user error."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "build":
            out = _build_command(args)
            print0(f"wrote {out} (datasheet: {out / DATASHEET_MD})")
        elif args.command == "contamination":
            from bloomz_tune.contamination import command

            command(args)
        else:
            print0(show_mixture(args.dir, args.samples))
    except BloomzTuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
