"""A merged model (base + LoRA adapter, safetensors) answers exactly as the adapter does; generate works on both."""

import io
import json
import shutil

import pytest
import torch
from huggingface_hub import ModelCard
from test_share import TOKEN, make_run

from bloomz_tune import cli, generate, merge
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation.scoring import SANITY_PROMPTS, loglikelihoods, rank_classify
from bloomz_tune.model.loading import load_for_eval

PROMPTS = ["The movie was great and the", "Translate to French: the red house.", "Question: what is the capital"]
EXAMPLES = [{"prompt": "The movie was great. Is this review positive or negative?",
             "choices": ["positive", "negative"], "label": 0},
            {"prompt": "Le film était excellent. Positif ou négatif ?", "choices": ["positif", "négatif"], "label": 0},
            {"prompt": "Question: what is the capital of France? Answer:", "choices": ["Paris", "London", "Rome"],
             "label": 0}]


@pytest.fixture()
def merged_run(tmp_path, tiny_adapter_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = make_run(tmp_path / "run")
    shutil.copytree(tiny_adapter_dir, run / "final", dirs_exist_ok=True)
    return run, merge(run, tmp_path / "merged")


def _requests():
    return [(ex["prompt"], c) for ex in EXAMPLES for c in ex["choices"]]


@pytest.mark.slow
def test_merged_and_adapter_give_identical_generations_and_scores(merged_run, tiny_model_dir):
    run, merged_dir = merged_run
    adapter, tokenizer = load_for_eval(str(run / "final"), dtype="float32", device="cpu")
    merged, merged_tokenizer = load_for_eval(str(merged_dir), dtype="float32", device="cpu")
    base, _ = load_for_eval(str(tiny_model_dir), dtype="float32", device="cpu")
    assert merged_tokenizer.get_vocab() == tokenizer.get_vocab()
    prompts = PROMPTS + SANITY_PROMPTS
    assert generate(merged, prompts, 16, tokenizer=tokenizer) == generate(adapter, prompts, 16, tokenizer=tokenizer)
    adapter_scores = torch.tensor(loglikelihoods(adapter, tokenizer, _requests(), progress=False))
    merged_scores = torch.tensor(loglikelihoods(merged, tokenizer, _requests(), progress=False))
    base_scores = torch.tensor(loglikelihoods(base, tokenizer, _requests(), progress=False))
    torch.testing.assert_close(merged_scores, adapter_scores, atol=1e-4, rtol=0)
    assert (base_scores - adapter_scores).abs().max() > 0.1  # the adapter really changes the model
    assert rank_classify(merged, tokenizer, EXAMPLES, progress=False)["predictions"] == \
        rank_classify(adapter, tokenizer, EXAMPLES, progress=False)["predictions"]


def test_merged_folder_is_safetensors_with_tokenizer_and_card(merged_run):
    run, merged_dir = merged_run
    names = {p.name for p in merged_dir.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "recipe.resolved.yaml"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl")) or n.startswith("adapter_")]
    card = ModelCard.load(merged_dir / "README.md")
    assert card.data.library_name == "transformers" and "merged into the base model" in card.text
    assert json.loads((merged_dir / "config.json").read_text())["tie_word_embeddings"] is False  # trained copy kept
    assert not any(TOKEN.encode() in p.read_bytes() for p in merged_dir.rglob("*") if p.is_file())
    assert [p.name for p in merged_dir.parent.iterdir() if p.name.startswith(".")] == []  # no staging left
    with pytest.raises(BloomzTuneError, match="already exists and is not empty"):
        merge(run, merged_dir)


def test_merge_refuses_a_full_fine_tune(tmp_path):
    run = make_run(tmp_path / "full", ["lora.enabled=false"])
    with pytest.raises(BloomzTuneError, match="full fine-tune"):
        merge(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_generate_command_one_prompt_and_interactive(merged_run, capsys, monkeypatch):
    _, merged_dir = merged_run
    expected = generate(str(merged_dir), PROMPTS[:2], 8, device="cpu")
    assert cli.main(["generate", str(merged_dir), PROMPTS[0], "--max-new-tokens", "8", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == expected[0] + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{PROMPTS[0]}\n{PROMPTS[1]}\n"))
    assert cli.main(["generate", str(merged_dir), "--interactive", "--max-new-tokens", "8", "--device", "cpu"]) == 0
    assert capsys.readouterr().out == "".join(e + "\n" for e in expected)
    assert cli.main(["generate", str(merged_dir)]) == 2  # neither a prompt nor --interactive
    assert "give a prompt" in capsys.readouterr().err


def test_merge_keeps_the_base_checkpoints_dtype(tmp_path, tiny_model_dir, tiny_adapter_dir, monkeypatch):
    """dtype "auto" saves in the dtype the base checkpoint is stored in (bf16 here), not the float32 it is merged
    in."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    base = tmp_path / "base_bf16"
    AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).save_pretrained(base)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):  # as a Hub checkpoint has
        if (tiny_model_dir / name).is_file():
            shutil.copyfile(tiny_model_dir / name, base / name)
    run = make_run(tmp_path / "run")
    shutil.copytree(tiny_adapter_dir, run / "final", dirs_exist_ok=True)
    config = json.loads((run / "final" / "adapter_config.json").read_text())
    (run / "final" / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": str(base)}))
    merged = merge(run, tmp_path / "merged")
    assert json.loads((merged / "config.json").read_text())["dtype"] == "bfloat16"
    assert {t.dtype for t in load_file(merged / "model.safetensors").values()} == {torch.bfloat16}
