"""Zero-shot scoring throughput: bloomz_tune's rank scorer vs lm-evaluation-harness's HFLM, side by side.

    python benchmarks/eval_throughput.py                     # BLOOM's 250,880-token head on a small body
    python benchmarks/eval_throughput.py --vocab-size 0      # the tokenizer's own tiny vocabulary
    python benchmarks/eval_throughput.py --layers 24 --hidden 1024 --heads 16 --device cuda   # bloom-560m shape

Both score the same (context, continuation) requests (every prompt of every task on the bundled fixture rows)
with the same saved random BLOOM, one after the other in one process. Printed: requests/s for lm_eval's
``HFLM.loglikelihood`` (its defaults: full logits, its own reuse of one-token continuations), for ours
without prompt sharing (logits only at continuation positions), for ours with shared prompts (each distinct prompt
run once, its choices scored on its key/value cache) and for ours as shipped on BLOOM (each prompt with its
choices as branches of one packed segment, many prompts to a row, evaluation/packed.py); the ratios to
lm_eval; the largest log-likelihood difference; whether the chosen answers are identical. Needs the ``lm_eval``
extra.

Generation (``--generation N``, on by default, as ``evaluate_model`` runs it after the scores): N distinct prompts
answered greedily by ``generate_samples`` (one prompt at a time, ``--max-new-tokens``), on transformers' BLOOM
as loaded, on the same model with our keywords (as ``bloomz-tune eval`` scores it) and with our sdpa attention
(as a run evaluates its trained model). Printed: wall and CPU seconds, requests/s, the LM head's calls, its output
shape and size in the first step (the prompt's forward) and whether the answers equal the unpatched model's.

    python benchmarks/eval_throughput.py --no-scoring --generation 16     # generation only
    python benchmarks/eval_throughput.py --no-scoring --generation 4 --prompt-repeat 16   # ~550-token prompts
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures" / "eval"
FOLDERS = {"xnli": "xnli", "xcopa": "xcopa", "xstorycloze": "xstory_cloze", "xwinograd": "xwinograd",
           "anli_r1": "anli", "anli_r2": "anli", "anli_r3": "anli", "cb": "super_glue", "rte": "super_glue",
           "copa": "super_glue", "winogrande": "winogrande", "storycloze": "story_cloze_hub"}
FIXTURE_LANGUAGES = {"xnli": ("en", "fr", "zh"), "xcopa": ("zh", "id"), "xstorycloze": ("en", "zh"),
                     "xwinograd": ("en", "fr", "zh")}


def build_examples() -> list[dict]:
    from bloomz_tune.tasks.table import load_task_rows, prompts_for

    examples = []
    for task, folder in FOLDERS.items():
        for language in FIXTURE_LANGUAGES.get(task, ("en",)):
            rows = load_task_rows(task, language, str(FIXTURES / folder))["rows"]
            examples += [p.render(r) for p in prompts_for(task, language) for r in rows]
    return examples


def save_model(directory: Path, examples, args) -> None:
    from bloomz_tune.model.tiny import build_tiny_bloom, build_tiny_tokenizer

    texts = [ex["prompt"] + " " + " ".join(ex["choices"]) for ex in examples] * 5
    tokenizer = build_tiny_tokenizer(texts, vocab_size=1024)
    overrides = dict(hidden_size=args.hidden, n_layer=args.layers, n_head=args.heads)
    if args.vocab_size:
        overrides["vocab_size"] = args.vocab_size
    build_tiny_bloom(tokenizer, seed=0, **overrides).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)


def choices_from(scores, examples):
    picked, start = [], 0
    for ex in examples:
        chunk = scores[start:start + len(ex["choices"])]
        picked.append(max(range(len(chunk)), key=chunk.__getitem__))
        start += len(ex["choices"])
    return picked


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab-size", type=int, default=250880, help="model vocabulary (0: the tokenizer's)")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8,
                        help="requests per forward for lm_eval and ours without sharing; distinct prompts (shared) "
                             "or rows of packed.PACK_WIDTH tokens (packed) per forward for ours")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each; the best is reported")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--scoring", action=argparse.BooleanOptionalAction, default=True,
                        help="time rank scoring (ours and lm_eval's)")
    parser.add_argument("--generation", type=int, default=8, help="prompts answered by generation (0: none)")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="as evaluation's generate_samples")
    parser.add_argument("--prompt-repeat", type=int, default=1,
                        help="each generation prompt repeated this many times (longer prompts)")
    args = parser.parse_args()

    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from bloomz_tune.evaluation.scoring import loglikelihoods

    if args.threads:
        torch.set_num_threads(args.threads)
    examples = build_examples()
    requests = [(ex["prompt"], c) for ex in examples for c in ex["choices"]]
    with tempfile.TemporaryDirectory() as tmp:
        save_model(Path(tmp), examples, args)
        lm = HFLM(pretrained=tmp, device=args.device, dtype="float32", batch_size=args.batch_size)
    model, tokenizer = lm.model.eval(), lm.tokenizer
    n_ctx = sum(len(c) for c, _ in lm_tok(lm, requests))
    print(f"model: {args.layers} layers, hidden {args.hidden}, vocab {model.config.vocab_size}, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M params, {args.device}, "
          f"{torch.get_num_threads()} threads")
    print(f"requests: {len(requests)} from {len(examples)} examples ({len({c for c, _ in requests})} distinct "
          f"prompts), {n_ctx / len(requests):.0f} context tokens per request on average; batch {args.batch_size}")

    def run_lm_eval():
        instances = [Instance(request_type="loglikelihood", doc={}, arguments=(c, " " + x), idx=i)
                     for i, (c, x) in enumerate(requests)]
        return [lp for lp, _ in lm.loglikelihood(instances, disable_tqdm=True)]

    def run_ours(share, pack=False):
        return lambda: loglikelihoods(model, tokenizer, requests, batch_size=args.batch_size, progress=False,
                                      share_prompts=share, pack=pack)

    stock = copy.deepcopy(model)  # transformers' BLOOM as loaded, before our scorer adds its keywords
    loglikelihoods(model, tokenizer, requests[:8], progress=False)  # warm-up, both
    lm.loglikelihood([Instance(request_type="loglikelihood", doc={}, arguments=(c, " " + x), idx=i)
                      for i, (c, x) in enumerate(requests[:8])], disable_tqdm=True)
    if args.scoring:
        compare_scoring(examples, requests, args, model, run_lm_eval, run_ours)
    if args.generation:
        distinct = list(dict.fromkeys(ex["prompt"] for ex in examples))  # spread over the tasks
        prompts = distinct[::max(1, len(distinct) // args.generation)][:args.generation]
        prompts = [" ".join([p] * args.prompt_repeat) for p in prompts]
        compare_generation(stock, model, tokenizer, prompts, args)


def counted(model, fn):
    """``fn`` wrapped to also return how many times the BLOOM body ran and the tokens it was handed (padding
    included): every scorer calls it, whether through the causal LM's forward or directly. On a GPU a small model's
    forward is bound by per-call overheads, so the forwards matter as much as the tokens."""
    body = model.transformer

    def run():
        calls = []
        hook = body.register_forward_pre_hook(
            lambda module, args, kwargs: calls.append(kwargs.get("input_ids", args[0] if args else None)),
            with_kwargs=True)
        try:
            out = fn()
        finally:
            hook.remove()
        return out, len(calls), sum(int(ids.numel()) for ids in calls if ids is not None)

    return run


def compare_scoring(examples, requests, args, model, run_lm_eval, run_ours):
    runs = [("lm_eval HFLM.loglikelihood", run_lm_eval), ("bloomz_tune, no prompt sharing", run_ours(False)),
            ("bloomz_tune (shared prompts)", run_ours(True)), ("bloomz_tune (packed, default)", run_ours(True, True))]
    timings = [(name, *timed(counted(model, fn), args.repeats)) for name, fn in runs]
    t_ref, (ref, _, _) = timings[0][1], timings[0][2]
    ref_choices = choices_from(ref, examples)
    print(f"{'scorer':<36}{'seconds':>9}{'requests/s':>12}{'vs lm_eval':>12}{'forwards':>10}{'token slots':>13}"
          f"{'max |dlogp|':>13}{'same choices':>14}")
    rows = {}
    for name, seconds, (scores, forwards, slots) in timings:
        diff = max(abs(a - b) for a, b in zip(scores, ref))
        same = choices_from(scores, examples) == ref_choices
        print(f"{name:<36}{seconds:>9.2f}{len(requests) / seconds:>12.1f}{t_ref / seconds:>11.2f}x{forwards:>10}"
              f"{slots:>13,}{diff:>13.1e}{str(same):>14}")
        rows[name] = {"seconds": seconds, "requests_per_s": len(requests) / seconds, "vs_lm_eval": t_ref / seconds,
                      "forwards": forwards, "token_slots": slots, "max_abs_dlogp": diff, "same_choices": same}
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "requests": len(requests), "examples": len(examples),
            "distinct_prompts": len({c for c, _ in requests}), "vocab_size": model.config.vocab_size,
            "parameters": sum(p.numel() for p in model.parameters()), "scorers": rows}, indent=2))


def generation_run(model, tokenizer, prompts, max_new_tokens):
    """(wall seconds, CPU seconds of this process, answers, the head's output shape at each forward) of
    evaluation's generation."""
    from bloomz_tune.evaluation.scoring import generate_samples
    from bloomz_tune.model.bloom import causal_lm

    shapes = []
    hook = causal_lm(model).get_output_embeddings().register_forward_hook(
        lambda module, inputs, output: shapes.append((tuple(output.shape), output.nbytes)))
    try:
        start, cpu = time.perf_counter(), time.process_time()
        samples = generate_samples(model, tokenizer, prompts, max_new_tokens=max_new_tokens)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    finally:
        hook.remove()
    return seconds, cpu, [s["output"] for s in samples], shapes


def compare_generation(stock, model, tokenizer, prompts, args) -> None:
    """The three models in turn, ``--repeats`` rounds (the best round of each is printed)."""
    from bloomz_tune.model.bloom import patch_bloom

    patched = patch_bloom(copy.deepcopy(model), "sdpa")
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    print(f"generation: {len(prompts)} prompts ({sum(lengths) / len(lengths):.0f} tokens on average), greedy, "
          f"at most {args.max_new_tokens} new tokens each, one prompt at a time; best of {args.repeats}")
    generation_run(stock, tokenizer, prompts[:1], 2)  # warm-up
    runs = {"transformers BLOOM as loaded": stock, "with our keywords (eval)": model,
            "with our sdpa attention (training)": patched}
    best = {}
    for _ in range(args.repeats):
        for name, m in runs.items():
            result = generation_run(m, tokenizer, prompts, args.max_new_tokens)
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    reference = best["transformers BLOOM as loaded"][2]
    print(f"{'generation':<36}{'seconds':>9}{'CPU s':>8}{'requests/s':>12}{'head calls':>12}  "
          f"{'first head output':<20}{'its MiB':>8}{'same answers':>13}")
    for name, (seconds, cpu, answers, shapes) in best.items():
        print(f"{name:<36}{seconds:>9.2f}{cpu:>8.2f}{len(prompts) / seconds:>12.2f}{len(shapes):>12}  "
              f"{str(shapes[0][0]):<20}{shapes[0][1] / 2**20:>8.1f}{str(answers == reference):>13}")


def lm_tok(lm, requests):
    return [lm._encode_pair(c, " " + x) for c, x in requests]


if __name__ == "__main__":
    main()
