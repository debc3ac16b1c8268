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

    from bloomz_tune import build_mixture
    from bloomz_tune.mixture.builds import load_built_mixture
    built = build_mixture("data_mixtures/demo.yaml", cache="runs/mixtures")   # builds or reuses
    dsd = load_built_mixture(built)        # DatasetDict: train / validation

The spec (``spec.py``), the build steps (``build.py``), the datasheet (``datasheet.py``) and the chart
(``bloomz_tune/charts.py``) each have their module; token counts for a tokenizer are the tokens stage's
(``tokens/counts.py``); this one holds the entry points.

Where this differs from BLOOMZ, and why: BLOOMZ split 95/5 after rendering (docs/bloomz.md §1.4), so the same
example could sit in train under one prompt and in validation under another; here the split is by source
example, so validation rows are unseen examples. Duplicates between validation and train are dropped from train.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from bloomz_tune.charts import plot_mixture
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.build import COLUMNS, DATASET_DIR, build_rows
from bloomz_tune.mixture.datasheet import (
    DATASHEET_JSON,
    DATASHEET_MD,
    build_datasheet,
    datasheet_markdown,
    read_datasheet,
)
from bloomz_tune.mixture.spec import (
    MixtureSpec,
    load_mixture_spec,
    mixture_fingerprint,
)
from bloomz_tune.recipe import DataSection
from bloomz_tune.runtime import interactive, print0
from bloomz_tune.storage import digests_problem, folder_digests, pid_alive, write_atomic, write_json

CHART_PNG = "distribution.png"
DEFAULT_CACHE = DataSection.mixture_cache


# -- building ---------------------------------------------------------------------------------------------------

BUILD_MARKER = ".bloomz_tune.build"  # marks a build of ours; records its dataset files' sizes and SHA-256
BUILDING_PREFIX, BUILDING_TAG = ".", ".building-"  # a build in progress: .<name>.building-<pid>


def remove_orphan_builds(folder: Path) -> None:
    """Delete the temporary folders of builds whose process is gone (killed builds leave them behind)."""
    for tmp in folder.glob(f"{BUILDING_PREFIX}*{BUILDING_TAG}*"):
        pid = tmp.name.rpartition(BUILDING_TAG)[2]
        if tmp.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            print0(f"removed {tmp}: the temporary folder of a build whose process ({pid}) is gone")


def build_mixture(spec_or_path: MixtureSpec | str | Path, output_dir: str | Path, num_proc: int = 1,
                  overwrite: bool = False, progress: bool | None = None) -> Path:
    """Build a mixture into ``output_dir`` (dataset/, datasheet.json, datasheet.md, distribution.png).

    Token counts for a tokenizer are added beside the build by the tokens stage (``tokens.counts``). The build is written to a temporary
    folder next to ``output_dir`` and renamed at the end, so an interrupted build never looks finished.
    Returns ``output_dir``.
    """
    spec = spec_or_path if isinstance(spec_or_path, MixtureSpec) else load_mixture_spec(spec_or_path)
    output_dir = Path(output_dir)
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        if not overwrite:
            raise BloomzTuneError(f"{output_dir} already exists and is not empty; choose another --output or "
                                  f"pass overwrite=True (--overwrite)")
        if not is_our_build(output_dir):
            raise BloomzTuneError(f"{output_dir} is not a mixture build of bloomz_tune (no {BUILD_MARKER}, "
                                  f"{DATASHEET_JSON} and {DATASET_DIR}/): overwrite replaces only a build; choose "
                                  f"another --output")
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
        write_atomic(tmp / BUILD_MARKER, json.dumps({"kind": "bloomz_tune mixture build", "files": folder_digests(
            tmp / DATASET_DIR)}, indent=1), durable=True)
        aside = tmp.with_name(tmp.name + "-replaced")
        if output_dir.exists():  # the earlier build (ours, checked above) stays whole until the new one is in place
            os.replace(output_dir, aside)
        os.replace(tmp, output_dir)
        shutil.rmtree(aside, ignore_errors=True)
        print0(f"mixture {spec.name}: {sheet['splits']['train']} train / {sheet['splits']['validation']} "
               f"validation rows in {sheet['build_seconds']:.1f}s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if bars_were_on:
            datasets.enable_progress_bars()
    return output_dir


def is_built_mixture(path: str | Path) -> bool:
    path = Path(path)
    return (path / DATASHEET_JSON).is_file() and (path / DATASET_DIR / "dataset_dict.json").is_file()


def is_our_build(path: Path) -> bool:
    """Whether ``path`` holds a build of ours: its marker (or, for a build made before markers, its two files)."""
    return is_built_mixture(path)


def build_problem(path: Path) -> str | None:
    """None when the build's dataset files are as they were written (content hashes in its marker); else what
    changed. A build made before markers is not checked."""
    marker = path / BUILD_MARKER
    if not marker.is_file():
        return None
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {BUILD_MARKER} is unreadable"
    return digests_problem(path / DATASET_DIR, files)


def load_built_mixture(path: str | Path):
    """The DatasetDict (train, validation) of a finished build."""
    from datasets import load_from_disk

    path = Path(path)
    if not is_built_mixture(path):
        raise BloomzTuneError(f"{path} is not a finished mixture build (expected {DATASHEET_JSON} and "
                              f"{DATASET_DIR}/); build one with `bloomz-tune mixture build SPEC --output {path}`")
    problem = build_problem(path)
    if problem:
        raise BloomzTuneError(f"the mixture build {path} is damaged ({DATASET_DIR}/{problem}); build it again with "
                              f"`bloomz-tune mixture build SPEC --output {path} --overwrite`")
    try:
        dsd = load_from_disk(str(path / DATASET_DIR))
    except (OSError, ValueError) as err:  # Arrow's errors are ValueError/OSError subclasses
        raise BloomzTuneError(f"the mixture build {path} cannot be read ({type(err).__name__}: {str(err)[:200]}); "
                              f"build it again") from None
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
    write_json(pointer, {"path": str(built_dir), "name": sheet["name"], "fingerprint": sheet["fingerprint"]})
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
            problem = build_problem(path)
            if problem is None:
                return path
            print0(f"mixture build {path} is damaged ({DATASET_DIR}/{problem}): not reused")
    return None


def prepare_mixture(spec_path_or_built_dir: str | Path | MixtureSpec, cache_root: str | Path,
                    num_proc: int = 1) -> Path:
    """A finished build: a build folder as it is; for a spec, the finished build with its fingerprint found in
    ``cache_root`` (its own ``<name>-<fingerprint>`` folder, or one that ``mixture build --output`` registered),
    else a new build there."""
    if not isinstance(spec_path_or_built_dir, MixtureSpec) and Path(spec_path_or_built_dir).is_dir():
        load_built_mixture(spec_path_or_built_dir)
        built = Path(spec_path_or_built_dir)
    else:
        spec = spec_path_or_built_dir
        spec = spec if isinstance(spec, MixtureSpec) else load_mixture_spec(spec)
        fingerprint = mixture_fingerprint(spec)
        built = find_build(cache_root, spec.name, fingerprint)
        if built is None:
            return build_mixture(spec, cache_dir(cache_root, spec.name, fingerprint), num_proc=num_proc,
                                 overwrite=True)
        print0(f"mixture {spec.name}: reusing finished build {built}")
    return built


# -- inspecting ------------------------------------------------------------------------------------------------

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
