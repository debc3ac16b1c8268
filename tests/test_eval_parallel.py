"""Evaluation past one device: requests split over processes, a model split over CPU and disk, progress lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bloomz_tune.cli import evaluate as main
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation.progress import ScoringProgress
from bloomz_tune.model.loading import load_for_eval, parse_max_memory, placement

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "eval"
DATA = [f"xnli={FIXTURES / 'xnli'}", f"xwinograd={FIXTURES / 'xwinograd'}", f"copa={FIXTURES / 'super_glue'}"]


def _args(model, out, *extra):
    args = [str(model), "--tasks", "xnli,xwinograd,copa", "--languages", "en,zh", "--prompts", "3",
            "--output", str(out), "--dtype", "float32", "--batch-size", "4", "--no-generation"]
    for d in DATA:
        args += ["--data-dir", d]
    return args + list(extra)


def _accuracies(results: dict) -> dict:
    return {(t, lang, p): v["accuracy"] for t, r in results["tasks"].items() for lang, e in r["languages"].items()
            for p, v in e["prompts"].items()}


def _env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _torchrun(*args):
    torchrun = Path(sys.executable).with_name("torchrun")
    done = subprocess.run([str(torchrun), "--nproc_per_node", "2", *args], cwd=ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_two_processes_score_as_one(tiny_model_dir, tmp_path, capsys):
    assert main(_args(tiny_model_dir, tmp_path / "one", "--device", "cpu")) == 0
    _torchrun("-m", "bloomz_tune.cli", "eval", *_args(tiny_model_dir, tmp_path / "two"))
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert _accuracies(one) == _accuracies(two) and len(_accuracies(one)) == 15
    # per-request log-likelihoods of every fixture request, and requests/s, 2 processes against 1
    subprocess.run([sys.executable, "tests/parallel_scoring.py", str(tiny_model_dir), str(tmp_path / "l1.json")],
                   cwd=ROOT, env=_env(), check=True, capture_output=True, timeout=600)
    _torchrun("tests/parallel_scoring.py", str(tiny_model_dir), str(tmp_path / "l2.json"))
    l1, l2 = (json.loads((tmp_path / f"l{n}.json").read_text()) for n in (1, 2))
    assert (l1["processes"], l2["processes"]) == (1, 2) and len(l1["scores"]) == len(l2["scores"]) > 100
    worst = max(abs(a - b) for a, b in zip(l1["scores"], l2["scores"]))
    with capsys.disabled():
        print(f"\n2 processes vs 1: max |d accuracy| 0 over {len(_accuracies(one))} prompts, max |d loglik| "
              f"{worst:.2e} over {len(l1['scores'])} requests; {l2['requests_per_s']:.1f} vs "
              f"{l1['requests_per_s']:.1f} requests/s (x{l2['requests_per_s'] / l1['requests_per_s']:.2f})")
    assert worst < 1e-4


@pytest.mark.slow
def test_model_split_over_cpu_and_disk_scores_as_one_device(tiny_model_dir, tmp_path):
    model, _ = load_for_eval(str(tiny_model_dir), "float32", device_map="auto", max_memory={"cpu": "400KB"},
                             offload_folder=str(tmp_path / "offload"))
    assert set(model.hf_device_map.values()) == {"cpu", "disk"}, model.hf_device_map  # really split
    del model
    assert main(_args(tiny_model_dir, tmp_path / "one", "--device", "cpu")) == 0
    assert main(_args(tiny_model_dir, tmp_path / "split", "--device-map", "auto", "--max-memory", "cpu=400KB",
                      "--offload-folder", str(tmp_path / "offload"))) == 0
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    split = json.loads((tmp_path / "split" / "results.json").read_text())
    assert _accuracies(one) == _accuracies(split) and len(_accuracies(one)) == 15


def test_split_options_are_checked():
    assert parse_max_memory("0=20GiB, 1=20GiB,cpu=64GiB") == {0: "20GiB", 1: "20GiB", "cpu": "64GiB"}
    with pytest.raises(BloomzTuneError, match="is not DEVICE=SIZE"):
        parse_max_memory("20GiB")
    with pytest.raises(BloomzTuneError, match="take effect with --device-map"):
        placement(None, {"cpu": "1GiB"}, None)
    with pytest.raises(BloomzTuneError, match="either --device or --device-map"):
        load_for_eval("no/such-model", device="cpu", device_map="auto")


def test_progress_lines_in_a_log(capsys):
    progress = ScoringProgress(400, "xnli/fr", interval=0.0)  # stdout is not a terminal here: lines, no bar
    assert progress.bar is None
    progress.update(100)
    progress.update(100)
    progress.close()
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("xnli/fr: 100/400 requests, ") and "requests/s, ETA " in lines[0]
    assert lines[-1].startswith("xnli/fr: 200/400 requests")
    ScoringProgress(400, enabled=False, interval=0.0).update(5)
    assert capsys.readouterr().out == ""
