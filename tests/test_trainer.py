"""Training on a tiny BLOOM: the loss falls, LoRA changes only adapter weights, full fine-tuning changes the
base, and gradient accumulation gives the same step as one big batch."""

import json
import random

import pytest
import torch
from datasets import Dataset
from oracles import tokenize_mixture

from bloomz_tune.model.bloom import enable_selected_logits
from bloomz_tune.model.loading import apply_lora
from bloomz_tune.recipe import recipe_from_dict
from bloomz_tune.tokens.batches import PaddingCollator
from bloomz_tune.training.trainer import BloomzTrainer, MetricsFileCallback, training_arguments


def _rows(n, seed=0):
    rng = random.Random(seed)
    words = {"positive": ["great", "wonderful", "superb"], "negative": ["awful", "boring", "terrible"]}
    rows = []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        rows.append({"inputs": f"Review: the film was {rng.choice(words[label])}. Sentiment:",
                     "targets": label if rng.random() < 0.7 else f"{label}, clearly {label}"})
    return Dataset.from_list(rows)


def _train(model, tokenizer, tmp_path, **training):
    data, _ = tokenize_mixture(_rows(64), tokenizer, max_length=64)
    recipe = recipe_from_dict({"output_dir": str(tmp_path), "training": {
        "learning_rate": 3e-3, "max_steps": 12, "per_device_train_batch_size": 8, "logging_steps": 2,
        "bf16": False, "save_steps": 1000, **training}})
    enable_selected_logits(model)
    trainer = BloomzTrainer(model=model, args=training_arguments(recipe, tmp_path / "ckpt"), train_dataset=data,
                            data_collator=PaddingCollator(tokenizer.pad_token_id),
                            loss_type=recipe.training.loss_type)
    trainer.add_callback(MetricsFileCallback(tmp_path / "metrics.jsonl"))
    trainer.train()
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_lora_changes_only_adapter_weights_and_loss_falls(tiny_model, tiny_tokenizer, tmp_path):
    model = apply_lora(tiny_model, r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query_key_value"])
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    metrics = _train(model, tiny_tokenizer, tmp_path)
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert {k for k in before if "lora_B" in k} <= changed  # every adapted module learned
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert losses[-1] < losses[0]
    assert all(m["tokens_per_second"] > 0 and m["target_tokens_per_second"] > 0 for m in metrics if "loss" in m)


def test_full_finetuning_changes_base_weights(tiny_model, tiny_tokenizer, tmp_path):
    before = tiny_model.transformer.h[0].self_attention.query_key_value.weight.detach().clone()
    _train(tiny_model, tiny_tokenizer, tmp_path, max_steps=2)
    assert not torch.equal(before, tiny_model.transformer.h[0].self_attention.query_key_value.weight)


@pytest.mark.parametrize("loss_type", ["sample_mean", "token_mean"])
def test_gradient_accumulation_equals_one_big_batch(tiny_model_dir, tiny_tokenizer, tmp_path, loss_type):
    """4 micro-batches of 2 rows, accumulated, give the same update as one batch of 8 rows."""
    from transformers import AutoModelForCausalLM

    updated = []
    for batch, accumulation in ((8, 1), (2, 4)):
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        data, _ = tokenize_mixture(_rows(8, seed=1), tiny_tokenizer, max_length=64)
        recipe = recipe_from_dict({"output_dir": str(tmp_path), "training": {
            "learning_rate": 1e-2, "max_steps": 1, "per_device_train_batch_size": batch,
            "gradient_accumulation_steps": accumulation, "bf16": False, "loss_type": loss_type,
            "max_grad_norm": 1e9, "weight_decay": 0.0}})
        args = training_arguments(recipe, tmp_path / "ckpt")
        args.train_sampling_strategy = "sequential"
        args.optim = "sgd"  # an update proportional to the gradient (Adam's first step is nearly its sign)
        enable_selected_logits(model)
        trainer = BloomzTrainer(model=model, args=args, train_dataset=data,
                                data_collator=PaddingCollator(tiny_tokenizer.pad_token_id), loss_type=loss_type)
        trainer.train()
        updated.append(model.transformer.h[0].mlp.dense_h_to_4h.weight.detach().clone())
    assert torch.allclose(updated[0], updated[1], atol=1e-7)


def test_length_grouped_sampler_gives_transformers_order_from_the_whole_column():
    """Same order as transformers' LengthGroupedSampler for the same seed, read from Arrow in one go (a filtered
    dataset's row selection applied); the Trainer uses it for unpacked rows."""
    import numpy as np
    from transformers.trainer_pt_utils import LengthGroupedSampler as Reference

    from bloomz_tune.tokens.batches import LengthGroupedSampler, length_column

    rng = np.random.default_rng(0)
    full = Dataset.from_dict({"length": rng.integers(1, 500, size=3000).tolist()})
    data = full.filter(lambda n: n % 7 != 0, input_columns="length")  # a row selection over the Arrow table
    lengths = length_column(data)
    assert lengths.tolist() == data["length"][:]
    for batch in (8, 64, 1000):
        ours = list(LengthGroupedSampler(lengths, batch, generator=torch.Generator().manual_seed(3)))
        reference = list(Reference(batch, lengths=lengths.tolist(), generator=torch.Generator().manual_seed(3)))
        assert ours == reference


def test_trainer_groups_unpacked_rows_with_our_sampler(tiny_model, tiny_tokenizer, tmp_path):
    from bloomz_tune.tokens.batches import LengthGroupedSampler

    data, _ = tokenize_mixture(_rows(16), tiny_tokenizer, max_length=64)
    recipe = recipe_from_dict({"output_dir": str(tmp_path), "training": {"bf16": False}})
    trainer = BloomzTrainer(model=enable_selected_logits(tiny_model), train_dataset=data,
                            args=training_arguments(recipe, tmp_path / "ckpt"),
                            data_collator=PaddingCollator(tiny_tokenizer.pad_token_id))
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)
