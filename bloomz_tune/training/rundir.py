"""The run directory belongs to one run at a time, and its checkpoints are whole or ignored.

- ``claim(run_dir)``: a lock file (``.bloomz_tune.lock``: pid, host, start time) on which the run holds an OS lock
  (``fcntl.flock``) before anything else is written. A second run into the same directory is refused, naming the
  holder; a lock file left by a process that is gone is taken over with a message (the kernel released its OS
  lock, so of two runs taking it over at once exactly one gets it).
- ``writable_problem``: whether a folder can be created and written (a real write, before the run starts).
- Checkpoints: the trainer writes a completion marker (``checkpoint_complete.json``: the size and SHA-256 of every
  file) into a checkpoint only after every process has finished writing it and its files are flushed to disk
  (``mark_complete``). ``resolve_resume`` takes the newest checkpoint whose marker is there and whose files
  still have their recorded content, and says which ones it skipped and why; ``remove_incomplete`` deletes the
  skipped ones so the resumed run can write those step numbers afresh. ``training_finished`` says whether a
  checkpoint is the last step's.
- ``trim_metrics``: after a resume, metrics.jsonl keeps only the steps up to the checkpoint, so no step is
  logged (or plotted) twice.

Whose a directory is, which stages of its run are done and how a run replaces another: ``training.runstate``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.datasheet import DATASHEET_JSON
from bloomz_tune.storage import digests_problem, folder_digests, pid_alive, write_atomic

MARKER = "checkpoint_complete.json"


@dataclass(frozen=True)
class RunDir:
    """The files of a run directory, named in this one place (finetune.py's docstring says what each holds)."""

    path: Path

    @property
    def lock(self) -> Path:
        return self.path / ".bloomz_tune.lock"

    @property
    def marker(self) -> Path:
        """Marks the folder as a bloomz_tune run and records which of its stages are done (``training.runstate``)."""
        return self.path / ".bloomz_tune.run"

    @property
    def replaced(self) -> Path:
        """Where an overwritten run waits, whole, until the run replacing it has finished."""
        return self.path / ".replaced"

    @property
    def staging(self) -> Path:
        """What a run prepares before its checks have passed (the demo's tiny base model), moved in afterwards."""
        return self.path / ".incoming"

    @property
    def base_model(self) -> Path:
        """The tiny demo's base model (a recipe with ``model.tiny``)."""
        return self.path / "base_model"

    @property
    def recipe(self) -> Path:
        return self.path / "recipe.resolved.yaml"

    @property
    def datasheet(self) -> Path:
        return self.path / DATASHEET_JSON

    @property
    def budget(self) -> Path:
        return self.path / "run.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def final(self) -> Path:
        return self.path / "final"

    @property
    def final_incoming(self) -> Path:
        """Where the final weights are written before they replace ``final``."""
        return self.path / ".final.incoming"

    @property
    def final_old(self) -> Path:
        return self.path / ".final.old"

    @property
    def eval(self) -> Path:
        return self.path / "eval"

    @property
    def results(self) -> Path:
        """The run's evaluation results: the sanity check, and the zero-shot summary when tasks ran."""
        return self.eval / "results.json"

    @property
    def zero_shot(self) -> Path:
        """The folder of the zero-shot evaluation's results.json, results.md and chart."""
        return self.eval / "zero_shot"

    @property
    def loss_plot(self) -> Path:
        return self.path / "loss.png"

    @property
    def described_by(self) -> tuple[Path, Path, Path]:
        """The files that describe the run and travel with its weights (to the Hub, into a merged model)."""
        return self.recipe, self.datasheet, self.budget


# ---- the lock ------------------------------------------------------------------------------------------------


class RunLock:
    """The claim on a run directory: an OS lock (``fcntl.flock``) held on the open lock file for the whole run.

    The kernel drops the lock when the holder's process ends, however it ends, so a lock file left by a killed run
    is taken over by the next run without a race: of two processes taking it over at once, one gets the OS lock
    and the other is refused. ``release()`` (or leaving the ``with`` block) removes the file and gives it up."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still holding the OS lock: no one takes a file being removed
        finally:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def claim(run_dir: Path, say=print) -> RunLock:
    """Create ``run_dir`` if needed and take its lock, or raise BloomzTuneError naming the run that holds it."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    path = RunDir(run_dir).lock
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(20):
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise _in_use(run_dir, path, _read_lock(path)) from None
        try:  # the file we locked may have been removed by its releasing holder meanwhile: then lock the new one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            os.close(fd)
            continue
        holder = _read_lock(path)
        if holder:
            if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int) and pid_alive(holder["pid"]):
                os.close(fd)  # a live process named in the file that holds no OS lock: a run of an older version
                raise _in_use(run_dir, path, holder)
            say(f"run directory {run_dir}: taking over the lock of process {holder.get('pid', '?')}, which is no "
                f"longer running (started {holder.get('started', '?')})")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        return RunLock(path, fd)
    raise BloomzTuneError(f"could not take the lock {path}: other runs keep taking and releasing it")


def _in_use(run_dir: Path, path: Path, holder: dict) -> BloomzTuneError:
    return BloomzTuneError(
        f"{run_dir} is in use by another run (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')}); choose another output_dir, or wait for that run to end "
        f"(if it is gone for good, delete {path})")


def _read_lock(path: Path) -> dict:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


# ---- what may be written where --------------------------------------------------------------------------------

def writable_problem(path: Path, what: str) -> str | None:
    """None when ``path`` is a folder that exists or can be created and written; else the problem, naming it."""
    if path.exists() and not path.is_dir():
        return f"{what} {path} is a file, not a folder"
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{what} {path} cannot be created: {existing} is a file"
    try:  # a real write, not os.access: it also sees read-only mounts, and root ignores permission bits
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"{what} {path} is not writable ({existing}: {err.strerror})"
    return None


# ---- checkpoints -------------------------------------------------------------------------------------------------

def mark_complete(checkpoint: Path, step: int) -> None:
    """Flush every file of ``checkpoint`` to disk, then write the marker (atomically) recording each file's size
    and content hash."""
    for p in sorted(checkpoint.rglob("*")):
        if p.is_file() and p.name != MARKER:
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    files = folder_digests(checkpoint, skip=(MARKER,))
    write_atomic(checkpoint / MARKER, json.dumps({"step": step, "files": files}), durable=True)


def checkpoint_problem(checkpoint: Path) -> str | None:
    """None when ``checkpoint`` is whole (every file as it was saved, by content hash); else why it cannot be
    resumed from."""
    marker = checkpoint / MARKER
    if not marker.is_file():
        return "its save was cut short (no completion marker)"
    try:
        files = json.loads(marker.read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MARKER} is unreadable"
    return digests_problem(checkpoint, files)


def training_finished(checkpoint: Path, max_steps: int, epochs: float) -> bool:
    """Whether ``checkpoint`` was saved at the run's last optimizer step: ``max_steps`` when the recipe counts steps,
    else the last step transformers planned for the same ``epochs`` (its trainer_state.json records both)."""
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        step = int(state["global_step"])
        if max_steps > 0:
            return step >= max_steps
        return state.get("num_train_epochs") == epochs and step >= int(state["max_steps"]) > 0
    except (OSError, ValueError, KeyError, TypeError):
        return False


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step of a ``checkpoint-N`` folder (-1 for another name)."""
    tail = checkpoint.name.rpartition("-")[2]
    return int(tail) if tail.isdigit() else -1


def resolve_resume(run_dir: Path, setting, say=print) -> Path | None:
    """The checkpoint to resume from (None: start fresh) for ``training.resume_from_checkpoint``.

    ``None``/``false``: start fresh. ``true``: the newest complete checkpoint, which must exist. ``auto``: the
    newest complete checkpoint if there is one, else start fresh. A path: that checkpoint, which must be whole.
    """
    if setting in (None, False):
        return None
    if isinstance(setting, str) and setting != "auto":
        path = Path(setting).expanduser()
        if not path.is_dir():
            raise BloomzTuneError(f"training.resume_from_checkpoint: no checkpoint folder {path}")
        problem = checkpoint_problem(path)
        if problem:
            raise BloomzTuneError(f"training.resume_from_checkpoint: {path} cannot be resumed from: {problem}")
        return path
    folder = RunDir(run_dir).checkpoints
    found = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir() and checkpoint_step(p) >= 0),
                   key=checkpoint_step, reverse=True) if folder.is_dir() else []
    for checkpoint in found:
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            say(f"resuming from {checkpoint} (step {checkpoint_step(checkpoint)}), the newest complete checkpoint")
            return checkpoint
        say(f"skipping {checkpoint}: {problem}")
    if setting == "auto":
        say(f"no complete checkpoint in {folder}: starting from the beginning")
        return None
    raise BloomzTuneError(f"training.resume_from_checkpoint=true but {folder} holds no complete checkpoint"
                          + (f" ({len(found)} incomplete)" if found else "") + "; use auto to start fresh instead")


def remove_incomplete(run_dir: Path, say=print) -> None:
    """Delete checkpoints that cannot be resumed from, so the resumed run writes those steps afresh."""
    folder = RunDir(run_dir).checkpoints
    for checkpoint in sorted(folder.glob("checkpoint-*")) if folder.is_dir() else []:
        problem = checkpoint_problem(checkpoint)
        if checkpoint.is_dir() and problem:
            shutil.rmtree(checkpoint)
            say(f"removed {checkpoint}: {problem}")


def trim_metrics(path: Path, last_step: int) -> None:
    """Keep only the metrics.jsonl records up to ``last_step`` (rewritten atomically)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= last_step:
                kept.append(line)
        except ValueError:  # a line cut short by the kill
            continue
    write_atomic(path, "".join(line + "\n" for line in kept))
