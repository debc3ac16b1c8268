"""Time to the first optimizer step on an xP3-sized mixture: build, tokenize + pack, first step, at two sizes.

    python benchmarks/scale.py [--rows 100000 1000000] [--num-proc 1]

For each size, writes ag_news-schema rows (10 to 40 words each) to a local folder and builds a 3-template mixture
from them (load, render, dedupe, split, shuffle, save to Arrow, datasheet), then times tokenization with
packing into 2048-token rows as training does (``tokenizing.tokenized_split``, which also writes the tokenized
split beside the build, + ``packing.pack_dataset``), and the Trainer's set-up
and first optimizer step on a tiny BLOOM, packed and unpacked (length-grouped sampler over the whole mixture).
Prints each time and the ratio of the largest size to the smallest (linear in the rows: 10x). Offline.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mixture_throughput import write_rows  # noqa: E402  (benchmarks/, this script's folder)

from bloomz_tune.mixture.builds import build_mixture, load_built_mixture  # noqa: E402
from bloomz_tune.model.tiny import build_tiny_bloom, build_tiny_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def first_step_seconds(model, tokenizer, train_set, collator, folder: Path, packing: bool) -> float:
    """Seconds from building the Trainer to the end of its first optimizer step."""
    from transformers import TrainerCallback

    from bloomz_tune.model.bloom import patch_bloom
    from bloomz_tune.recipe import recipe_from_dict
    from bloomz_tune.training.trainer import BloomzTrainer, training_arguments

    class Stop(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = True

    recipe = recipe_from_dict({"output_dir": str(folder), "data": {"packing": packing}, "training": {
        "per_device_train_batch_size": 2 if packing else 16, "max_steps": 10, "bf16": False, "save_steps": 1000,
        "logging_steps": 1000}})
    start = time.perf_counter()
    trainer = BloomzTrainer(model=patch_bloom(model, "sdpa"), args=training_arguments(recipe, folder),
                            train_dataset=train_set, data_collator=collator, callbacks=[Stop()])
    trainer.train()
    return time.perf_counter() - start


def measure(rows: int, num_proc: int, tmp: Path) -> dict:
    from bloomz_tune.tokens.batches import PaddingCollator
    from bloomz_tune.tokens.cache import tokenized_split
    from bloomz_tune.tokens.packing import PackedCollator, pack_dataset

    texts = write_rows(tmp / "ag_news", rows // 3, words=(10, 40), keep=2000)
    spec = tmp / "bench.yaml"
    spec.write_text(json.dumps({
        "name": "scale", "seed": 0, "validation_fraction": 0.05, "cap": rows,
        "sources": [{"path": str(tmp / "ag_news"), "language": "en", "task": "topic_classification",
                     "template_file": str(REPO / "data_mixtures" / "templates" / "ag_news.yaml")}]}))
    out = {"rows": rows}
    start = time.perf_counter()
    built = build_mixture(spec, tmp / "built", num_proc=num_proc, progress=False)
    out["build_s"] = time.perf_counter() - start
    train = load_built_mixture(built)["train"]
    tokenizer = build_tiny_tokenizer(texts, vocab_size=1024)
    start = time.perf_counter()
    tokenized = tokenized_split(built, train, "train", tokenizer, 2048, num_proc=num_proc).dataset
    packed, stats = pack_dataset(tokenized, 2048)
    out["tokenize_pack_s"] = time.perf_counter() - start
    out["train_rows"], out["packed_rows"] = len(tokenized), stats.rows
    model = build_tiny_bloom(tokenizer, hidden_size=64, n_layer=2, n_head=4)
    out["first_step_packed_s"] = first_step_seconds(model, tokenizer, packed, PackedCollator(tokenizer.pad_token_id),
                                                    tmp / "run_packed", packing=True)
    out["first_step_unpacked_s"] = first_step_seconds(model, tokenizer, tokenized,
                                                      PaddingCollator(tokenizer.pad_token_id), tmp / "run", False)
    out["to_first_step_s"] = out["build_s"] + out["tokenize_pack_s"] + out["first_step_packed_s"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000], help="rendered rows per size")
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args(argv)
    results = []
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(measure(rows, args.num_proc, Path(tmp)))
        print(json.dumps(results[-1]), flush=True)
    keys = ("build_s", "tokenize_pack_s", "first_step_packed_s", "first_step_unpacked_s", "to_first_step_s")
    print(f"{'rows':>10} " + " ".join(f"{k:>22}" for k in keys))
    for r in results:
        print(f"{r['rows']:>10,} " + " ".join(f"{r[k]:>22.2f}" for k in keys))
    if len(results) > 1:
        first, last = results[0], results[-1]
        print(f"{'ratio':>10} " + " ".join(f"{last[k] / first[k]:>21.2f}x" for k in keys)
              + f"   (rows {last['rows'] / first['rows']:.0f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
