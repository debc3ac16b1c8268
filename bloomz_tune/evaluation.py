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
from .modeling import causal_lm, enable_selected_logits
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
                   max_length: int = 2048, progress: bool = True, share_prompts: bool = True) -> list[float]:
    """Sum of log p(continuation tokens | context) for each (context, continuation) request.

    ``batch_size`` counts requests (rows). With ``share_prompts`` (the default), requests whose contexts are
    the same token ids are scored together: the context runs once, and its key/value cache is reused for every
    continuation (``_score_shared``). Without it every request is one full row (``_score_plain``). Both give
    the same numbers up to float rounding.
    """
    enable_selected_logits(model)
    encoded = encode_requests(tokenizer, requests, max_length)
    for (ctx, cont), (context, continuation) in zip(encoded, requests):
        if not ctx or not cont:
            raise ValueError(f"empty context or continuation after tokenization: {(context, continuation)!r}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bar = tqdm(total=len(encoded), desc="Scoring", disable=not (progress and is_main_process()))
    score = _score_shared if share_prompts else _score_plain
    scores = score(model, encoded, batch_size, pad, bar)
    bar.close()
    return scores


def _pick_logprobs(logits, targets, owner, n_rows, device):
    """Sum log-softmax(logits)[i, targets[i]] into rows ``owner[i]`` (float64)."""
    logprobs = F.log_softmax(logits.float(), dim=-1)
    picked = logprobs[torch.arange(len(targets), device=device), torch.tensor(targets, device=device)]
    sums = torch.zeros(n_rows, dtype=torch.float64, device=device)
    sums.index_add_(0, torch.tensor(owner, device=device), picked.double())
    return sums.tolist()


def _score_plain(model, encoded, batch_size, pad, bar) -> list[float]:
    """One row per request (context + continuation, right-padded), logits only at continuation positions."""
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: -(len(encoded[i][0]) + len(encoded[i][1])))
    scores = [0.0] * len(encoded)
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
        for i, s in zip(chunk, _pick_logprobs(logits, targets, owner, len(rows), device)):
            scores[i] = s
        bar.update(len(chunk))
    return scores


def _score_shared(model, encoded, batch_size, pad, bar) -> list[float]:
    """Run each distinct context once, then all of its continuations on top of its key/value cache.

    Step 1: the batch's distinct contexts, left-padded so they all end at the last column; the hidden state
    there predicts every continuation's first token. Step 2: the continuations minus their last token,
    right-padded, each on a copy of its context's cache row; the attention mask is [context mask, continuation
    mask], so BLOOM's ALiBi positions (built from the mask's running count) and the causal mask are those of
    the unshared row. Logits are computed only where a continuation token is predicted.
    """
    lm = causal_lm(model)
    backbone, head = getattr(lm, lm.base_model_prefix), lm.get_output_embeddings()
    device = next(model.parameters()).device
    groups: dict[tuple, list[int]] = {}
    for i, (ctx, _) in enumerate(encoded):
        groups.setdefault(tuple(ctx), []).append(i)
    contexts = sorted(groups, key=len, reverse=True)  # batch by length
    scores = [0.0] * len(encoded)
    start = 0
    while start < len(contexts):
        batch, n_requests = [], 0
        while start < len(contexts) and (not batch or n_requests + len(groups[contexts[start]]) <= batch_size):
            batch.append(contexts[start])
            n_requests += len(groups[contexts[start]])
            start += 1
        width = max(len(c) for c in batch)
        ctx_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        ctx_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for g, ctx in enumerate(batch):
            ctx_ids[g, width - len(ctx):] = torch.tensor(ctx)
            ctx_mask[g, width - len(ctx):] = 1
        ctx_mask = ctx_mask.to(device)
        out = backbone(input_ids=ctx_ids.to(device), attention_mask=ctx_mask, use_cache=True)
        members = [(g, i) for g, ctx in enumerate(batch) for i in groups[ctx]]
        # first continuation token: predicted by the last context position
        first = head(out[0][:, -1])
        logprobs = F.log_softmax(first.float(), dim=-1)
        for g, i in members:
            scores[i] = float(logprobs[g, encoded[i][1][0]].double())
        longer = [(g, i) for g, i in members if len(encoded[i][1]) > 1]
        if longer:
            cache = out.past_key_values
            cache.batch_select_indices(torch.tensor([g for g, _ in longer], device=device))
            cont_width = max(len(encoded[i][1]) - 1 for _, i in longer)
            cont_ids = torch.full((len(longer), cont_width), pad, dtype=torch.long)
            cont_mask = torch.zeros((len(longer), cont_width), dtype=torch.long)
            positions, targets, owner = [], [], []
            for r, (_, i) in enumerate(longer):
                cont = encoded[i][1]
                cont_ids[r, :len(cont) - 1] = torch.tensor(cont[:-1])
                cont_mask[r, :len(cont) - 1] = 1
                for t in range(1, len(cont)):
                    positions.append((r, t - 1))
                    targets.append(cont[t])
                    owner.append(r)
            rows = torch.tensor([g for g, _ in longer], device=device)
            mask = torch.cat([ctx_mask[rows], cont_mask.to(device)], dim=1)
            hidden = backbone(input_ids=cont_ids.to(device), attention_mask=mask, past_key_values=cache,
                              use_cache=True)[0]
            pos = torch.tensor(positions, device=device)
            logits = head(hidden[pos[:, 0], pos[:, 1]])
            for (_, i), s in zip(longer, _pick_logprobs(logits, targets, owner, len(longer), device)):
                scores[i] += s
        bar.update(n_requests)
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
