"""Kill a run (SIGKILL) in each phase, resume it, and compare with an uninterrupted run: every step logged once,
the same losses, bit-identical final weights, the same evaluation results."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
PHASES = ["build", "tokenize", "step", "checkpoint", "final", "evaluation", "card"]


def overrides(run_dir, cache, *extra):
    return [f"output_dir={run_dir}", f"data.mixture_cache={cache}", f"data.mixture={ROOT / 'data_mixtures' / 'demo.yaml'}",
            "training.max_steps=4", "training.save_steps=2", "training.save_total_limit=null",
            "training.logging_steps=1", "eval.sanity=true", "eval.sanity_examples=8", *extra]


def launch(script, *args):
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=900)


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    base = tmp_path_factory.mktemp("whole")
    done = launch("bloomz_tune/finetune.py", "recipes/tiny_demo.yaml", *overrides(base / "run", base / "mix"))
    assert done.returncode == 0, done.stderr[-3000:]
    return base


@pytest.mark.slow
@pytest.mark.parametrize("phase", PHASES)
def test_killed_in_a_phase_then_resumed_ends_as_the_uninterrupted_run(phase, whole, tmp_path):
    run_dir = tmp_path / "run"
    cache = tmp_path / "mix" if phase == "build" else whole / "mix"
    killed = launch("tests/kill_at_phase.py", phase, "recipes/tiny_demo.yaml", *overrides(run_dir, cache))
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resumed = launch("bloomz_tune/finetune.py", "recipes/tiny_demo.yaml",
                     *overrides(run_dir, cache, "training.resume_from_checkpoint=auto"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    if phase in ("final", "evaluation", "card"):
        assert "training is done, no more steps" in resumed.stdout
    assert losses(run_dir) == losses(whole / "run")  # each step once, with the same loss
    final = "final/adapter_model.safetensors"
    assert (run_dir / final).read_bytes() == (whole / "run" / final).read_bytes()  # bit-identical
    assert json.loads((run_dir / "eval/results.json").read_text()) == json.loads(
        (whole / "run" / "eval/results.json").read_text())
    assert (run_dir / "final" / "README.md").is_file() and not (run_dir / ".bloomz_tune.lock").exists()
    assert not (run_dir / ".final.incoming").exists() and not (run_dir / ".incoming").exists()
