"""``bloomz-tune estimate``: parameter counts equal built models' and peft's; the memory figure for a tiny model
matches a measured CPU step; launch configs, errors and the command line."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.config import PUBLIC_SHAPES, PUBLIC_VOCAB
from bloomz_tune.recipe import load_recipe, recipe_from_dict
from bloomz_tune.training.estimate import (
    activation_bytes,
    estimate,
    model_state_bytes,
    parameter_counts,
    read_accelerate_config,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(PUBLIC_SHAPES))
def test_parameter_counts_equal_models_built_from_the_public_configs(name):
    from transformers import BloomConfig, BloomForCausalLM

    n_layer, hidden, heads = PUBLIC_SHAPES[name]
    config = BloomConfig(n_layer=n_layer, hidden_size=hidden, n_head=heads, vocab_size=PUBLIC_VOCAB)
    with torch.device("meta"):  # shapes only: no memory, even for 176B
        model = BloomForCausalLM(config)
    assert parameter_counts(config).total == sum(p.numel() for p in model.parameters())
    if name == "bloom-560m":
        assert parameter_counts(config).total == 559_214_592


@pytest.mark.parametrize("lora", [
    {"r": 4, "target_modules": ["query_key_value"]},
    {"r": 8, "target_modules": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]},
    {"r": 2, "target_modules": ["dense"], "bias": "all"},
    {"r": 2, "target_modules": ["dense_h_to_4h"], "bias": "lora_only"},
    {"r": 4, "target_modules": ["query_key_value", "dense"], "modules_to_save": ["word_embeddings"]},
    {"r": 4, "target_modules": ["query_key_value"], "modules_to_save": ["ln_f"]},
])
def test_lora_counts_equal_peft(tiny_model, lora):
    from bloomz_tune.model.loading import apply_lora

    section = recipe_from_dict({"lora": lora}).lora
    counts = parameter_counts(tiny_model.config, section)
    model = apply_lora(tiny_model, section.r, section.lora_alpha, 0.0, section.target_modules, section.bias,
                       section.modules_to_save)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_unknown_lora_target_is_named(tiny_model):
    section = recipe_from_dict({"lora": {"target_modules": ["q_proj"]}}).lora
    with pytest.raises(BloomzTuneError, match=r"lora.target_modules: \['q_proj'\] not found"):
        parameter_counts(tiny_model.config, section)


def _measure_step(model, batch):
    """Bytes of weights, gradients and Adam state after one step, and of the tensors autograd saved for backward."""
    from bloomz_tune.model.loss import batch_loss_sum

    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, items, _ = batch_loss_sum(model, batch)
    activations = sum(saved.values())
    (loss / items).backward()
    optimizer.step()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    adam = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if t.dim())
    return weights, grads, adam, activations


@pytest.mark.parametrize("lora", [True, False])
def test_memory_figure_matches_a_measured_cpu_step(tiny_model_dir, lora):
    """Within 15%: weights, gradients and Adam exactly; activations from autograd's saved tensors."""
    from transformers import AutoModelForCausalLM

    from bloomz_tune.model.bloom import patch_bloom
    from bloomz_tune.model.loading import apply_lora

    rows, length, target_len = 4, 128, 16
    recipe = recipe_from_dict({"model": {"name_or_path": str(tiny_model_dir), "dtype": "float32"},
                               "lora": {"enabled": lora, "r": 8, "lora_dropout": 0.0,
                                        "target_modules": ["query_key_value", "dense_h_to_4h"]},
                               "data": {"max_length": length},
                               "training": {"per_device_train_batch_size": rows, "bf16": False}})
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    if lora:
        model = apply_lora(model, 8, 16, 0.0, ["query_key_value", "dense_h_to_4h"])
    patch_bloom(model, "sdpa").train()
    ids = torch.randint(4, model.config.vocab_size if not lora else model.base_model.config.vocab_size, (rows, length))
    labels = torch.full_like(ids, -100)
    labels[:, -target_len:] = ids[:, -target_len:]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    measured = _measure_step(model, batch)

    config = AutoModelForCausalLM.from_pretrained(tiny_model_dir).config
    counts = parameter_counts(config, recipe.lora)
    states = model_state_bytes("ddp", counts, config, 4, 4, gpus=1)
    assert (states["weights"], states["gradients"], states["optimizer"]) == measured[:3]
    share = target_len / length  # positions that predict a target (the last input token predicts the first)
    estimated = sum(activation_bytes(recipe, config, counts, share, checkpointing=False).values())
    assert abs(estimated - measured[3]) <= 0.15 * measured[3], (estimated, measured[3])


def test_accelerate_configs_give_their_strategy():
    folder = ROOT / "recipes" / "accelerate"
    assert read_accelerate_config(folder / "ddp.yaml")["strategy"] == "ddp"
    assert read_accelerate_config(folder / "fsdp.yaml")["strategy"] == "fsdp"
    assert read_accelerate_config(folder / "deepspeed_zero3.yaml")["strategy"] == "zero3"


def test_estimate_of_the_560m_recipe():
    e = estimate(load_recipe(ROOT / "recipes" / "lora_560m.yaml"), gpus=1)
    assert e["global_batch"] == 1024 and e["steps"] == 1750
    assert e["parameters"] > 559_214_592 and 0 < e["trainable"] < e["parameters"] // 50
    ddp = e["memory"]["ddp"]
    assert ddp["with_checkpointing"] < ddp["without_checkpointing"] < e["gpu_memory"] * 2
    assert e["memory"]["zero3"]["states"]["gathered"] == 4 * PUBLIC_VOCAB * 1024  # the embedding, two 16-bit copies


def test_command_line_prints_and_refuses_bad_input(tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "bloomz_tune.cli", "estimate", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    done = run("recipes/full_560m.yaml", "--gpus", "8")
    assert done.returncode == 0, done.stderr
    assert "parameters 559,214,592, trainable 559,214,592" in done.stdout
    assert "global batch 8,192 rows" in done.stdout  # 8 rows x 128 accumulation x 8 processes
    missing = run("recipes/lora_560m.yaml", f"model.name_or_path={tmp_path}/nowhere")
    assert missing.returncode == 2 and "model.name_or_path: no config.json" in missing.stderr
    assert "Traceback" not in missing.stderr
