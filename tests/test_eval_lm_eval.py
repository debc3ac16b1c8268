"""Cross-check against lm-evaluation-harness (test extra ``lm_eval``): same tiny saved model, same requests.

lm_eval's HFLM tokenizes a request by encoding context + continuation as one string and splitting it after
the context's tokens, with any trailing whitespace of the context moved into the continuation. We tokenize
the context and the continuation (with its leading space) apart, as BLOOMZ did. Our rendered prompts never
end in whitespace and BLOOM's pre-tokenizer splits before a space, so both give the same token ids; the first
test checks that on every prompt of the fixtures before the scores are compared.
"""

from pathlib import Path

# lm_eval is part of the `test` extra: a missing install is a failure, not a skip.
import pytest

from bloomz_tune.evaluation.scoring import encode_requests, loglikelihoods, rank_classify
from bloomz_tune.tasks.table import TASKS, load_task_rows, prompts_for

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
CASES = [("xnli", "en", "xnli"), ("xnli", "zh", "xnli"), ("xcopa", "zh", "xcopa"), ("copa", "en", "super_glue"),
         ("xstorycloze", "zh", "xstory_cloze"), ("xwinograd", "fr", "xwinograd"), ("rte", "en", "super_glue")]


def _examples(limit=1):
    examples = []
    for task, language, folder in CASES:
        rows = load_task_rows(task, language, str(FIXTURES / folder), limit=limit)["rows"]
        examples += [p.render(r) for p in prompts_for(task, language) for r in rows]
    return examples


@pytest.fixture(scope="module")
def hflm(tiny_model_dir):
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(tiny_model_dir), device="cpu", dtype="float32", batch_size=8)


def test_tokenization_matches_lm_eval_split(hflm):
    requests = [(ex["prompt"], c) for ex in _examples() for c in ex["choices"]]
    ours = encode_requests(hflm.tokenizer, requests)
    theirs = [hflm._encode_pair(ctx, " " + cont) for ctx, cont in requests]
    assert [tuple(map(list, pair)) for pair in ours] == [tuple(map(list, pair)) for pair in theirs]


def test_loglikelihoods_and_choices_equal_lm_eval(hflm, tiny_tokenizer):
    from lm_eval.api.instance import Instance

    examples = _examples()
    requests = [(ex["prompt"], c) for ex in examples for c in ex["choices"]]
    instances = [Instance(request_type="loglikelihood", doc={}, arguments=(ctx, " " + cont), idx=i)
                 for i, (ctx, cont) in enumerate(requests)]
    theirs = [logprob for logprob, _ in hflm.loglikelihood(instances, disable_tqdm=True)]
    ours = loglikelihoods(hflm.model, tiny_tokenizer, requests, batch_size=8, progress=False)
    assert len(ours) == len(theirs) > 80
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-4
    predictions = rank_classify(hflm.model, tiny_tokenizer, examples, batch_size=8, progress=False)["predictions"]
    start, picked = 0, []
    for ex in examples:
        scores = theirs[start:start + len(ex["choices"])]
        picked.append(max(range(len(scores)), key=scores.__getitem__))
        start += len(ex["choices"])
    assert predictions == picked


def test_every_task_is_covered_by_the_cross_check_families():
    assert {TASKS[t].kind for t, _, _ in CASES} == {spec.kind for spec in TASKS.values()}
