"""Bulk tokenization: the same rows as the row-by-row rule, and the tokenized split kept beside the build."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from oracles import tokenize_batch, tokenize_mixture

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.builds import build_mixture, load_built_mixture
from bloomz_tune.model.tiny import build_tiny_tokenizer
from bloomz_tune.tokens.cache import CACHE_DIR, tokenized_split
from bloomz_tune.tokens.counts import datasheet_for
from bloomz_tune.tokens.tokenizing import fit_lengths, fit_sample, ragged_take

REPO = Path(__file__).resolve().parents[1]
WORDS = "a bb ccc market, bank: é 中文 !! yes no".split()
STATUS = ("ok", "truncated", "skipped", "empty")


def random_rows(n: int, seed: int = 0) -> dict:
    rng = random.Random(seed)
    return {"inputs": [" ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 25))) for _ in range(n)],
            "targets": [rng.choice(["yes", " no", "", "\tx", "a long answer " * rng.randint(1, 4)]) for _ in range(n)]}


@pytest.mark.parametrize("max_length", [6, 16, 2048])
@pytest.mark.parametrize("overlong", ["skip", "truncate_left"])
def test_bulk_tokenization_gives_the_rows_of_the_row_by_row_rule(tiny_tokenizer, max_length, overlong):
    rows = random_rows(400)
    ref = tokenize_batch(rows, tiny_tokenizer, max_length, overlong)
    kept = [i for i, s in enumerate(ref["status"]) if s in ("ok", "truncated")]
    got, counts = tokenize_mixture(datasets.Dataset.from_dict(rows), tiny_tokenizer, max_length, overlong)
    for column in ("input_ids", "labels", "length"):
        assert got[column] == [ref[column][i] for i in kept]
    assert counts == {s: ref["status"].count(s) for s in STATUS}
    assert sum(counts.values()) == 400 and (max_length > 6 or counts["skipped"] + counts["truncated"] > 0)


def test_tokenizer_with_its_own_truncation_goes_through_the_wrapper(tiny_tokenizer):
    """A backend that truncates on its own would cut rows; the transformers call (which switches it off) is used."""
    rows = random_rows(50, seed=1)
    ref = tokenize_mixture(datasets.Dataset.from_dict(rows), tiny_tokenizer, 2048)[0]["input_ids"]
    tokenizer = build_tiny_tokenizer(rows["inputs"], vocab_size=300)
    plain = tokenize_mixture(datasets.Dataset.from_dict(rows), tokenizer, 2048)[0]["input_ids"]
    tokenizer.backend_tokenizer.enable_truncation(3)
    assert tokenize_mixture(datasets.Dataset.from_dict(rows), tokenizer, 2048)[0]["input_ids"] == plain
    assert max(map(len, plain)) > 3 and len(ref) == len(plain)


def test_length_rule_equals_fit_sample_on_random_lengths():
    rng = np.random.default_rng(0)
    inputs, targets = rng.integers(0, 12, 3000), rng.integers(1, 12, 3000)
    for overlong in ("skip", "truncate_left"):
        status, kept = fit_lengths(inputs, targets, 10, overlong)
        for n_in, n_tgt, code, k in zip(inputs.tolist(), targets.tolist(), status.tolist(), kept.tolist()):
            inp, tgt, want = fit_sample(list(range(n_in)), list(range(n_tgt)), 10, overlong)
            assert STATUS[code] == want
            if want in ("ok", "truncated"):
                assert k == len(inp)


def test_ragged_take_and_a_bad_policy():
    pool = np.arange(10)
    assert ragged_take(pool, np.array([7, 0, 3]), np.array([2, 3, 0])).tolist() == [7, 8, 0, 1, 2]
    with pytest.raises(BloomzTuneError, match="overlong must be one of"):
        tokenize_mixture(datasets.Dataset.from_dict(random_rows(3)), None, 8, "cut")


@pytest.fixture(scope="module")
def small_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tok")
    (tmp / "ag").mkdir()
    rng = random.Random(0)
    with (tmp / "ag" / "train.jsonl").open("w") as f:
        for i in range(120):
            f.write(json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30))) + f" {i}",
                                "label": rng.randrange(4)}) + "\n")
    spec = tmp / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "seed": 1, "validation_fraction": 0.2, "sources": [
        {"path": str(tmp / "ag"), "language": "en", "task": "topic_classification",
         "template_file": str(REPO / "data_mixtures" / "templates" / "ag_news.yaml")}]}))
    return build_mixture(spec, tmp / "built")


def test_tokenized_split_is_reused_and_rebuilt_when_the_settings_change(small_build, tiny_tokenizer):
    train = load_built_mixture(small_build)["train"]
    first = tokenized_split(small_build, train, "train", tiny_tokenizer, 64)
    assert first.input_tokens is not None and len(first.input_tokens) == len(train)
    [folder] = (small_build / CACHE_DIR).iterdir()
    stamp = (folder / "train.arrow").stat().st_mtime_ns
    again = tokenized_split(small_build, train, "train", tiny_tokenizer, 64)
    assert again.input_tokens is None and again.counts == first.counts        # read back, not tokenized
    assert again.dataset["input_ids"] == first.dataset["input_ids"]
    assert (folder / "train.arrow").stat().st_mtime_ns == stamp
    assert again.dataset["input_ids"] == tokenize_mixture(train, tiny_tokenizer, 64)[0]["input_ids"]

    shorter = tokenized_split(small_build, train, "train", tiny_tokenizer, 24)
    assert shorter.input_tokens is not None and shorter.counts["skipped"] > 0  # max_length: a new tokenization
    other = build_tiny_tokenizer(train["inputs"], vocab_size=300)
    retrained = tokenized_split(small_build, train, "train", other, 64)
    assert retrained.input_tokens is not None                                 # another tokenizer: likewise
    assert retrained.dataset["input_ids"] != first.dataset["input_ids"]
    assert len(list((small_build / CACHE_DIR).iterdir())) == 3
    assert not list((small_build / CACHE_DIR).glob("*/.*"))                  # no partial file left behind


def test_datasheet_counts_from_the_training_pass_equal_a_fresh_count(small_build, tiny_tokenizer, tmp_path):
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(small_build, copy, ignore=shutil.ignore_patterns(CACHE_DIR, "tokens"))
    train = load_built_mixture(copy)["train"]
    done = tokenized_split(copy, train, "train", tiny_tokenizer, 16)      # short rows: some skipped, still counted
    assert done.counts["skipped"] > 0
    from_training = datasheet_for(copy, tiny_tokenizer, counted={"train": (done.input_tokens, done.target_tokens)})
    shutil.rmtree(copy / "tokens")
    fresh = datasheet_for(copy, tiny_tokenizer)
    assert from_training["tokens"] == fresh["tokens"] and from_training["by_template"] == fresh["by_template"]
    expected = sum(len(tiny_tokenizer(x, add_special_tokens=False)["input_ids"]) for x in train["inputs"])
    assert fresh["tokens"]["train"]["input"] == expected
