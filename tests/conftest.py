"""Shared fixtures: a tiny BLOOM and tokenizer built in the test run (no network)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fixtures whose set-up alone takes a minute or more: every test using one is in the slow lane.
SLOW_FIXTURES = {"demo_run", "sharded_pair"}


def pytest_collection_modifyitems(config, items):
    """Mark the tests that use a slow fixture ``slow``, so that ``pytest -m "not slow"`` is the fast lane."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


FIXTURE_TEXTS = [
    "The movie was great and the actors were wonderful.",
    "Le film était excellent et les acteurs étaient merveilleux.",
    "La película fue excelente y los actores fueron maravillosos.",
    "这部电影很好，演员们很棒。",
    "Question: what is the capital of France? Answer: Paris",
    "Translate to French: the red house. la maison rouge",
    "def add(a, b):\n    return a + b",
] * 20


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A folder holding a saved tiny BLOOM (2 layers, 64 hidden, 4 heads) and its tokenizer."""
    from bloomz_tune.model.tiny import save_tiny_bloom

    return save_tiny_bloom(tmp_path_factory.mktemp("tiny_bloom"), FIXTURE_TEXTS, vocab_size=512)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


@pytest.fixture()
def tiny_model(tiny_model_dir):
    """A fresh fp32 copy of the tiny BLOOM for each test (tests may train it)."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The README's demo command run to the end once (1,200 steps), shared by the tests that read its outputs.

    It runs as a user runs it (by path, stdout to a pipe) with a sentinel token in the environment, so tests
    can check that no token reaches a file or the log.
    """
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    base = tmp_path_factory.mktemp("demo_run")
    token = "hf_SentinelTokenThatMustNeverBeWritten0123"
    env = {**os.environ, "HF_TOKEN": token, "HUGGING_FACE_HUB_TOKEN": token, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "bloomz_tune/finetune.py", "recipes/tiny_demo.yaml", f"output_dir={base / 'run'}",
           f"data.mixture_cache={base / 'mixtures'}"]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((base / "run" / "eval" / "results.json").read_text())
    return {"run_dir": base / "run", "cache": base / "mixtures", "results": results, "stdout": done.stdout,
            "stderr": done.stderr, "token": token}


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter of the tiny BLOOM that changes its outputs (nonzero B weights and a trained copy of the
    embedding, as the demo recipe trains), saved as a run's final/ holds it: adapter and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bloomz_tune.model.loading import apply_lora

    folder = tmp_path_factory.mktemp("tiny_adapter")
    model = apply_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), r=4, lora_alpha=8,
                       lora_dropout=0.0, target_modules=["query_key_value", "dense_4h_to_h"],
                       modules_to_save=["word_embeddings"])
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "modules_to_save" in name:
                param += 0.5 * torch.randn(param.shape, generator=generator)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def releases(tmp_path_factory):
    """{release: folder}: the evaluation sets' release folders as their authors ship them, at the documented row
    counts (tests/fixtures/eval/make_fixtures.py ``write_releases``)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent / "fixtures" / "eval" / "make_fixtures.py"
    spec = importlib.util.spec_from_file_location("make_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_releases(tmp_path_factory.mktemp("releases"))
