"""Zero-shot rank classification, scored the way BLOOMZ was evaluated (t-zero evaluation/run_eval.py).

    bloomz-tune eval MODEL --tasks xnli,xcopa,xstorycloze,xwinograd --languages en,fr,zh --output DIR
    python -m bloomz_tune.evaluation.scoring MODEL --tasks all --limit 50 --output DIR --data-dir storycloze=FOLDER

MODEL is a Hub id, a local model folder or a LoRA adapter folder. The tasks, their datasets, splits, languages
and prompts are in tasks/; results.json / results.md / accuracy.png are written by report.py.

Every answer choice is scored by the SUM of its token log-probabilities given the prompt (the prompt tokenized
without special tokens, the choice with a leading space), and the highest-scoring choice is the prediction.
Logits are computed only at the positions that predict continuation tokens (see bloom.py). On BLOOM a prompt
shared by several choices runs once: packed with its choices as branches (packed.py), or, for a BLOOM split
over devices, with its choices on its key/value cache (``_score_shared``). Other models get one row per request
(``_score_plain``); ``scoring_method`` says which runs.

Tokenization and lm-evaluation-harness: we tokenize the context and " " + choice apart and concatenate the
ids, as BLOOMZ did. lm_eval's HF model encodes context + continuation as one string and splits it after the
context's tokens, moving trailing whitespace of the context into the continuation. For BLOOM's tokenizer
(its pre-tokenizer splits before a space) and a context that does not end in whitespace, which our rendered
prompts never do, both give the same ids; tests/test_eval_lm_eval.py checks this and that the log-likelihoods
equal HFLM.loglikelihood's (request (prompt, " " + choice) there) within 1e-4. A context ending in whitespace
would differ (ours keeps the space in the context and adds one before the choice). lm_eval's acc_norm divides
by the choice's length in bytes; our ``length_normalize`` divides by its number of tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation.packed import can_pack, pick_logprobs, score_packed, wrapped
from bloomz_tune.evaluation.parallel import gather_scores, my_share, scoring_plan
from bloomz_tune.evaluation.progress import ScoringProgress
from bloomz_tune.evaluation.report import aggregate, write_results
from bloomz_tune.model.bloom import causal_lm, enable_selected_logits
from bloomz_tune.runtime import is_main_process, print0
from bloomz_tune.seam import cache_keyword, output_cache
from bloomz_tune.tasks.table import TASKS, load_task_rows, prompts_for, resolve_tasks, task_data_dirs
from bloomz_tune.tokens.tokenizing import target_text


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
                   max_length: int = 2048, progress: bool = True, share_prompts: bool = True,
                   desc: str = "scoring", pack: bool = True) -> list[float]:
    """Sum of log p(continuation tokens | context) for each (context, continuation) request.

    With ``share_prompts`` (the default), on BLOOM, requests whose contexts are the same token ids are scored
    together, the context run once. On a BLOOM on one device, with ``pack`` (the default), each context and its
    continuations are one packed segment, many to a row, the continuations as branches that see the context
    and not each other (``packed.py``; ``batch_size`` counts rows of ``packed.PACK_WIDTH`` tokens per forward).
    Otherwise the context's key/value cache is reused for every continuation (``_score_shared``; ``batch_size``
    counts distinct contexts per forward). Without ``share_prompts``, and on other models, every request is one
    full row (``_score_plain``) and ``batch_size`` counts requests. All give the same numbers up to float
    rounding; ``scoring_method`` names the one that runs.

    Under a launcher the distinct contexts are split over the processes and the scores gathered, so every
    process returns them all (``parallel.py``).
    """
    model, rank, world = scoring_plan(model)
    enable_selected_logits(model)
    encoded = encode_requests(tokenizer, requests, max_length)
    for (ctx, cont), (context, continuation) in zip(encoded, requests):
        if not ctx or not cont:
            raise ValueError(f"empty context or continuation after tokenization: {(context, continuation)!r}")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if world == 1:
        mine = list(range(len(encoded)))
    else:  # whole groups of requests sharing a context, longest contexts first, dealt out in turn
        groups: dict[tuple, list[int]] = {}
        for i, (ctx, _) in enumerate(encoded):
            groups.setdefault(tuple(ctx), []).append(i)
        contexts = sorted(groups, key=len, reverse=True)
        mine = [i for ctx in my_share(contexts, rank, world) for i in groups[ctx]]
    bar = ScoringProgress(len(mine), desc, enabled=progress, shared=world > 1)
    mine_encoded = [encoded[i] for i in mine]
    method = scoring_method(model, share_prompts, pack)
    if method == "packed":
        scores = score_packed(model, mine_encoded, batch_size, pad, bar, input_device(model))
    else:
        score = _score_shared if method == "cache" else _score_plain
        scores = score(model, mine_encoded, batch_size, pad, bar)
    bar.close()
    gathered = gather_scores(dict(zip(mine, scores)), world)
    return [gathered[i] for i in range(len(encoded))]


def scoring_method(model, share_prompts: bool = True, pack: bool = True) -> str:
    """The scorer ``loglikelihoods`` runs on ``model`` (unwrapped of DDP, as ``scoring_plan`` gives it): "packed"
    (prompts with their choices as branches, ``packed.py``), "cache" (choices on the prompt's key/value cache) or
    "rows" (one row per request)."""
    if share_prompts and pack and can_pack(model):
        return "packed"
    return "cache" if share_prompts and _can_share(model) else "rows"


def input_device(model) -> torch.device:
    """Where the tensors we build for ``model`` go: its parameters' device, or the CPU for a model that
    accelerate split over devices (``device_map``): its hooks move each input to the layer that takes it, and
    index tensors on the CPU index tensors on any device."""
    if len(set(getattr(causal_lm(model), "hf_device_map", {}).values())) > 1:
        return torch.device("cpu")
    return next(model.parameters()).device


def _can_share(model) -> bool:
    """Shared-prompt scoring calls the backbone and head directly, on left-padded contexts: only for a plain (or
    peft) BLOOM.

    Under DDP, FSDP, DeepSpeed or torch.compile wrappers the call must go through the wrapper's forward, so
    scoring falls back to one row per request there. BLOOM builds its ALiBi positions from the attention mask,
    so left padding leaves them as they are alone; a model with position embeddings (GPT-2, Llama, ...) takes
    its positions from the column unless it is given position ids, so its left-padded prompts would be scored
    at shifted positions: it gets one right-padded row per request, as lm_eval scores it.
    """
    from transformers.models.bloom.modeling_bloom import BloomForCausalLM

    return not wrapped(model) and isinstance(causal_lm(model), BloomForCausalLM)


def _score_plain(model, encoded, batch_size, pad, bar) -> list[float]:
    """One row per request (context + continuation, right-padded), logits only at continuation positions."""
    device = input_device(model)
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
        for i, s in zip(chunk, pick_logprobs(logits, targets, owner, len(rows), device)):
            scores[i] = s
        bar.update(len(chunk))
    return scores


def _score_shared(model, encoded, batch_size, pad, bar) -> list[float]:
    """Run each distinct context once, then all of its continuations on top of its key/value cache.

    Step 1: up to ``batch_size`` distinct contexts, left-padded so they all end at the last column; the hidden
    state there predicts every continuation's first token (a one-token continuation is done). Step 2: the
    longer continuations minus their last token, right-padded, up to ``CHOICE_ROWS * batch_size`` rows a
    forward (they are short), each on a copy of its context's cache row. The attention mask is [context mask,
    continuation mask], so BLOOM's ALiBi positions (built from the mask's running count) and the causal mask
    are those of the unshared row. Logits are computed only where a continuation token is predicted.
    """
    lm = causal_lm(model)
    backbone, head = getattr(lm, lm.base_model_prefix), lm.get_output_embeddings()
    device = input_device(model)
    groups: dict[tuple, list[int]] = {}
    for i, (ctx, _) in enumerate(encoded):
        groups.setdefault(tuple(ctx), []).append(i)
    contexts = sorted(groups, key=len, reverse=True)  # batch by length
    scores = [0.0] * len(encoded)
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start:start + batch_size]
        width = len(batch[0])
        ctx_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        ctx_mask = torch.zeros((len(batch), width), dtype=torch.long)
        for g, ctx in enumerate(batch):
            ctx_ids[g, width - len(ctx):] = torch.tensor(ctx)
            ctx_mask[g, width - len(ctx):] = 1
        ctx_mask = ctx_mask.to(device)
        out = backbone(input_ids=ctx_ids.to(device), attention_mask=ctx_mask, use_cache=True)
        members = [(g, i) for g, ctx in enumerate(batch) for i in groups[ctx]]
        logprobs = F.log_softmax(head(out[0][:, -1]).float(), dim=-1)  # first continuation tokens
        firsts = logprobs[torch.tensor([g for g, _ in members], device=logprobs.device),
                          torch.tensor([encoded[i][1][0] for _, i in members], device=logprobs.device)]
        for (_, i), s in zip(members, firsts.double().tolist()):  # one device-to-host copy, not one per request
            scores[i] = s
        longer = sorted(((g, i) for g, i in members if len(encoded[i][1]) > 1), key=lambda m: -len(encoded[m[1]][1]))
        step = CHOICE_ROWS * batch_size
        for k in range(0, len(longer), step):
            chunk = longer[k:k + step]
            last = k + step >= len(longer)  # the last chunk may consume the cache
            for i, s in zip([i for _, i in chunk], _score_on_cache(backbone, head, output_cache(out), ctx_mask,
                                                                    chunk, encoded, pad, device, keep=not last)):
                scores[i] += s
        bar.update(len(members))
    return scores


CHOICE_ROWS = 4  # continuation rows per step-2 forward, in units of batch_size


def _score_on_cache(backbone, head, cache, ctx_mask, chunk, encoded, pad, device, keep: bool) -> list[float]:
    """Tokens 2.. of each continuation in ``chunk`` ((context row, request) pairs) on the contexts' cache rows.

    The cache is changed in place (rows selected, continuation appended) unless ``keep``: then a shallow copy
    is used (selecting rows and appending build new tensors, so the original's stay as they are).
    """
    import copy

    rows = torch.tensor([g for g, _ in chunk], device=device)
    if keep:
        cache = copy.copy(cache)
        cache.layers = [copy.copy(layer) for layer in cache.layers]
    cache.batch_select_indices(rows)
    width = max(len(encoded[i][1]) - 1 for _, i in chunk)
    cont_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    cont_mask = torch.zeros((len(chunk), width), dtype=torch.long)
    positions, targets, owner = [], [], []
    for r, (_, i) in enumerate(chunk):
        cont = encoded[i][1]
        cont_ids[r, :len(cont) - 1] = torch.tensor(cont[:-1])
        cont_mask[r, :len(cont) - 1] = 1
        for t in range(1, len(cont)):
            positions.append((r, t - 1))
            targets.append(cont[t])
            owner.append(r)
    mask = torch.cat([ctx_mask[rows], cont_mask.to(device)], dim=1)
    hidden = backbone(input_ids=cont_ids.to(device), attention_mask=mask, use_cache=True,
                      **{cache_keyword(backbone.forward): cache})[0]
    pos = torch.tensor(positions, device=device)
    return pick_logprobs(head(hidden[pos[:, 0], pos[:, 1]]), targets, owner, len(chunk), device)


def rank_classify(model, tokenizer, examples: list[dict], batch_size: int = 16, max_length: int = 2048,
                  length_normalize: bool = False, progress: bool = True, share_prompts: bool = True,
                  desc: str = "scoring") -> dict:
    """Score every choice of every example; examples are dicts with ``prompt``, ``choices``, ``label`` (index).

    Returns accuracy, count and the per-example predictions. ``length_normalize`` divides each choice's sum by
    its token count (an option; BLOOMZ used plain sums). ``share_prompts``: see ``loglikelihoods``.
    """
    requests, spans = [], []
    for ex in examples:
        if len(ex["choices"]) < 2:
            raise ValueError(f"rank classification needs at least 2 choices, got {ex['choices']!r}")
        spans.append((len(requests), len(ex["choices"])))
        requests.extend((ex["prompt"], c) for c in ex["choices"])
    scores = loglikelihoods(model, tokenizer, requests, batch_size, max_length, progress, share_prompts, desc)
    if length_normalize:
        lengths = [len(c) for _, c in encode_requests(tokenizer, requests, max_length)]
        scores = [s / n for s, n in zip(scores, lengths)]
    predictions = []
    for start, n in spans:
        chunk = scores[start:start + n]
        predictions.append(max(range(n), key=chunk.__getitem__))
    return {**_accuracy(predictions, examples), "predictions": predictions}


def sanity_set(rows, limit: int) -> list[dict]:
    """Held-out mixture rows with answer choices, as rank-classification examples (at most ``limit``)."""
    examples = []
    for row in rows:
        choices = row.get("choices") or []
        if len(choices) >= 2 and row["targets"] in choices:
            examples.append({"prompt": row["inputs"], "choices": list(choices),
                             "label": list(choices).index(row["targets"])})
            if len(examples) >= limit:
                break
    return examples


def sanity_accuracy(model, tokenizer, examples: list[dict], batch_size: int = 16, max_length: int = 2048) -> float:
    """Rank-classification accuracy on ``examples`` in eval mode (dropout off); the model's mode is restored."""
    was_training = model.training
    model.eval()
    result = rank_classify(model, tokenizer, examples, batch_size=batch_size, max_length=max_length, progress=False)
    model.train(was_training)
    return result["accuracy"]


def _accuracy(predictions, examples) -> dict:
    correct = sum(int(p == ex["label"]) for p, ex in zip(predictions, examples))
    return {"accuracy": correct / len(examples) if examples else float("nan"), "correct": correct,
            "total": len(examples)}


# ---- held-out tasks ----------------------------------------------------------------------------------------------

# A fixed handful of prompts answered greedily after the scores: a broken model shows at a glance.
SANITY_PROMPTS = [
    "Translate to English: Le chat dort sur le canapé.",
    "Translate to French: I would like a cup of coffee.",
    "Question: What is the capital of Japan?\nAnswer:",
    "¿Cuál es el río más largo de Europa?",
    "Review: The battery died after two days and support never answered. Is this review positive or negative?",
    "这家餐厅的菜很好吃，服务也很周到。这条评论是正面的还是负面的？",
]


def prepare_tasks(tasks=None, languages=None, limit: int | None = None, prompts: int = 5,
                  data_dirs: dict | None = None, data_revisions: dict | None = None) -> dict:
    """Check the request and load every dataset before any model runs: {(task, language): loaded rows}.

    Raises BloomzTuneError for an unknown task or language, a bad --data-dir, a missing split or column, too
    many prompts, or a task left empty after ``limit``.
    """

    if limit is not None and limit < 1:
        raise BloomzTuneError(f"limit must be a positive number of examples, got {limit}")
    plan = resolve_tasks(tasks, languages)
    data_dirs = task_data_dirs(data_dirs)
    unknown = sorted(set(data_revisions or {}) - set(TASKS))
    if unknown:
        raise BloomzTuneError(f"data revision given for unknown task(s) {', '.join(unknown)}; valid tasks: "
                              f"{', '.join(TASKS)}")
    loaded = {}
    for task, langs in plan.items():
        for language in langs:
            prompts_for(task, language, prompts)
            loaded[(task, language)] = load_task_rows(task, language, data_dirs.get(task), limit,
                                                      (data_revisions or {}).get(task))
    return loaded


@torch.no_grad()
def generate_samples(model, tokenizer, prompts: list[str] = SANITY_PROMPTS, max_new_tokens: int = 24) -> list[dict]:
    """Greedy answers (prompt tokenized without special tokens, generation stops at EOS)."""
    device = input_device(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generator = model if hasattr(model, "generate") else causal_lm(model)  # DDP and the like have no generate
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(device)
        generated = generator.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                       max_new_tokens=max_new_tokens, pad_token_id=pad,
                                       eos_token_id=tokenizer.eos_token_id)
        out.append({"prompt": prompt,
                    "output": tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True).strip()})
    return out


def evaluate_model(model, tokenizer, tasks=None, languages=None, limit: int | None = None, prompts: int = 5,
                   batch_size: int = 16, output_dir=None, data_dirs: dict | None = None,
                   length_normalize: bool = False, max_length: int = 2048, generation: bool = True,
                   model_name: str | None = None, progress: bool = True, prepared: dict | None = None) -> dict:
    """Zero-shot rank classification of ``model`` on held-out tasks, as BLOOMZ was evaluated.

    ``tasks``: names or a comma list (None or empty: xnli, xcopa, xstorycloze, xwinograd; "anli": its three
    rounds; "all": every task); ``languages``: None or empty for each task's paper languages; ``limit``: examples per (task, language);
    ``prompts``: the first K of our prompts per dataset; ``data_dirs``: {task: local folder}. Writes
    results.json, results.md and accuracy.png into ``output_dir`` (when given, on the main process) and
    returns the results dict. Every dataset is loaded and checked before the model runs (``prepared``: what
    ``prepare_tasks`` returned for the same arguments, to skip loading them again).
    """

    loaded = prepared if prepared is not None else prepare_tasks(tasks, languages, limit, prompts, data_dirs)
    was_training = model.training
    model.eval()
    per_prompt: dict = {}
    try:
        for (task, language), data in loaded.items():
            chosen = prompts_for(task, language, prompts)
            examples = [p.render(row) for p in chosen for row in data["rows"]]
            print0(f"{task} {language}: {len(data['rows'])} examples x {len(chosen)} prompts")
            result = rank_classify(model, tokenizer, examples, batch_size=batch_size, max_length=max_length,
                                   length_normalize=length_normalize, progress=progress, desc=f"{task}/{language}")
            n = len(data["rows"])
            per_prompt.setdefault(task, {})[language] = {
                p.name: _accuracy(result["predictions"][k * n:(k + 1) * n], examples[k * n:(k + 1) * n])
                for k, p in enumerate(chosen)}
        samples = generate_samples(model, tokenizer) if generation else []
    finally:
        model.train(was_training)
    results = {
        "model": model_name or getattr(getattr(causal_lm(model), "config", None), "_name_or_path", None),
        "processes": scoring_plan(model)[2],  # how many processes shared the scoring (parallel.py)
        "settings": {"tasks": {t: list(langs) for t, langs in per_prompt.items()}, "limit": limit,
                     "prompts": prompts, "batch_size": batch_size, "length_normalize": length_normalize,
                     "max_length": max_length, "scoring": scoring_method(scoring_plan(model)[0])},
        "datasets": {f"{t}/{lang}": {k: d[k] for k in ("source", "config", "split", "skipped", "files")}
                     for (t, lang), d in loaded.items()},
        "tasks": aggregate(per_prompt),
        "generation": samples,
    }
    if output_dir is not None and is_main_process():
        write_results(results, output_dir)
        print0(f"wrote results to {output_dir}")
    return results


# ---- command line ------------------------------------------------------------------------------------------------
