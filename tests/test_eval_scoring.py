"""Shared-prompt scoring equals one-row-per-request scoring and a hand computation; aggregation by hand."""

import math

import pytest
import torch

from bloomz_tune.evaluation.report import aggregate
from bloomz_tune.evaluation.scoring import encode_requests, loglikelihoods, rank_classify


@torch.no_grad()
def _hand_score(model, tokenizer, context, continuation):
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(" " + continuation, add_special_tokens=False)["input_ids"]
    logp = torch.log_softmax(model(torch.tensor([ctx + cont])).logits[0].float(), -1)
    return sum(float(logp[len(ctx) + t - 1, tok]) for t, tok in enumerate(cont)), len(cont)


REQUESTS = [(ctx, c) for ctx in ["The movie was great. Sentiment:", "Question: what is the capital of France?",
                                 "这部电影很好。", "Le film était excellent et les acteurs"]
            for c in ["positive", "Paris is the capital", "很好", "merveilleux"]] + [("The movie", "was great")]


def test_shared_prompt_scores_equal_plain_and_hand(tiny_model, tiny_tokenizer):
    tiny_model.eval()
    shared = loglikelihoods(tiny_model, tiny_tokenizer, REQUESTS, batch_size=5, progress=False)
    plain = loglikelihoods(tiny_model, tiny_tokenizer, REQUESTS, batch_size=5, progress=False, share_prompts=False)
    hand = [_hand_score(tiny_model, tiny_tokenizer, c, x)[0] for c, x in REQUESTS]
    assert max(abs(a - b) for a, b in zip(shared, plain)) < 1e-4
    assert max(abs(a - b) for a, b in zip(shared, hand)) < 1e-4


def test_shared_prompt_scores_with_truncated_contexts(tiny_model, tiny_tokenizer):
    # contexts cut from the left differ per continuation length: they must not be shared wrongly
    long_ctx = "The movie was great and the actors were wonderful. " * 6 + "Sentiment:"
    requests = [(long_ctx, "positive"), (long_ctx, "negative and quite long indeed"), (long_ctx, "ok")]
    shared = loglikelihoods(tiny_model, tiny_tokenizer, requests, batch_size=2, max_length=40, progress=False)
    plain = loglikelihoods(tiny_model, tiny_tokenizer, requests, batch_size=2, max_length=40, progress=False,
                           share_prompts=False)
    assert max(abs(a - b) for a, b in zip(shared, plain)) < 1e-4
    assert all(len(c) + len(x) <= 40 for c, x in encode_requests(tiny_tokenizer, requests, 40))


def test_rank_classify_sum_and_length_normalised(tiny_model, tiny_tokenizer):
    examples = [{"prompt": ctx, "choices": ["positive", "Paris is the capital", "很好"], "label": 2}
                for ctx, _ in REQUESTS[::4][:4]]
    for normalise in (False, True):
        result = rank_classify(tiny_model, tiny_tokenizer, examples, batch_size=4, length_normalize=normalise,
                               progress=False)
        want = []
        for ex in examples:
            scores = [_hand_score(tiny_model, tiny_tokenizer, ex["prompt"], c) for c in ex["choices"]]
            values = [s / n if normalise else s for s, n in scores]
            want.append(max(range(3), key=values.__getitem__))
        assert result["predictions"] == want
        assert result["correct"] == sum(p == 2 for p in want) and result["total"] == 4


def test_aggregate_median_max_and_mean_of_medians():
    def prompts(*accs):
        return {f"p{i}": {"accuracy": a, "correct": round(a * 10), "total": 10} for i, a in enumerate(accs)}

    tasks = aggregate({"xnli": {"en": prompts(0.2, 0.5, 0.4, 0.9, 0.1), "fr": prompts(0.3, 0.6, 0.6, 0.2)},
                       "copa": {"en": prompts(0.7)}})
    assert tasks["xnli"]["languages"]["en"]["median"] == pytest.approx(0.4)
    assert tasks["xnli"]["languages"]["en"]["max"] == pytest.approx(0.9)
    assert tasks["xnli"]["languages"]["fr"]["median"] == pytest.approx(0.45)  # even count: mean of the middle two
    assert tasks["xnli"]["mean_of_medians"] == pytest.approx((0.4 + 0.45) / 2)
    assert tasks["copa"]["mean_of_medians"] == pytest.approx(0.7)
    assert tasks["xnli"]["languages"]["en"]["examples"] == 10
    assert not math.isnan(tasks["copa"]["languages"]["en"]["max"])


def test_many_choices_on_one_cached_prompt(tiny_model, tiny_tokenizer):
    # batch_size 1 with 7 multi-token choices: the continuations run in several chunks on one context's cache
    choices = ["positive and good", "negative and bad", "Paris is the capital", "très bien", "这部电影很好",
               "wonderful actors", "a b c d e f g"]
    requests = [("The movie was great. Sentiment:", c) for c in choices] + [("Le film", c) for c in choices[:2]]
    shared = loglikelihoods(tiny_model, tiny_tokenizer, requests, batch_size=1, progress=False)
    hand = [_hand_score(tiny_model, tiny_tokenizer, c, x)[0] for c, x in requests]
    assert max(abs(a - b) for a, b in zip(shared, hand)) < 1e-4


class _Wrapper(torch.nn.Module):
    """Stands in for DDP / FSDP / DeepSpeed: the model sits in ``.module`` and is called through ``forward``."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, **kwargs):
        self.calls += 1
        return self.module(**kwargs)


def test_wrapped_models_are_scored_through_their_forward(tiny_model, tiny_tokenizer):
    from bloomz_tune.evaluation.scoring import _can_share

    wrapped = _Wrapper(tiny_model)
    assert _can_share(tiny_model) and not _can_share(wrapped)
    got = loglikelihoods(wrapped, tiny_tokenizer, REQUESTS[:6], batch_size=4, progress=False)
    want = loglikelihoods(tiny_model, tiny_tokenizer, REQUESTS[:6], batch_size=4, progress=False)
    assert wrapped.calls == 2 and max(abs(a - b) for a, b in zip(got, want)) < 1e-4
