"""Rank-classification scoring equals a hand computation on the stock full-logits forward."""

import torch

from bloomz_tune.evaluation.scoring import loglikelihoods, rank_classify


@torch.no_grad()
def _hand_score(model, tokenizer, context, continuation):
    ctx = tokenizer(context, add_special_tokens=False)["input_ids"]
    cont = tokenizer(" " + continuation, add_special_tokens=False)["input_ids"]
    logits = model(torch.tensor([ctx + cont])).logits[0]
    logp = torch.log_softmax(logits.float(), -1)
    return sum(float(logp[len(ctx) + t - 1, tok]) for t, tok in enumerate(cont))


def test_loglikelihoods_match_hand_sum(tiny_model, tiny_tokenizer):
    requests = [("The movie was great. Sentiment:", "positive"), ("Le film était", "merveilleux et long"),
                ("这部电影", "很好"), ("Q: capital?", "Paris")]
    got = loglikelihoods(tiny_model, tiny_tokenizer, requests, batch_size=3, progress=False)
    want = [_hand_score(tiny_model, tiny_tokenizer, c, x) for c, x in requests]
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4


def test_rank_classify_picks_argmax(tiny_model, tiny_tokenizer):
    examples = [{"prompt": "The movie was great. Sentiment:", "choices": ["positive", "negative", "neutral"],
                 "label": 1}]
    result = rank_classify(tiny_model, tiny_tokenizer, examples, progress=False)
    scores = [_hand_score(tiny_model, tiny_tokenizer, examples[0]["prompt"], c) for c in examples[0]["choices"]]
    assert result["predictions"] == [max(range(3), key=scores.__getitem__)]
    assert result["accuracy"] == float(result["predictions"][0] == 1)
