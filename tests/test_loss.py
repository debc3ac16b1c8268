"""Target-only labels, BLOOMZ's per-sample normalised loss and the plain token mean, checked by hand."""

import math

import torch
from oracles import tokenize_batch

from bloomz_tune.model.bloom import enable_selected_logits
from bloomz_tune.model.loss import (
    IGNORE_INDEX,
    batch_loss_sum,
    count_items,
    reduce_token_losses,
    select_targets,
    target_mask,
)
from bloomz_tune.tokens.batches import PaddingCollator


def test_labels_cover_target_and_eos_only(tiny_tokenizer):
    out = tokenize_batch({"inputs": ["Review: great film. Sentiment:"], "targets": ["positive"]},
                         tiny_tokenizer, max_length=64)
    ids, labels = out["input_ids"][0], out["labels"][0]
    n_in = len(tiny_tokenizer("Review: great film. Sentiment:", add_special_tokens=False)["input_ids"])
    assert labels[:n_in] == [IGNORE_INDEX] * n_in
    assert labels[n_in:] == ids[n_in:]
    assert ids[-1] == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(ids[n_in:-1]) == " positive"  # the leading space BLOOMZ adds


def test_overlong_skip_and_truncate_left(tiny_tokenizer):
    row = {"inputs": ["word " * 50], "targets": ["yes"]}
    skipped = tokenize_batch(row, tiny_tokenizer, max_length=16, overlong="skip")
    assert skipped["status"] == ["skipped"]
    cut = tokenize_batch(row, tiny_tokenizer, max_length=16, overlong="truncate_left")
    assert cut["status"] == ["truncated"] and cut["length"] == [16]
    target = tiny_tokenizer(" yes", add_special_tokens=False)["input_ids"] + [tiny_tokenizer.eos_token_id]
    assert cut["input_ids"][0][-len(target):] == target  # the target is never cut


def _hand_losses(model, batch):
    """Per-sample lists of target-token losses, from the stock full-logits forward."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits.float(), -1)
    per_sample = []
    for b in range(batch["input_ids"].shape[0]):
        losses = []
        for t in range(1, batch["input_ids"].shape[1]):
            y = int(batch["labels"][b, t])
            if y != IGNORE_INDEX:
                losses.append(-float(logp[b, t - 1, y]))
        per_sample.append(losses)
    return per_sample


def test_sample_mean_and_token_mean_match_hand_computation(tiny_model, tiny_tokenizer):
    rows = tokenize_batch({"inputs": ["Translate: red house", "Q: capital of France?", "Sentiment of: bad"],
                           "targets": ["la maison rouge et la grande porte", "Paris", "negative"]},
                          tiny_tokenizer, max_length=64)
    batch = PaddingCollator(tiny_tokenizer.pad_token_id)(
        [{"input_ids": i, "labels": lab} for i, lab in zip(rows["input_ids"], rows["labels"])])
    per_sample = _hand_losses(tiny_model, batch)
    want_sample = sum(sum(s) / len(s) for s in per_sample) / len(per_sample)
    want_token = sum(sum(s) for s in per_sample) / sum(len(s) for s in per_sample)
    assert not math.isclose(want_sample, want_token, rel_tol=1e-3)  # the two losses really differ here
    enable_selected_logits(tiny_model)
    for loss_type, want in (("sample_mean", want_sample), ("token_mean", want_token)):
        total, items, n_targets = batch_loss_sum(tiny_model, batch, loss_type)
        assert items == count_items(batch["labels"], None, loss_type)
        assert abs(float(total) / items - want) < 1e-5
        assert n_targets == sum(len(s) for s in per_sample)


def test_segments_are_separate_samples():
    labels = torch.tensor([[-100, 5, 6, -100, -100, 7, -100]])
    segments = torch.tensor([[1, 1, 1, 2, 2, 2, 0]])
    positions, targets, sample_ids = select_targets(labels, segments)
    assert positions.tolist() == [[0, 0], [0, 1], [0, 4]]
    assert targets.tolist() == [5, 6, 7]
    assert sample_ids.tolist() == [0, 0, 1]
    total, items = reduce_token_losses(torch.tensor([1.0, 3.0, 10.0]), sample_ids, "sample_mean")
    assert items == 2 and float(total) == 12.0  # (1+3)/2 + 10/1


def test_target_mask_never_crosses_a_sample_boundary():
    """Position t predicts label t+1: a target of its own sample only, never the next packed sample's first."""
    labels = torch.tensor([[-100, 5, 6, 8, -100, 7, 9, -100]])
    segments = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 0]])
    assert target_mask(labels, segments).tolist() == [[True, True, False, False, True, True, False]]
    assert target_mask(labels).tolist() == [[True, True, True, False, True, True, False]]  # one sample: t=2 counts
    positions, _, _ = select_targets(labels, segments)
    assert [2] not in positions[:, 1:].tolist()
