"""One optimizer step on the tiny BLOOM, run under `accelerate launch` by tests/test_distributed.py.

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/ddp_one_step.py MODEL_DIR OUT.pt LOSS_TYPE PER_DEVICE_BATCH

Trains one SGD step on 8 fixed rows and saves (rank 0) the updated weights of one layer.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from oracles import tokenize_mixture  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from bloomz_tune.model.bloom import patch_bloom  # noqa: E402
from bloomz_tune.recipe import recipe_from_dict  # noqa: E402
from bloomz_tune.tokens.batches import PaddingCollator  # noqa: E402
from bloomz_tune.training.trainer import BloomzTrainer, training_arguments  # noqa: E402

model_dir, out, loss_type, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rows = [{"inputs": f"Review number {i}: the film was {'great' if i % 2 else 'awful'}.",
         "targets": "positive" if i % 2 else "negative, " * (i % 3) + "negative"} for i in range(8)]
tokenizer = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
patch_bloom(model, "sdpa")
data, _ = tokenize_mixture(Dataset.from_list(rows), tokenizer, max_length=64)
recipe = recipe_from_dict({"output_dir": out + ".run", "training": {
    "learning_rate": 1e-2, "max_steps": 1, "per_device_train_batch_size": batch, "bf16": False,
    "loss_type": loss_type, "max_grad_norm": 1e9, "weight_decay": 0.0, "save_steps": 1000}})
args = training_arguments(recipe, out + ".ckpt")
args.train_sampling_strategy = "sequential"
args.optim = "sgd"
trainer = BloomzTrainer(model=model, args=args, train_dataset=data, data_collator=PaddingCollator(tokenizer.pad_token_id),
                        loss_type=loss_type)
trainer.train()
if trainer.accelerator.is_main_process:
    torch.save(model.transformer.h[0].mlp.dense_h_to_4h.weight.detach().clone(), out)
