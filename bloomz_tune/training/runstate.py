"""Whose a run directory is, which of its stages are done, and how one run replaces another without losing it.

- **Ownership**: ``.bloomz_tune.run`` (``RunDir.marker``) marks a folder as a bloomz_tune run. It is written when a
  run's checks have all passed, with its first file. ``check_start`` refuses a folder that holds anything else
  (``overwrite_output_dir`` never replaces a folder that is not one of our runs) and a folder that is, or holds, a
  model or data the run reads.
- **Stages**: the marker records what is done: ``trained`` (the last optimizer step), ``final`` (the size and
  content hash of every file of ``final/``), ``evaluated`` and ``finished`` (card written). A run whose stages are
  all done is finished: resuming it trains nothing; a run cut short after its last step completes only the
  missing stages.
- **Replacement**: a run that replaces an earlier one moves the earlier run's files into ``.replaced/`` once its
  checks have passed (``set_aside``), removes them only after it has finished (``drop_replaced``), and puts them
  back if it fails (``restore``). A replacement killed outright leaves them in ``.replaced/``; the next
  replacement of that folder keeps them there and discards the cut-short attempt (``.replaced/.moved`` says the
  move was whole; a move itself cut short is finished first).
- **Resuming with another recipe**: ``recipe_changes`` names the keys that differ from the saved
  ``recipe.resolved.yaml`` among those that shape the trained weights; a resume that changes one is refused.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.recipe import Recipe, load_recipe, recipe_to_dict
from bloomz_tune.storage import digests_problem, write_atomic
from bloomz_tune.training.rundir import RunDir

KIND = "bloomz_tune run"
MOVED = ".moved"  # in .replaced/: every entry of the replaced run is there

# Keys a resumed run may change: where it is, how it logs, evaluates and shares; not what it trains.
# Keys a resume may raise to train further (a finished run then resumes instead of being finished).
EXTENDING = ("training.max_steps", "training.num_train_epochs")
RESUME_MAY_CHANGE = ("output_dir", "overwrite_output_dir", "training.resume_from_checkpoint", "training.report_to",
                     "training.logging_steps", "training.dataloader_num_workers", "data.num_proc", "data.mixture_cache",
                     "eval.", "hub.") + EXTENDING


def read_stages(run_dir: Path) -> dict | None:
    """The stages recorded in the run's marker ({} when it records none); None when ``run_dir`` is not our run."""
    marker = RunDir(run_dir).marker
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text(encoding="utf-8"))
        stages = data.get("stages") if isinstance(data, dict) else None
        return stages if isinstance(stages, dict) else {}
    except (OSError, ValueError):
        return {}


def write_stages(run_dir: Path, stages: dict) -> None:
    write_atomic(RunDir(run_dir).marker, json.dumps({"kind": KIND, "stages": stages}, indent=1), durable=True)


def record_stage(run_dir: Path, name: str, value) -> None:
    """Record that stage ``name`` is done (rank 0)."""
    stages = read_stages(run_dir) or {}
    write_stages(run_dir, {**stages, name: value})


def final_problem(run_dir: Path) -> str | None:
    """None when ``final/`` holds exactly what the run saved there (recorded content hashes); else why not."""
    stages = read_stages(run_dir) or {}
    if not RunDir(run_dir).final.is_dir():
        return "there is no final/"
    if "final" not in stages:
        return "its save is not recorded as complete"
    problem = digests_problem(RunDir(run_dir).final, stages["final"])
    return problem and f"final/: {problem}"


def is_finished(run_dir: Path) -> bool:
    """Every stage recorded as done, final/ as it was saved and the results still there."""
    stages = read_stages(run_dir) or {}
    return (bool(stages.get("finished")) and RunDir(run_dir).results.is_file()
            and final_problem(run_dir) is None)


def content(run_dir: Path) -> list[Path]:
    """The entries of ``run_dir`` other than the lock and a run's staging folder."""
    rd = RunDir(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if p.name not in (rd.lock.name, rd.staging.name))


def overlap_problem(run_dir: Path, inputs: dict[str, str | Path | None]) -> str | None:
    """The problem when ``run_dir`` is, or holds, one of the local ``inputs`` ({what: path}) the run reads.

    A path that does not exist is a Hub id, except the mixture cache, which the run creates."""
    here = run_dir.expanduser().resolve()
    for what, path in inputs.items():
        if not path or (what != "data.mixture_cache" and not Path(path).expanduser().exists()):
            continue
        there = Path(path).expanduser().resolve()
        if there == here or here in there.parents:
            relation = "is" if there == here else "holds"
            return (f"output_dir {run_dir} {relation} {what} {path}, which the run reads: a run directory may be "
                    f"replaced or cleaned, so choose an output_dir of its own")
    return None


def run_inputs(recipe: Recipe) -> dict:
    """The local folders and files a run of ``recipe`` reads, which its directory must neither be nor hold."""
    inputs = {"model.name_or_path": recipe.model.name_or_path if recipe.model.tiny is None else None,
              "data.mixture": recipe.data.mixture, "data.mixture_cache": recipe.data.mixture_cache}
    inputs.update({f"eval.data_dirs.{k}": v for k, v in (recipe.eval.data_dirs or {}).items()})
    return inputs


def check_start(run_dir: Path, setting, checkpoint: Path | None, overwrite: bool,
                inputs: dict[str, str | Path | None]) -> str:
    """How the run may use ``run_dir``: ``fresh``, ``resume``, ``replace`` or ``finished``; or raise, naming why not.

    Nothing is written here. ``setting`` is training.resume_from_checkpoint, ``checkpoint`` what it resolved to.
    """
    problem = overlap_problem(run_dir, inputs)
    if problem:
        raise BloomzTuneError(problem)
    entries = content(run_dir)
    if not entries:
        return "fresh"
    stages = read_stages(run_dir)
    if stages is None:
        names = ", ".join(p.name for p in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise BloomzTuneError(
            f"output_dir {run_dir} holds files that are not a bloomz_tune run ({len(entries)} entries: {names}); a run "
            f"writes only into a new or empty folder or one of its own runs (marked by {RunDir(run_dir).marker.name}), "
            f"and overwrite_output_dir replaces only such a run: choose another output_dir")
    finished = is_finished(run_dir)
    if finished and setting not in (None, False):
        return "finished"
    if checkpoint is not None:  # resuming comes first: replacing would move the checkpoint aside
        return "resume"
    if overwrite:
        return "replace"
    if setting == "auto" and not finished:
        return "replace"  # an unfinished run with no complete checkpoint starts again; the old one is kept aside
    state = "a finished run (final/)" if finished else "an unfinished run"
    raise BloomzTuneError(f"{run_dir} already holds {state}; choose another output_dir, resume it with "
                          f"training.resume_from_checkpoint=auto, or replace it with overwrite_output_dir=true")


def _flat(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def recipe_changes(run_dir: Path, recipe: Recipe) -> list[str]:
    """Keys shaping the trained weights whose value differs from the run's saved recipe (``key: saved -> now``)."""
    path = RunDir(run_dir).recipe
    try:
        saved = _flat(recipe_to_dict(load_recipe(path)))
    except BloomzTuneError as err:
        return [f"{path.name} cannot be read back ({str(err).splitlines()[0][:200]})"]
    now = _flat(recipe_to_dict(recipe))
    return [f"{key}: {saved.get(key)!r} -> {now.get(key)!r}" for key in sorted(set(saved) | set(now))
            if not _same(saved.get(key), now.get(key)) and not key.startswith(RESUME_MAY_CHANGE)]


def extends_training(run_dir: Path, recipe: Recipe) -> bool:
    """Whether ``recipe`` asks for more steps or epochs than the run's saved recipe (training then continues)."""
    try:
        saved = load_recipe(RunDir(run_dir).recipe).training
    except BloomzTuneError:
        return False
    now = recipe.training
    return (now.max_steps, now.num_train_epochs) != (saved.max_steps, saved.num_train_epochs)


def _same(a, b) -> bool:
    """Equal values; two spellings of one existing path (relative, absolute) are the same value."""
    if a == b:
        return True
    if isinstance(a, str) and isinstance(b, str) and Path(a).expanduser().exists():
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    return False


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def set_aside(run_dir: Path, say=print) -> None:
    """Move the earlier run's files into ``.replaced/`` (they stay there until ``drop_replaced`` or ``restore``)."""
    rd = RunDir(run_dir)
    moved = rd.replaced / MOVED
    here = [p for p in content(run_dir) if p.name != rd.replaced.name]
    if moved.is_file():  # an earlier replacement was cut short: what is here is that attempt's, not the run's
        for p in here:
            _remove(p)
        say(f"overwrite_output_dir: a replacement of the run in {rd.replaced} was cut short; starting it again")
        return
    rd.replaced.mkdir(exist_ok=True)  # (a move cut short is finished here)
    for p in sorted(here, key=lambda p: p == rd.marker):  # the marker last: the folder stays ours meanwhile
        os.replace(p, rd.replaced / p.name)
    write_atomic(moved, "", durable=True)
    if here:
        say(f"overwrite_output_dir: the earlier run's {len(here)} entries are kept in {rd.replaced} until this run "
            f"has finished")


def restore(run_dir: Path, say=print) -> None:
    """Put the replaced run back where it was, removing the failed replacement's files."""
    rd = RunDir(run_dir)
    if not rd.replaced.is_dir():
        return
    for p in content(run_dir):
        if p.name != rd.replaced.name:
            _remove(p)
    (rd.replaced / MOVED).unlink(missing_ok=True)
    for p in rd.replaced.iterdir():
        os.replace(p, run_dir / p.name)
    rd.replaced.rmdir()
    say(f"the run did not finish: the earlier run in {run_dir} is back as it was")


def drop_replaced(run_dir: Path, say=print) -> None:
    """Remove the replaced run, now that the run replacing it has finished."""
    rd = RunDir(run_dir)
    if rd.replaced.is_dir():
        shutil.rmtree(rd.replaced)
        say(f"overwrite_output_dir: removed the replaced run ({rd.replaced})")
