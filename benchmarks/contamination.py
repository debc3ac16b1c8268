"""Contamination scan throughput (rows/s) on a 1M-row synthetic mixture, against two baselines in the same run.

    nice -n 5 python benchmarks/contamination.py [--rows 1000000] [--eval-examples 40000] [--num-proc 2] [--dir D]

Writes a synthetic build in the built-mixture layout (``dataset/`` train + validation with the build's columns,
and ``datasheet.json``/``datasheet.md``), in a child process so that its memory is not counted here: inputs of
lognormal length (median 80 words, long tail) and short targets over a 50,000-word Zipf vocabulary, with 1% of
the evaluation examples planted verbatim in training rows. The evaluation set is synthetic too (40,000 examples
of 6 to 40 words, a fifth of them shorter than 13 tokens; each with a key, its first half, for the key rule), drawn
from the same vocabulary so that most training tokens are evaluation tokens and every window is hashed and looked
up.

Timed on the same rows: the raw read (Arrow batches of 1,000 rows through ``datasets``, summing text lengths:
the floor any scan pays); ``contamination.scan`` (1 process, then ``--num-proc``), after building the
evaluation index (timed apart); and a plain Python scan (lower-case, strip ASCII punctuation, split, look each
13-gram tuple up in a set, as lm-evaluation-harness's decontamination does) on the first ``--python-rows``
rows. Prints rows per wall second and per CPU second of this process (the latter holds up better on a shared
machine), ratios, the planted examples found and the peak anonymous memory during the scan (RssAnon, which
leaves out the memory-mapped dataset pages). ``--dir D`` keeps the synthetic build in D and reuses it on the
next run. Offline; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import string
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

VOCAB, SEED = 50_000, 0


def words(rng) -> np.ndarray:
    letters = np.array(list(string.ascii_lowercase))
    return np.array(["".join(rng.choice(letters, rng.integers(2, 9))) + str(i) for i in range(VOCAB)])


def text(vocab, rng, n: int) -> str:
    ids = np.minimum(rng.zipf(1.2, n) - 1, VOCAB - 1)
    return " ".join(vocab[ids]) + "."


def eval_texts(count: int) -> list[str]:
    rng = np.random.default_rng(SEED + 1)
    vocab = words(np.random.default_rng(SEED))
    return [text(vocab, rng, int(rng.integers(6, 41))) for _ in range(count)]


def eval_keys(texts: list[str]) -> list[str]:
    """Each example's key, as the key rule reads it: its first half (at least 4 words), a premise's share."""
    return [" ".join(t.split()[:max(4, len(t.split()) // 2)]) for t in texts]


def write_mixture(folder: Path, rows: int, planted: list[str]) -> None:
    """The synthetic build (runs in a child process)."""
    from datasets import Dataset, DatasetDict, concatenate_datasets

    rng = np.random.default_rng(SEED + 2)
    vocab = words(np.random.default_rng(SEED))
    plant_at = set(rng.choice(rows, len(planted), replace=False).tolist())
    planted = iter(planted)
    chunks = []
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        lengths = np.clip(rng.lognormal(np.log(80), 0.8, n).astype(int), 5, 2000)
        inputs = [text(vocab, rng, int(k)) for k in lengths]
        for i in range(n):
            if start + i in plant_at:
                inputs[i] = f"Question: {next(planted).upper()} Answer yes or no."
        chunks.append(Dataset.from_dict({
            "inputs": inputs, "targets": [text(vocab, rng, int(k)) for k in rng.integers(1, 6, n)],
            "language": ["en"] * n, "task": ["synthetic"] * n, "source": [f"source_{i % 20}" for i in range(n)],
            "template": ["t"] * n, "choices": [[] for _ in range(n)]}))
    train = concatenate_datasets(chunks)
    DatasetDict({"train": train, "validation": train.select(range(10))}).save_to_disk(str(folder / "dataset"))
    (folder / "datasheet.json").write_text(json.dumps({"name": "synthetic", "fingerprint": "synthetic"}))
    (folder / "datasheet.md").write_text("# Mixture datasheet: synthetic\n")


class PeakAnon:
    """The peak of this process's anonymous resident memory (RssAnon), sampled every 20 ms."""

    def __enter__(self):
        self.peak, self._stop = self.now(), threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _watch(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.now())

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
        return 0


def raw_read(train) -> float:
    import pyarrow.compute as pc

    start, total = time.perf_counter(), 0
    for batch in train.select_columns(["inputs", "targets", "source"]).with_format("arrow").iter(batch_size=1000):
        total += pc.sum(pc.binary_length(batch["inputs"])).as_py() + pc.sum(pc.binary_length(batch["targets"])).as_py()
    return time.perf_counter() - start


def python_scan(train, texts: list[str], rows: int, n: int = 13) -> tuple[tuple[float, float], int]:
    """Plain Python: normalised token tuples in sets, one row at a time; returns ((wall, CPU seconds), rows with
    a hit)."""
    table = str.maketrans("", "", string.punctuation)
    grams: dict[int, set] = {}
    for t in texts:
        tok = t.lower().translate(table).split()
        k = min(len(tok), n)
        grams.setdefault(k, set()).update(tuple(tok[i:i + k]) for i in range(len(tok) - k + 1))
    part = train.select(range(rows))
    start, cpu, dirty = time.perf_counter(), time.process_time(), 0
    for inputs, targets in zip(part["inputs"], part["targets"]):
        tok = f"{inputs}\n{targets}".lower().translate(table).split()
        dirty += any(tuple(tok[i:i + k]) in g for k, g in grams.items() for i in range(len(tok) - k + 1))
    return (time.perf_counter() - start, time.process_time() - cpu), dirty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--eval-examples", type=int, default=40_000)
    parser.add_argument("--num-proc", type=int, default=1, help="also time the scan with this many processes")
    parser.add_argument("--dir", default=None, help="keep the synthetic build here (reused when present)")
    parser.add_argument("--python-rows", type=int, default=20_000)
    args = parser.parse_args(argv)
    from bloomz_tune.mixture.builds import load_built_mixture
    from bloomz_tune.mixture.contamination import build_index, scan

    texts = eval_texts(args.eval_examples)
    planted = texts[::100]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.dir or tmp)
        if not (folder / "datasheet.json").is_file():
            start = time.perf_counter()
            child = multiprocessing.get_context("spawn").Process(target=write_mixture, args=(folder, args.rows,
                                                                                            planted))
            child.start()
            child.join()
            print(f"wrote {args.rows:,} synthetic rows in {time.perf_counter() - start:.1f}s", flush=True)
        train = load_built_mixture(folder)["train"]
        raw_s = raw_read(train)
        start = time.perf_counter()
        index, sizes = build_index(texts, keys=eval_keys(texts))
        index_s = time.perf_counter() - start
        results = {}
        for procs in dict.fromkeys((1, args.num_proc)):
            with PeakAnon() as mem:
                start, cpu = time.perf_counter(), time.process_time()
                hits = scan(train, index, num_proc=procs, progress=False)
                results[procs] = (time.perf_counter() - start, time.process_time() - cpu, mem.peak)
        found = set(hits.column("example").to_pylist())
        py_s, _ = python_scan(train, texts, args.python_rows)
    n = len(train)
    print(f"evaluation index: {len(texts):,} examples ({int((sizes < 13).sum()):,} shorter than 13 tokens), "
          f"{sum(len(g[0]) for g in index.grams.values()):,} distinct grams, built in {index_s:.2f}s")
    print(f"planted examples found: {len(found & set(range(0, len(texts), 100))):,} of {len(planted):,} "
          f"({len(found):,} examples flagged in all)")
    print(f"raw read (Arrow batches):         {n / raw_s:12,.0f} rows/s ({raw_s:.1f}s)")
    for procs, (seconds, cpu, peak) in results.items():
        per_cpu = f", {n / cpu:,.0f} rows per CPU second" if procs == 1 else ""
        print(f"hashed scan, num_proc={procs}:        {n / seconds:12,.0f} rows/s ({seconds:.1f}s{per_cpu}; "
              f"{n / seconds / (n / raw_s):.4f} x raw read; peak anonymous memory {peak / 2**20:,.0f} MiB)")
    py_wall, py_cpu = py_s
    print(f"plain Python n-gram sets:         {args.python_rows / py_wall:12,.0f} rows/s ({py_wall:.1f}s, "
          f"{args.python_rows / py_cpu:,.0f} rows per CPU second; first {args.python_rows:,} rows)")
    print(f"hashed scan (num_proc=1) / plain Python: {n / results[1][0] / (args.python_rows / py_wall):.1f}x wall, "
          f"{n / results[1][1] / (args.python_rows / py_cpu):.1f}x CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
