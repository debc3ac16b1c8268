"""Packing plans, packed rows, the collator, and the throughput accounting the trainer logs."""

import random
from types import SimpleNamespace

import datasets
import pytest
import torch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.loss import IGNORE_INDEX, select_targets
from bloomz_tune.tokens.packing import PackedCollator, pack_dataset, plan_rows
from bloomz_tune.tokens.tokenizing import fit_sample
from bloomz_tune.training.throughput import ThroughputMeter, attention_pairs, bloom_flops


def xp3_like_lengths(n, seed=0):
    """Long-tailed inputs of a few hundred tokens plus short targets, as in xP3."""
    rng = random.Random(seed)
    return [min(2048, int(rng.lognormvariate(5.3, 0.8)) + 1 + int(rng.lognormvariate(2.0, 0.9)) + 1)
            for _ in range(n)]


@pytest.mark.parametrize("strategy", ["greedy", "best_fit"])
def test_plans_use_every_sample_once_and_respect_the_row(strategy):
    lengths = xp3_like_lengths(3000)
    rows = plan_rows(lengths, 2048, strategy)
    flat = [i for row in rows for i in row]
    assert sorted(flat) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 2048 for row in rows)
    assert all(row == sorted(row) for row in rows)  # samples keep dataset order inside a row


def test_greedy_follows_dataset_order():
    assert plan_rows([5, 4, 3, 6, 1], 8, "greedy") == [[0], [1, 2], [3, 4]]


def test_best_fit_fills_the_tightest_row():
    # 5 opens row 0 (room 3), 6 opens row 1 (room 2), 2 fits both and goes to the tighter row 1, 3 fits row 0
    assert plan_rows([5, 6, 2, 3], 8, "best_fit") == [[0, 3], [1, 2]]


def test_best_fit_beats_greedy_and_reaches_97_percent():
    lengths = xp3_like_lengths(5000, seed=3)
    eff = {s: sum(lengths) / (2048 * len(plan_rows(lengths, 2048, s))) for s in ("greedy", "best_fit")}
    assert eff["best_fit"] >= 0.97
    assert eff["best_fit"] > eff["greedy"]


def test_plan_rejects_bad_lengths_and_strategy():
    with pytest.raises(BloomzTuneError, match="1..8"):
        plan_rows([3, 9], 8)
    with pytest.raises(BloomzTuneError, match="strategy"):
        plan_rows([3], 8, "first_fit")


def _dataset(samples):
    return datasets.Dataset.from_dict({"input_ids": [s[0] for s in samples], "labels": [s[1] for s in samples],
                                       "language": ["en"] * len(samples)})


SAMPLES = [
    ([10, 11, 12, 13], [-100, -100, 12, 13]),
    ([20, 21, 22], [-100, 21, 22]),
    ([30, 31, 32, 33, 34, 35, 36, 37, 38, 39], [-100] * 8 + [38, 39]),  # over-long for rows of 8
    ([40, 41], [-100, 41]),
    (list(range(50, 60)), [-100, -100] + list(range(52, 60))),  # its target alone fills a row of 8
]


FITTING = [SAMPLES[0], SAMPLES[1], SAMPLES[3]]  # the samples that fit rows of 8


def test_pack_dataset_rows_hold_whole_samples_with_segment_ids():
    packed, stats = pack_dataset(_dataset(FITTING), max_length=8, strategy="greedy")
    assert packed.column_names == ["input_ids", "labels", "segment_ids", "length"]
    assert packed["input_ids"] == [[10, 11, 12, 13, 20, 21, 22], [40, 41]]
    assert packed["labels"] == [[-100, -100, 12, 13, -100, 21, 22], [-100, 41]]
    assert packed["segment_ids"] == [[1, 1, 1, 1, 2, 2, 2], [1, 1]]
    assert packed["length"] == [7, 2]
    assert stats.samples == 3 and stats.real_tokens == 9 and stats.target_tokens == 5 and stats.rows == 2
    assert stats.efficiency == pytest.approx(9 / 16)
    assert "packed 3 samples into 2 rows of 8" in str(stats)


def test_over_long_rule_lives_in_tokenization_and_packing_refuses_what_does_not_fit():
    """Over-long samples are skipped or left-truncated by data.fit_sample; packing never sees one."""
    with pytest.raises(BloomzTuneError, match="2 sample.* longer than a row of 8 tokens .*row 2, 10 tokens"):
        pack_dataset(_dataset(SAMPLES), max_length=8)
    kept = [fit_sample(ids[:n], ids[n:], 8, "truncate_left")
            for ids, labels in SAMPLES for n in [labels.count(-100)]]
    assert [status for _, _, status in kept] == ["ok", "ok", "truncated", "empty", "skipped"]  # [41]: no token before EOS
    assert kept[2][:2] == ([32, 33, 34, 35, 36, 37], [38, 39])  # inputs cut from the left; the target whole
    assert fit_sample([1, 2, 3], [4, 5], 4, "skip") == ([], [], "skipped")


def reference_plan(lengths, max_length, strategy):
    """The packing rule written as plainly as possible, one sample at a time (the bulk code must agree): greedy
    fills the last row; best fit takes the open row with the least room that fits, among equals the one that
    reached that room last, else opens a row."""
    rows, room, reached = [], [], []
    for i, n in enumerate(lengths):
        open_rows = range(len(rows)) if strategy == "best_fit" else range(len(rows))[-1:]
        fits = [r for r in open_rows if room[r] >= n]
        if fits:
            r = min(fits, key=lambda r: (room[r], -reached[r]))
        else:
            r = len(rows)
            rows.append([])
            room.append(max_length)
            reached.append(i)
        rows[r].append(i)
        room[r] -= n
        reached[r] = i
    return rows


@pytest.mark.parametrize("strategy", ["greedy", "best_fit"])
@pytest.mark.parametrize("max_length", [8, 64])
def test_bulk_packing_equals_the_sample_by_sample_rule(strategy, max_length):
    rng = random.Random(max_length)
    lengths = [rng.randint(1, max_length) for _ in range(400)]
    rows = plan_rows(lengths, max_length, strategy)
    assert rows == reference_plan(lengths, max_length, strategy)
    samples = [([rng.randrange(1000) for _ in range(n)], None) for n in lengths]
    samples = [(ids, [-100] * (len(ids) // 2) + ids[len(ids) // 2:]) for ids, _ in samples]
    packed, stats = pack_dataset(_dataset(samples), max_length, strategy, rows_per_chunk=7)
    assert packed["input_ids"] == [[t for i in row for t in samples[i][0]] for row in rows]
    assert packed["labels"] == [[t for i in row for t in samples[i][1]] for row in rows]
    assert packed["segment_ids"] == [[k + 1 for k, i in enumerate(row) for _ in samples[i][0]] for row in rows]
    assert packed["length"] == [sum(lengths[i] for i in row) for row in rows]
    assert stats.target_tokens == sum(sum(t != -100 for t in lab) for _, lab in samples)


def test_pack_dataset_refuses_untokenized_rows():
    with pytest.raises(BloomzTuneError, match="missing columns"):
        pack_dataset(datasets.Dataset.from_dict({"inputs": ["a"], "targets": ["b"]}), 8)


def test_collator_pads_and_marks_segments():
    packed, _ = pack_dataset(_dataset(FITTING), max_length=8)
    batch = PackedCollator(pad_token_id=3, max_length=8)(list(packed))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "segment_ids"}
    assert all(v.shape == (len(packed), 8) and v.dtype == torch.long for v in batch.values())
    pad = batch["segment_ids"] == 0
    assert (batch["input_ids"][pad] == 3).all() and (batch["labels"][pad] == IGNORE_INDEX).all()
    assert torch.equal(batch["attention_mask"], (~pad).long())
    assert PackedCollator(3, pad_to_multiple_of=4)(list(packed))["input_ids"].shape[1] == 8
    with pytest.raises(BloomzTuneError, match="more than max_length"):
        PackedCollator(3, max_length=4)(list(packed))
    with pytest.raises(BloomzTuneError, match="segment_ids"):
        PackedCollator(3)([{"input_ids": [1], "labels": [1]}])


def test_no_target_is_predicted_across_a_segment_boundary():
    # the second sample has no input tokens: its first token is a target but nothing in its segment precedes it
    labels = torch.tensor([[-100, 5, 6, 7, 8]])
    segments = torch.tensor([[1, 1, 1, 2, 2]])
    positions, targets, sample_ids = select_targets(labels, segments)
    assert positions.tolist() == [[0, 0], [0, 1], [0, 3]]
    assert targets.tolist() == [5, 6, 8] and sample_ids.tolist() == [0, 0, 1]


def test_throughput_accounting():
    config = SimpleNamespace(hidden_size=4, n_layer=2, vocab_size=10)
    segments = torch.tensor([[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 1, 1]])
    assert attention_pairs(segments) == 6 + 3 + 21
    assert attention_pairs(torch.tensor([[1, 1, 0], [1, 1, 1]])) == 3 + 6
    assert bloom_flops(config, 1, 0, 0, training=False) == 2 * 12 * 16 * 2
    assert bloom_flops(config, 0, 1, 0) == 3 * 2 * 4 * 10
    meter = ThroughputMeter(config)
    labels = torch.tensor([[-100, 5, 6, -100, 7, -100], [-100, -100, 1, 2, 3, 4]])
    meter.update({"attention_mask": (segments > 0).long(), "segment_ids": segments, "labels": labels},
                 logit_tokens=7)
    out = meter.read()
    assert out["packing_efficiency"] == pytest.approx(11 / 12)
    assert out["real_tokens_per_s"] > 0 and out["peak_memory_gib"] > 0
    assert out["target_tokens_per_s"] / out["real_tokens_per_s"] == pytest.approx(7 / 11)
    assert "mfu" not in out  # no accelerator peak known on CPU
    assert meter.real_tokens == 0  # read() starts a new window
