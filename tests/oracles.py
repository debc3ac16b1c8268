"""Row-by-row references that the bulk code is tested against (not shipped in the package).

``tokenize_batch`` tokenizes rows one by one with the same rule as ``tokens.tokenizing.tokenize_rows`` (the
column form); ``tokenize_mixture`` is ``tokenize_rows`` with the ``(dataset, counts)`` shape older tests use.
"""

from __future__ import annotations

from bloomz_tune.tokens.tokenizing import IGNORE_INDEX, fit_sample, target_text, tokenize_rows


def tokenize_batch(batch: dict, tokenizer, max_length: int, overlong: str = "skip") -> dict:
    """Row-by-row tokenization of a batch (input_ids, labels, length, a status per row): the reference that the
    bulk ``tokenizing.tokenize_rows`` is tested against, and a ``datasets.map(batched=True)`` function."""
    input_ids = tokenizer(batch["inputs"], add_special_tokens=False)["input_ids"]
    target_ids = tokenizer([target_text(t) for t in batch["targets"]], add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    out = {"input_ids": [], "labels": [], "length": [], "status": []}
    for inp, tgt in zip(input_ids, target_ids):
        inp, tgt, status = fit_sample(inp, tgt + [eos], max_length, overlong)
        out["input_ids"].append(inp + tgt)
        out["labels"].append([IGNORE_INDEX] * len(inp) + tgt)
        out["length"].append(len(inp) + len(tgt))
        out["status"].append(status)
    return out


def tokenize_mixture(dataset, tokenizer, max_length: int, overlong: str = "skip", num_proc: int | None = None):
    """Tokenize a mixture split; return (kept dataset, counts by status). Whole columns at once
    (``tokenizing.tokenize_rows``; the same rows as ``tokenize_batch`` row by row); ``num_proc`` > 1 lets the
    fast tokenizer use its threads."""
    done = tokenize_rows(dataset, tokenizer, max_length, overlong, num_proc)
    return done.dataset, done.counts
