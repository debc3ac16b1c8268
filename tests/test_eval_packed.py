"""Packed rank scoring: each prompt with its choices as branches of one segment, many prompts to a row.

Every way of scoring (packed, on the prompt's key/value cache, one row per request) equals the hand sum of the
request alone; a branched row gives each choice exactly the logits it gets alone; the model keeps its attention.
"""

import copy

import pytest
import torch
from test_eval_scoring import REQUESTS, _hand_score, _Wrapper

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation import packed
from bloomz_tune.evaluation.scoring import encode_requests, loglikelihoods
from bloomz_tune.model.alibi import branch_positions, visible
from bloomz_tune.model.bloom import attention_of, patch_bloom

# one-token and long continuations, a repeated request, a prompt that is a prefix of another
MIXED = REQUESTS + [("The movie was great. Sentiment:", "positive"), ("The movie was great.", "Sentiment: ok"),
                    ("Q", "a b c d e f g h i j k l m n o p")]


def test_branch_positions_and_visibility_by_hand():
    # segment 1: trunk a b c, branch 1 (x y), branch 2 (z); segment 2: trunk d e, branch 1 (w); one padding slot
    segments = torch.tensor([[1, 1, 1, 1, 1, 1, 2, 2, 2, 0]])
    branches = torch.tensor([[0, 0, 0, 1, 1, 2, 0, 0, 1, 0]])
    positions = branch_positions(segments, branches)[0].tolist()
    assert positions[:6] == [0, 1, 2, 3, 4, 3]  # z follows c as x does
    assert positions[7] - positions[6] == 1 and positions[8] - positions[7] == 1
    seen = visible(segments, branches=branches)[0]
    assert seen[4].nonzero().flatten().tolist() == [0, 1, 2, 3, 4]
    assert seen[5].nonzero().flatten().tolist() == [0, 1, 2, 5]  # not the other choice's x y
    assert seen[8].nonzero().flatten().tolist() == [6, 7, 8]  # not segment 1
    assert seen[9].nonzero().flatten().tolist() == [9]  # padding sees itself only


@torch.no_grad()
def test_a_branched_row_gives_each_choice_its_logits_alone(tiny_model, tiny_tokenizer):
    stock = copy.deepcopy(tiny_model).eval()
    model = patch_bloom(tiny_model, "sdpa").eval()
    encoded = encode_requests(tiny_tokenizer, MIXED)
    groups = packed.group_requests(encoded)
    lengths = [packed.group_length(encoded, ctx, members) for ctx, members in groups]
    rows = [list(range(len(groups)))]  # everything in one row
    batch = packed._layout(encoded, groups, rows, sum(lengths) + 3, tiny_tokenizer.pad_token_id)
    assert int(batch["segment_ids"].max()) == len(groups) and int(batch["branch_ids"].max()) >= 4
    logits = model(input_ids=batch["input_ids"], segment_ids=batch["segment_ids"], branch_ids=batch["branch_ids"],
                   logit_positions=batch["positions"]).logits
    want, targets, owners = [], [], []
    for ctx, members in groups:  # the row holds the groups in order, each group's requests in order
        for i in members:
            cont = encoded[i][1]
            alone = stock(torch.tensor([ctx + cont])).logits[0]
            want.append(alone[len(ctx) - 1:len(ctx) + len(cont) - 1])
            targets += cont
            owners += [i] * len(cont)
    assert batch["targets"] == targets and batch["owners"] == owners
    torch.testing.assert_close(logits, torch.cat(want), atol=1e-4, rtol=0)


@pytest.mark.parametrize("width,batch_size", [(256, 16), (24, 1), (24, 3), (8, 2)])
def test_packed_scores_equal_cached_plain_and_hand(tiny_model, tiny_tokenizer, monkeypatch, width, batch_size):
    # width 24 and 8: most prompts are longer than a row, so they get rows of their own, batched by tokens;
    # at width 8 and 2 rows a forward every such row is a forward of its own
    tiny_model.eval()
    monkeypatch.setattr(packed, "PACK_WIDTH", width)
    calls = []
    hook = tiny_model.register_forward_hook(lambda module, args, kwargs_out: calls.append(1))
    got = loglikelihoods(tiny_model, tiny_tokenizer, MIXED, batch_size=batch_size, progress=False)
    hook.remove()
    cached = loglikelihoods(tiny_model, tiny_tokenizer, MIXED, batch_size=batch_size, progress=False, pack=False)
    plain = loglikelihoods(tiny_model, tiny_tokenizer, MIXED, batch_size=batch_size, progress=False,
                           share_prompts=False)
    hand = [_hand_score(tiny_model, tiny_tokenizer, c, x)[0] for c, x in MIXED]
    for other in (cached, plain, hand):
        assert max(abs(a - b) for a, b in zip(got, other)) < 1e-4
    encoded = encode_requests(tiny_tokenizer, MIXED)
    groups = packed.group_requests(encoded)
    lengths = [packed.group_length(encoded, ctx, members) for ctx, members in groups]
    assert len(calls) == len(packed.plan_forwards(lengths, batch_size, width))
    assert len(calls) < len(groups) or width * batch_size < max(lengths)  # fewer forwards than prompts


def test_truncated_contexts_are_grouped_by_what_is_left(tiny_model, tiny_tokenizer):
    long_ctx = "The movie was great and the actors were wonderful. " * 6 + "Sentiment:"
    requests = [(long_ctx, "positive"), (long_ctx, "negative and quite long indeed"), (long_ctx, "ok")]
    got = loglikelihoods(tiny_model, tiny_tokenizer, requests, batch_size=2, max_length=40, progress=False)
    plain = loglikelihoods(tiny_model, tiny_tokenizer, requests, batch_size=2, max_length=40, progress=False,
                           share_prompts=False)
    assert max(abs(a - b) for a, b in zip(got, plain)) < 1e-4


def test_plan_fills_rows_and_keeps_every_group_once():
    lengths = [100, 30, 250, 7, 300, 64, 64, 5, 900, 120]
    forwards = packed.plan_forwards(lengths, batch_size=2, width=256)
    placed = sorted(g for rows in forwards for row in rows for g in row)
    assert placed == list(range(len(lengths)))
    for rows in forwards:
        assert len(rows) <= 2 or all(len(row) == 1 for row in rows)
        for row in rows:
            assert sum(lengths[g] for g in row) <= 256 or len(row) == 1
    assert [[900]] in [[[lengths[g] for g in row] for row in rows] for rows in forwards]  # alone, in a forward of its own


@pytest.mark.parametrize("attention", ["stock", "sdpa", "flex"])
def test_the_model_keeps_its_attention(tiny_model, tiny_tokenizer, attention):
    if attention != "stock":
        tiny_model.config.attention_dropout = 0.0
        patch_bloom(tiny_model, attention)
    tiny_model.eval()
    got = loglikelihoods(tiny_model, tiny_tokenizer, REQUESTS[:5], progress=False)
    assert attention_of(tiny_model) == attention
    want = [_hand_score(tiny_model, tiny_tokenizer, c, x)[0] for c, x in REQUESTS[:5]] if attention == "stock" else None
    if want is not None:
        assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4


def test_attention_is_restored_when_scoring_fails(tiny_model, tiny_tokenizer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(packed, "_layout", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        loglikelihoods(tiny_model, tiny_tokenizer, REQUESTS[:3], progress=False)
    assert attention_of(tiny_model) == "stock"


def test_wrapped_models_pack_only_with_segment_attention(tiny_model, tiny_tokenizer):
    want = loglikelihoods(tiny_model, tiny_tokenizer, REQUESTS[:6], batch_size=4, progress=False)
    stock_wrapped = _Wrapper(tiny_model)
    assert not packed.can_pack(stock_wrapped)  # its modules are not ours to switch
    patched = _Wrapper(patch_bloom(copy.deepcopy(tiny_model), "sdpa"))
    assert packed.can_pack(patched)
    got = loglikelihoods(patched, tiny_tokenizer, REQUESTS[:6], batch_size=4, progress=False)
    assert patched.calls == 1 and max(abs(a - b) for a, b in zip(got, want)) < 1e-4


def test_a_model_with_position_embeddings_is_scored_at_its_positions(tiny_tokenizer):
    # left-padded prompts (the key/value-cache path) would shift GPT-2's positions: it gets one row per request
    from transformers import GPT2Config, GPT2LMHeadModel

    from bloomz_tune.evaluation.scoring import _can_share

    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tiny_tokenizer),
                        bos_token_id=tiny_tokenizer.eos_token_id, eos_token_id=tiny_tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config).eval()
    assert not packed.can_pack(model) and not _can_share(model)
    got = loglikelihoods(model, tiny_tokenizer, REQUESTS[:8], batch_size=3, progress=False)
    hand = [_hand_score(model, tiny_tokenizer, c, x)[0] for c, x in REQUESTS[:8]]
    assert max(abs(a - b) for a, b in zip(got, hand)) < 1e-4


def test_the_scorer_is_named_as_it_runs(tiny_model, tiny_tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    from bloomz_tune.evaluation.scoring import scoring_method

    assert scoring_method(tiny_model) == "packed"
    assert scoring_method(tiny_model, pack=False) == "cache"
    assert scoring_method(tiny_model, share_prompts=False) == "rows"
    assert scoring_method(_Wrapper(tiny_model)) == "rows"  # stock attention behind a wrapper's forward
    assert scoring_method(GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64))) == "rows"


def test_branch_ids_need_segment_ids(tiny_model):
    patch_bloom(tiny_model, "sdpa")
    ids = torch.tensor([[5, 6, 7, 8]])
    with pytest.raises(BloomzTuneError, match="branch_ids need segment_ids"):
        tiny_model(ids, branch_ids=torch.tensor([[0, 0, 1, 1]]), logit_positions=torch.tensor([[0, 1]]))
    with pytest.raises(BloomzTuneError, match="branch_ids has shape"):
        tiny_model(ids, segment_ids=torch.ones_like(ids), branch_ids=torch.tensor([[0, 1]]))


def test_flex_masks_branches_as_the_sdpa_bias_does():
    """flex attention's mask_mod and score_mod, evaluated at every (query, key) pair, give exactly what the sdpa
    bias holds: the same visible pairs, the same ALiBi terms. (Compiling flex on a CPU is not tested here: torch's
    CPU code generation for it fails on some shapes; test_gpu_only.py runs a branched row through flex on CUDA.)"""
    from bloomz_tune.model.alibi import build_packed_mask

    segments = torch.tensor([[1, 1, 1, 1, 1, 1, 2, 2, 2, 0], [1, 1, 1, 2, 2, 2, 2, 2, 0, 0]])
    branches = torch.tensor([[0, 0, 0, 1, 1, 2, 0, 0, 1, 0], [0, 1, 2, 0, 0, 1, 1, 3, 0, 0]])
    shape, heads = tuple(segments.shape), 4
    sdpa = build_packed_mask("sdpa", None, segments, shape, heads, torch.float32, "cpu", branch_ids=branches)
    flex = build_packed_mask("flex", None, segments, shape, heads, torch.float32, "cpu", branch_ids=branches)
    q = torch.arange(shape[1])[:, None].expand(shape[1], shape[1])
    kv = torch.arange(shape[1])[None, :].expand(shape[1], shape[1])
    for b in range(shape[0]):
        bb = torch.full_like(q, b)
        for h in range(heads):
            hh = torch.full_like(q, h)
            seen = flex.block_mask.mask_mod(bb, hh, q, kv)
            assert torch.equal(seen, sdpa.bias[b, h] > float("-inf"))
            terms = flex.score_mod(torch.zeros(q.shape), bb, hh, q, kv)
            torch.testing.assert_close(terms[seen], sdpa.bias[b, h][seen], atol=1e-6, rtol=0)


def test_the_cuda_check_of_packed_scoring_runs_on_cpu(tiny_model, tiny_tokenizer):
    """test_gpu_only.py's check of packed scoring (fp32 and bf16), here on the CPU without its flex part."""
    from test_gpu_only import check_packed_scoring

    check_packed_scoring(tiny_model, tiny_tokenizer, "cpu", flex=False)
