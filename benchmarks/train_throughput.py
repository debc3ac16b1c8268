"""Training throughput and memory: bloomz_tune's training path against TRL's SFTTrainer, side by side.

Same synthetic data (xP3-like lengths: long-tailed inputs of a few hundred tokens, short targets; random token
ids, nothing downloaded), same model shape, seed and weight dtype, same LoRA (the recipe's), same optimizer
settings, clipping and precision (recipes/lora_560m.yaml, or recipes/full_560m.yaml with ``--full``), about the
same real tokens per step:

- ``ours``: what ``bloomz-tune train`` runs, built by finetune.py's own functions (``adapt_model``,
  ``batches_of``, ``build_trainer``): best-fit packing into ``--max-length`` rows, PackedCollator,
  segment-isolated ALiBi attention (``--attn``), logits at target positions only, BLOOMZ's per-sample loss,
  BloomzTrainer with its throughput log and metrics file.
- ``trl_padded``: TRL SFTTrainer as a user would run it on BLOOM: completion_only_loss, padding, no packing.
- ``trl_packed``: TRL SFTTrainer with packing=True (BFD, padding-free): fast, but BLOOM takes no position ids
  and gets no attention mask there, so packed samples attend to each other and ALiBi runs across them.

Each configuration runs in its own process (so peak memory is its own) for ``--warmup`` + ``--steps`` optimizer
steps; rates are over the timed steps, from the batches those steps used. Reported: real (non-padding) tokens/s,
target tokens/s, padding efficiency (real tokens / token slots computed), peak memory (CUDA allocator peak on a
GPU, peak RSS on CPU), useful TFLOP/s and MFU on a GPU (throughput.py: linear layers on real tokens, attention
within samples, the head at target positions; the same count for every configuration), and ratios to trl_padded.
On CUDA the recipe's precision applies: bf16 autocast, LoRA on bf16 weights, full fine-tuning on fp32 weights.

CPU (reduced-depth bloom-560m shape, the real 250,880 vocabulary; a few steps):
    python benchmarks/train_throughput.py --layers 2 --steps 2
GPU commands (bloom-560m and bloom-1b7 shapes, sdpa and flex, LoRA and full): benchmarks/README.md.
Packing efficiency of greedy vs best-fit on the synthetic lengths only (no model):
    python benchmarks/train_throughput.py --packing-only --samples 20000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ("ours", "trl_padded", "trl_packed")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--vocab", type=int, default=250880)
    p.add_argument("--max-length", type=int, default=2048)
    p.add_argument("--samples", type=int, default=2000, help="synthetic samples generated (and packed)")
    p.add_argument("--rows", type=int, default=1, help="ours / trl_packed: packed rows per step")
    p.add_argument("--trl-batch", type=int, default=8, help="trl_padded: samples per step (~ the same real tokens)")
    p.add_argument("--steps", type=int, default=2, help="timed optimizer steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--attn", choices=("sdpa", "flex"), default="sdpa", help="ours: attention")
    p.add_argument("--full", action="store_true", help="full fine-tuning (recipes/full_560m.yaml) instead of LoRA "
                                                        "(recipes/lora_560m.yaml)")
    p.add_argument("--gradient-checkpointing", action="store_true", help="all configurations (the recipes' setting)")
    p.add_argument("--dropout", type=float, default=0.0, help="hidden and attention dropout (recipes: 0.1; flex: 0)")
    p.add_argument("--device", default="cpu", help="cuda: the recipe's precision (bf16), as on a user's GPU")
    p.add_argument("--only", default=",".join(CONFIGS), help="comma-separated subset of " + ", ".join(CONFIGS))
    p.add_argument("--packing-only", action="store_true", help="only compare packing strategies' efficiency")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--run-one", choices=CONFIGS, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ---------------------------------------------------------------- data
def synthetic_samples(n: int, vocab: int, max_length: int, seed: int):
    """xP3-like: input ~ lognormal (median 200 tokens, long tail), target ~ lognormal (median 6) + EOS."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n_in = np.clip(rng.lognormal(math.log(200), 0.75, n).astype(int), 8, max_length // 2 + 900)
    n_tgt = np.clip(rng.lognormal(math.log(6), 0.9, n).astype(int), 1, 256) + 1
    n_in = np.minimum(n_in, max_length - n_tgt)
    samples = []
    for a, b in zip(n_in.tolist(), n_tgt.tolist()):
        ids = rng.integers(4, vocab, a + b).tolist()
        ids[-1] = 2  # EOS
        samples.append((ids, a))
    return samples


def tokenized_dataset(samples):
    import datasets

    return datasets.Dataset.from_dict({
        "input_ids": [ids for ids, _ in samples],
        "labels": [[-100] * n_in + ids[n_in:] for ids, n_in in samples],
    })


def trl_dataset(samples):
    import datasets

    return datasets.Dataset.from_dict({
        "input_ids": [ids for ids, _ in samples],
        "completion_mask": [[0] * n_in + [1] * (len(ids) - n_in) for ids, n_in in samples],
    })


# ---------------------------------------------------------------- model
def bench_recipe(args, out_dir: str):
    """The recipe a user would run (recipes/lora_560m.yaml, or full_560m.yaml with --full), resized for the bench:
    its optimizer, clipping, schedule, LoRA, precision, packing and logging; this run's batch and step count."""
    from bloomz_tune.recipe import load_recipe

    name = "full_560m.yaml" if args.full else "lora_560m.yaml"
    overrides = [f"output_dir={out_dir}", f"model.attention={args.attn}", f"model.hidden_dropout={args.dropout}",
                 f"model.attention_dropout={args.dropout}", f"data.max_length={args.max_length}",
                 f"training.per_device_train_batch_size={args.rows}", "training.gradient_accumulation_steps=1",
                 f"training.max_steps={args.warmup + args.steps}", f"training.save_steps={args.warmup + args.steps + 1}",
                 f"training.seed={args.seed}",
                 f"training.gradient_checkpointing={str(args.gradient_checkpointing).lower()}"]
    if torch_device(args).type != "cuda":
        overrides.append("training.bf16=false")
    return load_recipe(ROOT / "recipes" / name, overrides)


def precision_of(recipe) -> str:
    """The weights' dtype and the mixed precision a recipe trains with, as the table prints it."""
    from bloomz_tune.model.loading import resolve_dtype
    from bloomz_tune.training.trainer import training_arguments

    autocast = training_arguments(recipe, recipe.output_dir).bf16
    return f"{str(resolve_dtype(recipe.model.dtype)).removeprefix('torch.')} weights" + (
        ", bf16 autocast" if autocast else "")


def results_precision(results: dict) -> str:
    return next(iter(results.values())).get("precision", "?")


def torch_device(args):
    import torch

    return torch.device(args.device)


def build_model(args, recipe):
    """A random BLOOM of the benchmark's shape, in the recipe's weight dtype and dropout."""
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    from bloomz_tune.model.loading import resolve_dtype

    config = BloomConfig(vocab_size=args.vocab, hidden_size=args.hidden, n_layer=args.layers, n_head=args.heads,
                         hidden_dropout=recipe.model.hidden_dropout, attention_dropout=recipe.model.attention_dropout,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    torch.manual_seed(args.seed)
    with torch.device(args.device):  # initialised where it trains: a 1b7 shape takes long to initialise on a CPU
        model = BloomForCausalLM(config)
    return model.to(dtype=resolve_dtype(recipe.model.dtype))


def peft_config(recipe):
    """The recipe's LoRA as a peft config, for TRL (ours applies the same through finetune.adapt_model)."""
    from peft import LoraConfig

    lora = recipe.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.lora_alpha, lora_dropout=lora.lora_dropout, bias=lora.bias,
                      target_modules=list(lora.target_modules), task_type="CAUSAL_LM")


def special_tokens_only():
    """The data is pre-tokenized; the trainers still want a tokenizer, for its pad and EOS ids (3 and 2, BLOOM's)."""
    from bloomz_tune.model.tiny import build_tiny_tokenizer

    return build_tiny_tokenizer(["a tokenizer for its special tokens"] * 4, vocab_size=300)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_probe(device):
    """Reset the peak; return (memory in use now, a function reading the peak since)."""
    import torch

    from bloomz_tune.training.throughput import peak_memory_bytes, reset_peak_memory

    reset_peak_memory(device)
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.memory_allocated(), lambda: peak_memory_bytes(device)
    return rss_bytes(), lambda: peak_memory_bytes()


# ---------------------------------------------------------------- runs
def timed_train(args, trainer, config) -> dict:
    """Train ``trainer`` for warm-up + timed steps; rates over the timed steps from the batches they used.

    Every configuration is counted the same way (throughput.ThroughputMeter): real tokens, target tokens, and
    useful FLOPs (linear layers on real tokens, attention within samples, the head at target positions).
    """
    from transformers import TrainerCallback

    from bloomz_tune.model.loss import target_mask
    from bloomz_tune.training.throughput import ThroughputMeter

    meter = ThroughputMeter(config, device=args.device)
    batches = []
    collate = trainer.data_collator

    def recording_collator(features):
        out = collate(features)
        batches.append(out)
        return out

    trainer.data_collator = recording_collator

    class Clock(TrainerCallback):
        def on_step_end(self, _args, state, control, **kwargs):
            if state.global_step == args.warmup:
                meter.read()  # the timed window starts here

    trainer.add_callback(Clock())
    base_memory, peak = memory_probe(args.device)
    trainer.train()
    # the data loader may collate one batch ahead: the timed steps used batches warmup .. warmup + steps - 1
    timed = batches[args.warmup: args.warmup + args.steps]
    for b in timed:
        b = with_segments(b)
        meter.update(b, logit_tokens=int(target_mask(b["labels"], b.get("segment_ids")).sum()))
    real_tokens = meter.real_tokens
    result = meter.read()
    result.update(base_memory_gib=base_memory / 2**30, peak_memory_gib=peak() / 2**30, timed_batches=len(timed),
                  real_tokens_per_step=real_tokens / max(len(timed), 1))
    return result


def with_segments(batch: dict) -> dict:
    """TRL's padding-free packed batch (one flat row, ``position_ids`` restarting at 0 for each sample) with the
    sample boundaries as ``segment_ids`` and an ``attention_mask``, so attention is counted within samples."""
    import torch

    if "attention_mask" in batch:
        return batch
    segments = (batch["position_ids"] == 0).long().cumsum(-1)
    return {**batch, "segment_ids": segments, "attention_mask": torch.ones_like(batch["input_ids"])}


def run_ours(args, samples):
    """bloomz_tune's training path, built by the functions finetune.py builds a run with."""
    from bloomz_tune.finetune import adapt_model, batches_of, build_trainer

    run_dir = Path(tempfile.mkdtemp(prefix="ours_bench_"))
    recipe = bench_recipe(args, str(run_dir))
    model = adapt_model(recipe, build_model(args, recipe))
    train_set, collator = batches_of(recipe, tokenized_dataset(samples), pad_token_id=3)
    if (args.warmup + args.steps) * args.rows > len(train_set):
        raise SystemExit(f"only {len(train_set)} packed rows; raise --samples")
    trainer = build_trainer(recipe, model, special_tokens_only(), train_set, collator, run_dir)
    # No checkpoint inside the timed window, as for TRL (save_strategy "no"): transformers saves one when the last
    # step ends, and for full fine-tuning that is the weights and Adam's state (6.7 GB at 560m, 20 GB at 1b7).
    trainer.args.save_strategy = type(trainer.args.save_strategy)("no")
    try:
        result = timed_train(args, trainer, recipe_config(model))
        saved = sorted(p.name for p in run_dir.rglob("checkpoint-*"))
        if saved:  # a figure whose window held a save would measure the disk, not training
            raise SystemExit(f"ours wrote {saved} during the timed steps; the figures would include the save")
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    lengths = train_set["length"]
    result.update(dataset_packing_efficiency=sum(lengths) / (len(lengths) * args.max_length),
                  precision=precision_of(recipe))
    return result


def recipe_config(model):
    from bloomz_tune.model.bloom import causal_lm

    return causal_lm(model).config


def run_trl(args, samples, packing: bool):
    """TRL's SFTTrainer on the same model, LoRA, optimizer settings and precision as ``ours``."""
    from trl import SFTConfig, SFTTrainer

    from bloomz_tune.training.trainer import training_arguments

    recipe = bench_recipe(args, tempfile.mkdtemp(prefix="trl_bench_"))
    ours = training_arguments(recipe, recipe.output_dir)
    model = build_model(args, recipe)
    sft = SFTConfig(
        output_dir=recipe.output_dir, per_device_train_batch_size=args.rows if packing else args.trl_batch,
        max_steps=args.warmup + args.steps, learning_rate=ours.learning_rate, lr_scheduler_type=ours.lr_scheduler_type,
        warmup_steps=ours.warmup_steps, adam_beta1=ours.adam_beta1, adam_beta2=ours.adam_beta2,
        adam_epsilon=ours.adam_epsilon, weight_decay=ours.weight_decay, max_grad_norm=ours.max_grad_norm,
        logging_steps=recipe.training.logging_steps, save_strategy="no", report_to="none",
        use_cpu=torch_device(args).type != "cuda", bf16=ours.bf16, completion_only_loss=True, packing=packing,
        max_length=args.max_length, dataloader_num_workers=0, seed=args.seed, disable_tqdm=True,
        gradient_checkpointing=args.gradient_checkpointing,
    )
    trainer = SFTTrainer(model=model, args=sft, train_dataset=trl_dataset(samples), processing_class=special_tokens_only(),
                         peft_config=None if args.full else peft_config(recipe))
    packed_rows = len(trainer.train_dataset)
    result = timed_train(args, trainer, model.config)
    result["precision"] = precision_of(recipe)
    if packing:
        real = sum(len(x) for x, _ in samples)
        result["dataset_packing_efficiency"] = real / (packed_rows * args.max_length)
    return result


def run_one(args):
    samples = synthetic_samples(args.samples, args.vocab, args.max_length, args.seed)
    if args.run_one == "ours":
        result = run_ours(args, samples)
    else:
        result = run_trl(args, samples, packing=args.run_one == "trl_packed")
    print("RESULT " + json.dumps(result), flush=True)


# ---------------------------------------------------------------- report
def packing_report(args):
    from bloomz_tune.tokens.packing import plan_rows

    samples = synthetic_samples(args.samples, args.vocab, args.max_length, args.seed)
    lengths = [len(ids) for ids, _ in samples]
    print(f"{len(lengths)} samples, median length {sorted(lengths)[len(lengths) // 2]}, "
          f"mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}; rows of {args.max_length}")
    for strategy in ("greedy", "best_fit"):
        t = time.perf_counter()
        rows = plan_rows(lengths, args.max_length, strategy)
        print(f"  {strategy:9s} {len(rows):6d} rows  efficiency {sum(lengths) / (len(rows) * args.max_length):.2%}"
              f"  ({time.perf_counter() - t:.2f} s)")


def main(argv=None):
    args = parse_args(argv)
    if args.run_one:
        return run_one(args)
    if args.packing_only:
        return packing_report(args)
    wanted = [c for c in args.only.split(",") if c]
    unknown = set(wanted) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configuration(s) {sorted(unknown)}; choose from {CONFIGS}")
    passthrough = list(argv if argv is not None else sys.argv[1:])
    if "--json" in passthrough:
        at = passthrough.index("--json")
        del passthrough[at:at + 2]
    results = {}
    for name in wanted:
        print(f"running {name} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, *passthrough, "--run-one", name], capture_output=True,
                              text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            raise SystemExit(f"{name} failed")
        results[name] = json.loads(line[len("RESULT "):])
    print_table(args, results)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


def print_table(args, results):
    base = results.get("trl_padded")
    print(f"\nBLOOM {args.layers} layers, hidden {args.hidden}, {args.heads} heads, vocab {args.vocab}, "
          f"{results_precision(results)} on {args.device}, {'full' if args.full else 'LoRA r=16'}, "
          f"{'gradient checkpointing, ' if args.gradient_checkpointing else ''}rows of {args.max_length}, "
          f"{args.steps} timed steps")
    cols = [("real tok/s", "real_tokens_per_s", "{:.1f}"), ("target tok/s", "target_tokens_per_s", "{:.2f}"),
            ("padding eff.", "packing_efficiency", "{:.1%}"), ("dataset packing", "dataset_packing_efficiency",
                                                                "{:.1%}"),
            ("peak mem GiB", "peak_memory_gib", "{:.2f}"), ("model mem GiB", "base_memory_gib", "{:.2f}"),
            ("TFLOP/s", "tflops", "{:.3f}"), ("MFU", "mfu", "{:.1%}")]
    header = "| config | " + " | ".join(c[0] for c in cols) + " | real tok/s vs trl_padded | peak mem vs trl_padded |"
    print(header)
    print("|" + "---|" * (len(cols) + 3))
    for name, r in results.items():
        cells = [fmt.format(r[key]) if key in r else "-" for _, key, fmt in cols]
        ratio = f"{r['real_tokens_per_s'] / base['real_tokens_per_s']:.2f}x" if base else "-"
        mem = f"{r['peak_memory_gib'] / base['peak_memory_gib']:.2f}" if base else "-"
        print(f"| {name} | " + " | ".join(cells) + f" | {ratio} | {mem} |")


if __name__ == "__main__":
    main()
