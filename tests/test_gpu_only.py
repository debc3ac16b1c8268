"""Checks that need CUDA, skipped elsewhere: packed rows equal their samples run alone in bf16 (sdpa and flex,
bf16 weights and fp32 weights under bf16 autocast), under CUDA's bf16 autocast the attention bias is built
once per forward, and packed rank scoring agrees with the other scorers (fp32, bf16, a branched row through
flex). benchmarks/gpu_check.py runs them on the GPU machine, together with tests/test_bloom.py's
CUDA case (flex attention's backward under gradient checkpointing). Every test name holds "cuda", so
``pytest -k cuda`` selects them all."""

import copy

import pytest
import torch
import torch.nn.functional as F
from test_bloom import _attention_sized_saved, _packed_batch, _samples_of

from bloomz_tune.model.bloom import patch_bloom
from bloomz_tune.model.loss import IGNORE_INDEX, batch_loss_sum, select_targets

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# (weights' dtype, bf16 autocast): the LoRA recipes' precision and the full fine-tuning recipes' precision
PRECISIONS = {"bf16_weights": (torch.bfloat16, False), "fp32_weights_autocast": (torch.float32, True)}


def _autocast(device, enabled):
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)


def _relative(got, want) -> float:
    """Largest absolute difference over the largest absolute reference value."""
    return float((got.float() - want.float()).abs().max() / want.float().abs().max())


def _relative_norm(got: dict, want: dict) -> float:
    """|got - want| / |want| over all gradients together."""
    diff = sum(float((got[n].float() - want[n].float()).pow(2).sum()) for n in want)
    return (diff / sum(float(g.float().pow(2).sum()) for g in want.values())) ** 0.5


def _gradients(model) -> dict:
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def _each_alone(model, batch, device, autocast):
    """Stock BLOOM on each packed sample alone: (target logits of all samples, sum of per-sample mean losses)."""
    logits, loss = [], 0.0
    for ids, labels in _samples_of(batch):
        labels = torch.tensor(labels[1:], device=device)
        keep = labels != IGNORE_INDEX
        with _autocast(device, autocast):
            out = model(input_ids=torch.tensor([ids], device=device)).logits[0, :-1][keep].float()
        logits.append(out)
        loss = loss + F.cross_entropy(out, labels[keep])
    return torch.cat(logits), loss


def _packed(model, batch, device, autocast):
    """The patched model on the packed rows: (target logits, sum of per-sample mean losses)."""
    batch = {k: v.to(device) for k, v in batch.items()}
    positions, _, _ = select_targets(batch["labels"], batch["segment_ids"])
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with _autocast(device, autocast):
        with torch.no_grad():
            logits = model(**inputs, logit_positions=positions).logits.float()
        loss = batch_loss_sum(model, batch, "sample_mean")[0]
    return logits, loss


def _with_stronger_blocks(model, factor=4.0):
    """The blocks' weights scaled up, so that what attention sees moves the logits far beyond bf16's rounding
    (in the tiny random BLOOM the embedding dominates: attention across samples changed them by 0.35% only)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and (".self_attention." in name or ".mlp." in name):
                param.mul_(factor)
    return model


def check_packed_equals_alone_in_bf16(model, tokenizer, attention, precision, device):
    """Packed in bf16 is as close to the fp32 truth (stock BLOOM, each sample alone, fp32) as stock BLOOM in the
    same bf16 precision is: logits, loss and gradients, within twice stock's error or a bf16 floor; attention
    across the samples of a row would be far outside that."""
    dtype, autocast = PRECISIONS[precision]
    model = _with_stronger_blocks(model)
    batch = _packed_batch(tokenizer)
    truth = copy.deepcopy(model).to(device)
    stock = copy.deepcopy(model).to(device=device, dtype=dtype)
    packed = patch_bloom(copy.deepcopy(model).to(device=device, dtype=dtype), attention)

    want_logits, want_loss = _each_alone(truth, batch, device, autocast=False)
    want_loss.backward()
    want_grads = _gradients(truth)
    stock_logits, stock_loss = _each_alone(stock, batch, device, autocast)
    stock_loss.backward()
    stock_grads = _gradients(stock)
    got_logits, got_loss = _packed(packed, batch, device, autocast)
    got_loss.backward()
    got_grads = _gradients(packed)

    assert got_grads.keys() == want_grads.keys() and len(got_grads) > 0
    stock_error = _relative(stock_logits, want_logits)
    assert stock_error > 0  # the precision really is lower than the reference's
    bound = max(2 * stock_error, 2e-2)
    assert _relative(got_logits, want_logits) <= bound
    loss_error = abs(float(got_loss) - float(want_loss)) / abs(float(want_loss))
    stock_loss_error = abs(float(stock_loss) - float(want_loss)) / abs(float(want_loss))
    assert loss_error <= max(2 * stock_loss_error, 1e-2)
    assert _relative_norm(got_grads, want_grads) <= max(2 * _relative_norm(stock_grads, want_grads), 3e-2)

    one_segment = {**batch, "segment_ids": (batch["segment_ids"] > 0).long()}  # samples attend to each other
    leaky_logits, _ = _packed(packed, one_segment, device, autocast)
    assert _relative(leaky_logits, want_logits) > 2 * bound


@pytest.mark.parametrize("precision", list(PRECISIONS))
@pytest.mark.parametrize("attention", ["sdpa", "flex"])
def test_packed_equals_alone_in_bf16_on_cuda(tiny_model, tiny_tokenizer, attention, precision):
    check_packed_equals_alone_in_bf16(tiny_model, tiny_tokenizer, attention, precision, "cuda")


def test_bf16_autocast_keeps_one_attention_bias_per_forward_on_cuda(tiny_model, tiny_tokenizer):
    """fp32 weights under CUDA's bf16 autocast: every layer's sdpa uses the one bf16 bias, and backward keeps no
    per-layer copy (tests/test_bloom.py checks the same under CPU autocast)."""
    model = patch_bloom(tiny_model.to("cuda"), "sdpa")
    assert model.config.n_layer > 1
    batch = {k: v.to("cuda") for k, v in _packed_batch(tiny_tokenizer).items()}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        assert len(_attention_sized_saved(model, batch)) == 1


def check_packed_scoring(model, tokenizer, device, flex: bool):
    """Rank scoring on ``device``: packed (the default) equals the prompt's key/value cache and one row per
    request in fp32; in bf16 it stays within bf16's error of fp32 and no further from it than the cache path in
    bf16; with ``flex``, a branched row through flex attention gives sdpa's logits."""
    from test_eval_packed import MIXED

    from bloomz_tune.evaluation import packed
    from bloomz_tune.evaluation.scoring import encode_requests, loglikelihoods

    model = model.to(device).eval()
    fp32 = {way: loglikelihoods(model, tokenizer, MIXED, batch_size=2, progress=False, **kwargs)
            for way, kwargs in (("packed", {}), ("cache", {"pack": False}), ("rows", {"share_prompts": False}))}
    for way in ("cache", "rows"):
        assert max(abs(a - b) for a, b in zip(fp32["packed"], fp32[way])) < 1e-3, way
    half = copy.deepcopy(model).to(torch.bfloat16)
    bf16 = {way: loglikelihoods(half, tokenizer, MIXED, batch_size=2, progress=False, pack=way == "packed")
            for way in ("packed", "cache")}
    scale = max(abs(x) for x in fp32["packed"])
    errors = {way: max(abs(a - b) for a, b in zip(bf16[way], fp32["packed"])) / scale for way in bf16}
    assert errors["packed"] <= max(2 * errors["cache"], 2e-2), errors
    if flex:
        model.config.attention_dropout = 0.0
        sdpa = patch_bloom(copy.deepcopy(model), "sdpa")
        patch_bloom(model, "flex")
        encoded = encode_requests(tokenizer, MIXED[:9])
        batch = packed._layout(encoded, packed.group_requests(encoded), [[0, 1], [2]], 128, tokenizer.pad_token_id)
        inputs = {k: batch[k].to(device) for k in ("input_ids", "segment_ids", "branch_ids")}
        positions = batch["positions"].to(device)
        with torch.no_grad():
            torch.testing.assert_close(model(**inputs, logit_positions=positions).logits,
                                       sdpa(**inputs, logit_positions=positions).logits, atol=1e-3, rtol=0)


def test_packed_scoring_on_cuda(tiny_model, tiny_tokenizer):
    check_packed_scoring(tiny_model, tiny_tokenizer, "cuda", flex=True)
