"""The training script end to end on the tiny demo: by path under accelerate, in process, and on bad input."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "PYTHONUNBUFFERED": "1"}


def _accelerate():
    found = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    assert found, "accelerate's launcher is not installed"
    return found


def _losses(run_dir):
    return [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_accelerate_launch_packed_lora_run(tmp_path):
    run_dir = tmp_path / "run"
    cmd = [_accelerate(), "launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "bloomz_tune/finetune.py", "recipes/tiny_demo.yaml", f"output_dir={run_dir}",
           f"data.mixture_cache={tmp_path / 'mixtures'}", "data.packing=true", "training.max_steps=40",
           "training.logging_steps=5", "training.save_steps=20", "eval.sanity_examples=40"]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("recipe.resolved.yaml", "datasheet.json", "metrics.jsonl", "loss.png", "eval/results.json",
                 "final/adapter_model.safetensors", "final/adapter_config.json", "final/tokenizer.json"):
        assert (run_dir / name).is_file(), name
    assert "packed 2850 samples into" in done.stdout
    losses = _losses(run_dir)
    assert len(losses) >= 5 and sum(losses[-2:]) / 2 < losses[0]
    with safe_open(str(run_dir / "final" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k or "word_embeddings" in k for k in keys)  # no base weight is saved
    assert any("lora_" in k for k in keys)
    results = json.loads((run_dir / "eval" / "results.json").read_text())
    assert set(results["sanity"]) >= {"before", "after", "examples"}
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-20", "checkpoint-40"]


def test_demo_recipe_learns(demo_run):
    """The embedded default as the README runs it: the held-out sanity accuracy clearly rises."""
    run_dir, results = demo_run["run_dir"], demo_run["results"]
    sanity = results["sanity"]
    assert sanity["examples"] == 200
    assert sanity["after"] >= sanity["before"] + 0.3, sanity
    losses = _losses(run_dir)
    assert losses[-1] < losses[0] / 3
    steps = [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == 1200


def test_demo_log_is_one_line_per_step_off_a_terminal(demo_run):
    """Written to a file or a pipe (as here), the log has the per-step lines and no progress-bar fragments."""
    log = demo_run["stdout"]
    assert "\r" not in log
    lines = [line for line in log.splitlines() if line.startswith("step ")]
    assert len(lines) == 1200 // 20 + 1  # logging_steps 20, plus the first step
    assert all(line.count("| loss ") == 1 for line in lines)


def test_no_token_is_written_anywhere(demo_run):
    """A token in the environment (as `huggingface-cli login` or HF_TOKEN leaves one) never reaches a file."""
    sentinel = demo_run["token"].encode()
    leaked = [p for root in (demo_run["run_dir"], demo_run["cache"]) for p in root.rglob("*")
              if p.is_file() and sentinel in p.read_bytes()]
    assert not leaked
    assert sentinel.decode() not in demo_run["stdout"]
    written = sum(1 for p in demo_run["run_dir"].rglob("*") if p.is_file())
    assert written > 20  # the search covered a real run directory


def test_train_api_checks_an_edited_recipe(tmp_path):
    from bloomz_tune import ConfigError, load_recipe, train

    recipe = load_recipe(ROOT / "recipes" / "tiny_demo.yaml", [f"output_dir={tmp_path / 'run'}"])
    recipe.lora.r = 0
    recipe.data.packing = True
    recipe.model.attention = "stock"
    with pytest.raises(ConfigError) as info:
        train(recipe)
    assert "lora.r: must be > 0, got 0" in str(info.value)
    assert "data.packing: stock attention would let packed samples see each other" in str(info.value)
    assert not (tmp_path / "run").exists()


def test_train_help_lists_every_recipe_field():
    from test_schema import every_field

    from bloomz_tune.recipe import Recipe

    done = subprocess.run([sys.executable, "-m", "bloomz_tune.cli", "train", "--help"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    fields = every_field(Recipe)
    assert len(fields) > 60
    for key, doc in fields.items():
        assert f"{key} (" in text, key
        assert " ".join(doc.split()) in text, key


@pytest.mark.parametrize("entry", [["bloomz_tune/finetune.py"], ["-m", "bloomz_tune.cli", "train"]])
def test_bad_override_exits_nonzero_naming_the_key(tmp_path, entry):
    cmd = [sys.executable, *entry, "recipes/tiny_demo.yaml", "no_such_key=1", "training.max_stepz=3",
           f"output_dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "no_such_key: unknown key" in done.stderr
    assert "did you mean 'training.max_steps'?" in done.stderr
    assert "recipes/tiny_demo.yaml" in done.stderr
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_console_command_is_installed_or_module_runs():
    done = subprocess.run([sys.executable, "-m", "bloomz_tune.cli", "--help"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "bloomz-tune train" in done.stdout
    done = subprocess.run([sys.executable, "-m", "bloomz_tune.cli", "fly"], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown command 'fly'" in done.stderr


@pytest.mark.slow
def test_recipe_eval_tasks_run_after_training(tmp_path):
    """eval.tasks runs the zero-shot evaluation at the end of training, from local dataset folders."""
    from bloomz_tune.finetune import run
    from bloomz_tune.recipe import load_recipe

    fixtures = ROOT / "tests" / "fixtures" / "eval"
    run_dir = tmp_path / "run"
    results = run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml",
                  [f"output_dir={run_dir}", f"data.mixture_cache={tmp_path / 'mixtures'}",
                   f"data.mixture={ROOT / 'data_mixtures' / 'demo.yaml'}", "training.max_steps=4",
                   "eval.sanity=false", "eval.tasks=[xcopa]", "eval.languages=[zh]", "eval.limit=2",
                   "eval.prompts=2", f"eval.data_dirs={{xcopa: {fixtures / 'xcopa'}}}"]))
    assert set(results["zero_shot"]["mean_of_medians"]) == {"xcopa"}
    zero_shot = json.loads((run_dir / "eval" / "zero_shot" / "results.json").read_text())
    assert zero_shot["tasks"]["xcopa"]["languages"]["zh"]
    assert (run_dir / "eval" / "zero_shot" / "results.md").is_file()
    assert "| XCOPA |" in (run_dir / "final" / "README.md").read_text()


def test_missing_eval_data_fails_before_training(tmp_path):
    from bloomz_tune.errors import BloomzTuneError
    from bloomz_tune.finetune import run
    from bloomz_tune.recipe import load_recipe

    with pytest.raises(BloomzTuneError, match="xcopa"):
        run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml",
            [f"output_dir={tmp_path / 'run'}", f"data.mixture_cache={tmp_path / 'mixtures'}",
             f"data.mixture={ROOT / 'data_mixtures' / 'demo.yaml'}", "eval.tasks=[xcopa]",
             f"eval.data_dirs={{xcopa: {tmp_path / 'nowhere'}}}"]))
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_training_reuses_a_command_line_build_across_models(tmp_path, capsys):
    """`bloomz-tune mixture build SPEC` once; two recipes naming the spec (different models) reuse that build."""
    from bloomz_tune.cli import mixture as mixture_main
    from bloomz_tune.finetune import run
    from bloomz_tune.recipe import load_recipe

    cache = tmp_path / "mixtures"
    assert mixture_main(["build", str(ROOT / "data_mixtures" / "demo.yaml"), "--output", str(tmp_path / "demo"),
                         "--cache", str(cache)]) == 0
    capsys.readouterr()
    for name, hidden in (("a", 128), ("b", 64)):
        run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml",
                        [f"output_dir={tmp_path / name}", f"data.mixture_cache={cache}",
                         f"data.mixture={ROOT / 'data_mixtures' / 'demo.yaml'}", "training.max_steps=2",
                         f"model.tiny.hidden_size={hidden}", "eval.sanity=false"]))
        out = capsys.readouterr().out
        assert f"mixture demo: reusing finished build {tmp_path / 'demo'}" in out
        assert "render " not in out  # nothing was rendered again
        sheet = json.loads((tmp_path / name / "datasheet.json").read_text())
        assert sheet["tokens"]["train"]["input"] > 0  # counted with this run's tokenizer, beside the build
    assert len(list((tmp_path / "demo" / "tokens").glob("*.json"))) >= 1
    assert not [p for p in cache.iterdir() if p.is_dir()]  # the cache holds only the pointer to the build


def test_progress_bars_only_on_a_terminal_or_in_a_notebook_kernel():
    """Importing Jupyter's kernel package (as notebook runners do) does not make a pipe a terminal."""
    import ipykernel  # noqa: F401

    from bloomz_tune.runtime import interactive

    assert not interactive()  # pytest captures stdout: a pipe, not a terminal
