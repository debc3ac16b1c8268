"""Runs that survive: a run directory claimed by one run, checkpoints whole or ignored, resume after a kill."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.finetune import run
from bloomz_tune.recipe import load_recipe
from bloomz_tune.training.rundir import MARKER, RunDir

LOCK_NAME = RunDir(Path(".")).lock.name

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _overrides(run_dir, cache, *extra):
    return [f"output_dir={run_dir}", f"data.mixture_cache={cache}",
            f"data.mixture={ROOT / 'data_mixtures' / 'demo.yaml'}", "training.max_steps=12",
            "training.save_steps=4", "training.save_total_limit=null", "training.logging_steps=2",
            "eval.sanity=false", *extra]


def _run(run_dir, cache, *extra):
    return run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml", _overrides(run_dir, cache, *extra)))


def _steps(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["step"] for r in map(json.loads, lines) if "loss" in r]


def _tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_killed_mid_save_resumes_to_the_same_weights(tmp_path):
    """SIGKILL while checkpoint-8 is being written; resume skips it, starts from checkpoint-4, ends identical."""
    cache = tmp_path / "mixtures"
    _run(tmp_path / "whole", cache)
    killed = tmp_path / "killed"
    done = subprocess.run([sys.executable, "tests/kill_mid_save.py", "8", "recipes/tiny_demo.yaml",
                           *_overrides(killed, cache)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    assert (killed / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors").is_file()
    assert not (killed / "checkpoints" / "checkpoint-8" / MARKER).exists()
    assert max(_steps(killed)) == 8  # the log ran past the last complete checkpoint (4)

    with pytest.raises(BloomzTuneError, match="already holds an unfinished run"):
        _run(killed, cache)  # a plain re-run would start over: refused
    results = _run(killed, cache, "training.resume_from_checkpoint=auto")
    assert results is not None
    assert _steps(killed) == _steps(tmp_path / "whole")  # every step once, as in the uninterrupted run
    losses = {r["step"]: r["loss"] for r in map(json.loads, (killed / "metrics.jsonl").read_text().splitlines())
              if "loss" in r}
    whole = {r["step"]: r["loss"] for r in map(json.loads, (tmp_path / "whole" / "metrics.jsonl").read_text()
                                                  .splitlines()) if "loss" in r}
    assert losses == whole
    a = load_file(str(tmp_path / "whole" / "final" / "adapter_model.safetensors"))
    b = load_file(str(killed / "final" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bit-identical
    assert not (killed / LOCK_NAME).exists()


@pytest.mark.slow
def test_newest_truncated_checkpoint_is_skipped_with_a_message(tmp_path, capsys):
    cache = tmp_path / "mixtures"
    run_dir = tmp_path / "run"
    _run(run_dir, cache, "training.max_steps=8")
    weights = run_dir / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # a disk that filled up, a copy cut short
    capsys.readouterr()
    _run(run_dir, cache, "training.resume_from_checkpoint=true")
    out = capsys.readouterr().out
    assert "skipping" in out and "checkpoint-8" in out and "adapter_model.safetensors is 100 bytes" in out
    assert "resuming from" in out and "checkpoint-4 (step 4)" in out
    assert _steps(run_dir) == [1, 2, 4, 6, 8, 10, 12]
    with pytest.raises(BloomzTuneError, match="no checkpoint folder"):
        _run(run_dir, cache, f"training.resume_from_checkpoint={tmp_path / 'nowhere'}")


@pytest.mark.slow
def test_a_second_run_into_the_same_directory_is_refused_and_the_first_finishes(tmp_path):
    cache = tmp_path / "mixtures"
    run_dir = tmp_path / "run"
    _run(tmp_path / "warm", cache, "training.max_steps=1")  # the mixture is built: the first run starts fast
    first = subprocess.Popen([sys.executable, "bloomz_tune/finetune.py", "recipes/tiny_demo.yaml",
                              *_overrides(run_dir, cache, "training.max_steps=60")], cwd=ROOT, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if (run_dir / LOCK_NAME).exists() or first.poll() is not None:
                break
            time.sleep(0.1)
        assert (run_dir / LOCK_NAME).exists()
        with pytest.raises(BloomzTuneError, match=rf"in use by another run \(pid {first.pid} on "):
            _run(run_dir, cache, "overwrite_output_dir=true")
        out, err = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, err[-2000:]
    assert (run_dir / "final" / "adapter_model.safetensors").is_file() and max(_steps(run_dir)) == 60


def test_a_stale_lock_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname(),
                                                 "started": "yesterday"}))
    _run(run_dir, tmp_path / "mixtures", "training.max_steps=1")
    assert f"taking over the lock of process {int(dead.stdout)}" in capsys.readouterr().out
    assert (run_dir / "final").is_dir() and not (run_dir / LOCK_NAME).exists()


def test_failed_reruns_leave_a_finished_run_byte_identical(demo_run, tmp_path):
    run_dir = demo_run["run_dir"]
    before = _tree_digest(run_dir)
    attempts = [
        [],  # a plain re-run: refused, the directory holds a finished run
        ["overwrite_output_dir=true", "lora.target_modules=[no_such_module]"],
        ["overwrite_output_dir=true", "eval.tasks=[xcopa]", f"eval.data_dirs={{xcopa: {tmp_path / 'none'}}}"],
        ["training.resume_from_checkpoint=true", "model.tiny.n_head=3"],
    ]
    for extra in attempts:
        with pytest.raises(BloomzTuneError):
            run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml",
                            [f"output_dir={run_dir}", f"data.mixture_cache={demo_run['cache']}", *extra]))
        assert _tree_digest(run_dir) == before, extra
