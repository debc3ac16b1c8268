"""Mixture build throughput (rows/s, with tokenization) against the raw batched fast tokenizer on the same texts.

    python benchmarks/mixture_throughput.py [--rows 20000] [--num-proc 1]

Writes ag_news-schema rows to a local folder, builds a 3-template mixture from it with token counts (the full
path: load, render in the sandbox, dedupe, split, shuffle, save to Arrow, datasheet), then tokenizes the built
inputs and targets with the same tiny fast tokenizer in batches of 1,000 (the baseline: what a user pays for
tokenization alone). Prints both throughputs and their ratio. Offline; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bloomz_tune.mixture.builds import build_mixture, load_built_mixture  # noqa: E402
from bloomz_tune.model.tiny import build_tiny_tokenizer  # noqa: E402

WORDS = ("market bank shares profit team match goal coach planet cells research leaders election border "
         "minister talks oil chip satellite striker league rates merger scientists agency record weak sales").split()


def write_rows(folder: Path, n: int, seed: int = 0, words: tuple[int, int] = (20, 60), keep: int | None = None) -> list[str]:
    """Write ``n`` ag_news-schema rows of ``words`` (min, max) words to ``folder/train.jsonl``; return the first
    ``keep`` texts (all by default)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    with (folder / "train.jsonl").open("w") as f:
        for i in range(n):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) + f" (story {i})."
            if keep is None or i < keep:
                texts.append(text)
            f.write(json.dumps({"text": text, "label": rng.randrange(4)}) + "\n")
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="source rows (each rendered by 3 templates)")
    parser.add_argument("--num-proc", type=int, default=1)
    args = parser.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = write_rows(tmp / "ag_news", args.rows)
        tokenizer = build_tiny_tokenizer(texts[:2000], vocab_size=1024)
        spec = tmp / "bench.yaml"
        spec.write_text(json.dumps({
            "name": "bench", "seed": 0, "validation_fraction": 0.05,
            "sources": [{"path": str(tmp / "ag_news"), "language": "en", "task": "topic_classification",
                         "template_file": str(repo / "data_mixtures" / "templates" / "ag_news.yaml")}]}))
        start = time.perf_counter()
        out = build_mixture(spec, tmp / "built", num_proc=args.num_proc, tokenizer=tokenizer, progress=False)
        build_s = time.perf_counter() - start
        dsd = load_built_mixture(out)
        inputs = list(dsd["train"]["inputs"]) + list(dsd["validation"]["inputs"])
        targets = [" " + t for t in list(dsd["train"]["targets"]) + list(dsd["validation"]["targets"])]
        n = len(inputs)
        start = time.perf_counter()
        for i in range(0, n, 1000):
            tokenizer(inputs[i:i + 1000], add_special_tokens=False)
            tokenizer(targets[i:i + 1000], add_special_tokens=False)
        raw_s = time.perf_counter() - start
    build_rate, raw_rate = n / build_s, n / raw_s
    print(f"rows built: {n:,} ({args.rows:,} source rows x 3 templates, num_proc={args.num_proc})")
    print(f"mixture build (with tokenization): {build_rate:,.0f} rows/s ({build_s:.2f} s)")
    print(f"raw batched fast tokenizer:        {raw_rate:,.0f} rows/s ({raw_s:.2f} s)")
    print(f"ratio build / raw tokenizer:       {build_rate / raw_rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
