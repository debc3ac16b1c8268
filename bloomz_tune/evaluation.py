"""Zero-shot rank classification, scored the way BLOOMZ was evaluated (t-zero evaluation/run_eval.py).

Every answer choice is scored by the SUM of its token log-probabilities given the prompt (the prompt tokenized
without special tokens, the choice with a leading space), and the highest-scoring choice is the prediction.
Logits are computed only at the positions that predict continuation tokens (see modeling.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import target_text
from .modeling import enable_selected_logits
from .runtime import is_main_process


def encode_requests(tokenizer, requests: list[tuple[str, str]], max_length: int = 2048):
    """(context, continuation) pairs -> (context ids, continuation ids); contexts cut from the left to fit."""
    contexts = tokenizer([c for c, _ in requests], add_special_tokens=False)["input_ids"]
    continuations = tokenizer([target_text(x) for _, x in requests], add_special_tokens=False)["input_ids"]
    encoded = []
    for ctx, cont in zip(contexts, continuations):
        room = max_length - len(cont)
        encoded.append((ctx[max(0, len(ctx) - room):], cont))
    return encoded


@torch.no_grad()
def loglikelihoods(model, tokenizer, requests: list[tuple[str, str]], batch_size: int = 16,
                   max_length: int = 2048, progress: bool = True) -> list[float]:
    """Sum of log p(continuation tokens | context) for each (context, continuation) request."""
    enable_selected_logits(model)
    device = next(model.parameters()).device
    encoded = encode_requests(tokenizer, requests, max_length)
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    scores = [0.0] * len(encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bar = tqdm(total=len(order), desc="Scoring", disable=not (progress and is_main_process()))
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        rows = [encoded[i][0] + encoded[i][1] for i in chunk]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        positions, targets, owner = [], [], []
        for b, (i, row) in enumerate(zip(chunk, rows)):
            input_ids[b, :len(row)] = torch.tensor(row)
            attention_mask[b, :len(row)] = 1
            n_ctx, n_cont = len(encoded[i][0]), len(encoded[i][1])
            for t in range(n_cont):
                positions.append((b, n_ctx + t - 1))
                targets.append(encoded[i][1][t])
                owner.append(b)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                       logit_positions=torch.tensor(positions, device=device)).logits
        logprobs = F.log_softmax(logits.float(), dim=-1)
        picked = logprobs[torch.arange(len(targets), device=device), torch.tensor(targets, device=device)]
        sums = torch.zeros(len(rows), dtype=torch.float64, device=device)
        sums.index_add_(0, torch.tensor(owner, device=device), picked.double())
        for b, i in enumerate(chunk):
            scores[i] = float(sums[b])
        bar.update(len(chunk))
    bar.close()
    return scores


def rank_classify(model, tokenizer, examples: list[dict], batch_size: int = 16, max_length: int = 2048,
                  length_normalize: bool = False, progress: bool = True) -> dict:
    """Score every choice of every example; examples are dicts with ``prompt``, ``choices``, ``label`` (index).

    Returns accuracy, count and the per-example predictions. ``length_normalize`` divides each choice's sum by
    its token count (an option; BLOOMZ used plain sums).
    """
    requests, spans = [], []
    for ex in examples:
        if len(ex["choices"]) < 2:
            raise ValueError(f"rank classification needs at least 2 choices, got {ex['choices']!r}")
        spans.append((len(requests), len(ex["choices"])))
        requests.extend((ex["prompt"], c) for c in ex["choices"])
    scores = loglikelihoods(model, tokenizer, requests, batch_size, max_length, progress)
    if length_normalize:
        lengths = [len(c) for _, c in encode_requests(tokenizer, requests, max_length)]
        scores = [s / n for s, n in zip(scores, lengths)]
    predictions = []
    for start, n in spans:
        chunk = scores[start:start + n]
        predictions.append(max(range(n), key=chunk.__getitem__))
    correct = sum(int(p == ex["label"]) for p, ex in zip(predictions, examples))
    return {"accuracy": correct / len(examples) if examples else float("nan"), "correct": correct,
            "total": len(examples), "predictions": predictions}
