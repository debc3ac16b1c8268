"""Mixture rows -> token ids with target-only labels -> batches.

Tokenization follows BLOOMZ (bigscience-workshop/xmtf, Megatron-DeepSpeed t0loading): ``inputs`` are tokenized
as they are, without special tokens; ``targets`` get a leading space (unless they already start with
whitespace) and an end-of-sequence token. Labels are the target ids; input positions get -100.

A sample longer than ``max_length`` is skipped (as BLOOMZ did) or, with ``overlong="truncate_left"``, its
inputs lose tokens from the left until it fits (the target is never cut; a target that alone does not fit is
skipped). Both are counted and reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .loss import IGNORE_INDEX

OVERLONG_POLICIES = ("skip", "truncate_left")


def target_text(target: str) -> str:
    return target if target[:1].isspace() else " " + target


def tokenize_batch(batch: dict, tokenizer, max_length: int, overlong: str = "skip") -> dict:
    """``datasets.map(batched=True)`` function: adds input_ids, labels, length, and a status per row."""
    input_ids = tokenizer(batch["inputs"], add_special_tokens=False)["input_ids"]
    target_ids = tokenizer([target_text(t) for t in batch["targets"]], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = {"input_ids": [], "labels": [], "length": [], "status": []}
    for inp, tgt in zip(input_ids, target_ids):
        tgt = tgt + [eos]
        status = "ok"
        if len(inp) + len(tgt) > max_length:
            room = max_length - len(tgt)
            if overlong == "truncate_left" and room >= 1:
                inp, status = inp[len(inp) - room:], "truncated"
            else:
                inp, tgt, status = [], [], "skipped"
        if status != "skipped" and (not inp or len(tgt) < 2):
            inp, tgt, status = [], [], "empty"
        out["input_ids"].append(inp + tgt)
        out["labels"].append([IGNORE_INDEX] * len(inp) + tgt)
        out["length"].append(len(inp) + len(tgt))
        out["status"].append(status)
    return out


def tokenize_mixture(dataset, tokenizer, max_length: int, overlong: str = "skip", num_proc: int | None = None):
    """Tokenize a mixture split; return (kept dataset, counts by status)."""
    if overlong not in OVERLONG_POLICIES:
        raise ValueError(f"overlong must be one of {OVERLONG_POLICIES}, got {overlong!r}")
    tokenized = dataset.map(
        tokenize_batch,
        batched=True,
        num_proc=num_proc,
        fn_kwargs=dict(tokenizer=tokenizer, max_length=max_length, overlong=overlong),
        remove_columns=dataset.column_names,
        desc="Tokenizing",
    )
    statuses = tokenized["status"]
    counts = {s: statuses.count(s) for s in ("ok", "truncated", "skipped", "empty")}
    kept = tokenized.filter(lambda s: [x != "skipped" and x != "empty" for x in s], input_columns="status",
                            batched=True, desc="Dropping over-long samples")
    return kept.remove_columns("status"), counts


@dataclass
class PaddingCollator:
    """Right-pads input_ids / labels / attention_mask to the longest row (or a multiple of ``pad_to_multiple_of``)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict:
        longest = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            longest = (longest + m - 1) // m * m
        batch = {
            "input_ids": torch.full((len(features), longest), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(features), longest), dtype=torch.long),
            "labels": torch.full((len(features), longest), IGNORE_INDEX, dtype=torch.long),
        }
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(f["input_ids"])
            batch["attention_mask"][i, :n] = 1
            batch["labels"][i, :n] = torch.tensor(f["labels"])
        return batch
