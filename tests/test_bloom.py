"""Packed rows through segment-isolated attention equal each sample run alone through stock transformers BLOOM;
patch_bloom switches attention and keeps logit_positions."""

import copy

import pytest
import torch
import torch.nn.functional as F
from oracles import tokenize_batch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.bloom import attention_of, causal_lm, enable_selected_logits, patch_bloom
from bloomz_tune.model.loading import apply_lora
from bloomz_tune.model.loss import IGNORE_INDEX, batch_loss_sum, select_targets, target_mask
from bloomz_tune.tokens.batches import PaddingCollator
from bloomz_tune.tokens.packing import PackedCollator, pack_dataset

SAMPLES = {
    "inputs": ["Translate to French: the red house.", "Q: what is the capital of France? A:",
               "Review: the movie was great and the actors were wonderful. Sentiment:", "def add(a, b):"],
    "targets": ["la maison rouge", "Paris", "positive", "return a + b"],
}


def _tokenized(tokenizer):
    import datasets

    rows = tokenize_batch(SAMPLES, tokenizer, max_length=128)
    return datasets.Dataset.from_dict({"input_ids": rows["input_ids"], "labels": rows["labels"]})


def _packed_batch(tokenizer, row_length=96, **collator):
    """Samples packed into rows of ``row_length``; ``collator`` overrides PackedCollator's arguments."""
    packed, stats = pack_dataset(_tokenized(tokenizer), max_length=row_length)
    assert stats.rows < stats.samples  # several samples really share a row
    return PackedCollator(tokenizer.pad_token_id, **{"max_length": row_length, **collator})(list(packed))


def _padded_batch(tokenizer, **collator):
    rows = tokenize_batch(SAMPLES, tokenizer, max_length=128)
    return PaddingCollator(tokenizer.pad_token_id, **collator)(
        [{"input_ids": i, "labels": lab} for i, lab in zip(rows["input_ids"], rows["labels"])])


def _alone(model, ids, labels):
    """Stock forward of one sample alone: (target logits, mean target loss)."""
    logits = model(input_ids=torch.tensor([ids])).logits[0, :-1]
    keep = torch.tensor(labels[1:]) != IGNORE_INDEX
    target_logits = logits[keep]
    loss = F.cross_entropy(target_logits.float(), torch.tensor(labels[1:])[keep])
    return target_logits, loss


def _lora(model):
    model = apply_lora(model, r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query_key_value", "dense"])
    torch.manual_seed(1)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # B starts at zero; make the adapter change the output
            p.data.normal_(0, 0.5)
    return model


def _samples_of(batch):
    """(input ids, labels) of each packed sample, row by row, in segment order."""
    for r in range(batch["input_ids"].shape[0]):
        for s in sorted(set(batch["segment_ids"][r].tolist()) - {0}):
            cols = (batch["segment_ids"][r] == s).nonzero().flatten()
            yield batch["input_ids"][r, cols].tolist(), batch["labels"][r, cols].tolist()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_packed_samples_equal_samples_alone(tiny_model, tiny_tokenizer, lora):
    model = _lora(tiny_model) if lora else tiny_model
    stock = copy.deepcopy(model)
    patch_bloom(model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)

    positions, _, sample_ids = select_targets(batch["labels"], batch["segment_ids"])
    packed_logits = model(**{k: v for k, v in batch.items() if k != "labels"}, logit_positions=positions).logits
    packed_loss, items, _ = batch_loss_sum(model, batch, "sample_mean")

    want_logits, want_loss = [], 0.0
    for ids, labels in _samples_of(batch):
        logits, loss = _alone(stock, ids, labels)
        want_logits.append(logits)
        want_loss += float(loss.detach())
    assert items == len(SAMPLES["inputs"])
    torch.testing.assert_close(packed_logits, torch.cat(want_logits), atol=1e-4, rtol=0)
    assert abs(float(packed_loss) - want_loss) < 1e-4


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_packed_gradients_equal_samples_alone(tiny_model, tiny_tokenizer, lora):
    model = _lora(tiny_model) if lora else tiny_model
    stock = copy.deepcopy(model)
    patch_bloom(model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)
    packed_loss, _, _ = batch_loss_sum(model, batch, "sample_mean")
    packed_loss.backward()

    total = 0.0
    for ids, labels in _samples_of(batch):
        total = total + _alone(stock, ids, labels)[1]
    total.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    want = {n: p.grad for n, p in stock.named_parameters() if p.requires_grad}
    assert grads.keys() == want.keys() and len(grads) > 0
    assert all(g is not None for g in grads.values()) and sum(float(g.abs().sum()) for g in grads.values()) > 0
    for name in grads:
        torch.testing.assert_close(grads[name], want[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_targets_only_loss_equals_full_logits_loss(tiny_model, tiny_tokenizer, lora):
    model = _lora(tiny_model) if lora else tiny_model
    patch_bloom(model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 segment_ids=batch["segment_ids"]).logits
    logp = torch.log_softmax(full.float(), -1)
    per_sample = {}
    seg = batch["segment_ids"]
    for r in range(seg.shape[0]):
        for t in range(1, seg.shape[1]):
            y = int(batch["labels"][r, t])
            if y != IGNORE_INDEX and seg[r, t] == seg[r, t - 1]:
                per_sample.setdefault((r, int(seg[r, t])), []).append(-logp[r, t - 1, y])
    want = sum(torch.stack(v).mean() for v in per_sample.values())
    got, items, _ = batch_loss_sum(model, batch, "sample_mean")
    assert items == len(per_sample) == len(SAMPLES["inputs"])
    assert abs(float(got) - float(want)) < 1e-5

    # the gradients of the two losses agree as well
    trainable = [p for p in model.parameters() if p.requires_grad]
    g_full = torch.autograd.grad(want, trainable)
    g_sel = torch.autograd.grad(batch_loss_sum(model, batch, "sample_mean")[0], trainable)
    for a, b in zip(g_full, g_sel):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_packing_without_segment_mask_would_differ(tiny_model, tiny_tokenizer):
    """The equality above is not vacuous: plain causal attention over the packed row changes the logits."""
    patch_bloom(tiny_model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)
    positions, _, _ = select_targets(batch["labels"], batch["segment_ids"])
    isolated = tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                          segment_ids=batch["segment_ids"], logit_positions=positions).logits
    leaky = tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       logit_positions=positions).logits
    assert (isolated - leaky).abs().max() > 1e-3


@pytest.mark.parametrize("side", ["right", "left"])
def test_padded_batches_equal_stock(tiny_model, tiny_tokenizer, side):
    stock = copy.deepcopy(tiny_model)
    patch_bloom(tiny_model, "sdpa")
    batch = _padded_batch(tiny_tokenizer)
    if side == "left":
        lengths = batch["attention_mask"].sum(1)
        for key in ("input_ids", "attention_mask"):
            batch[key] = torch.stack([row.roll(int(row.numel() - n)) for row, n in zip(batch[key], lengths)])
    real = batch["attention_mask"].bool()
    with torch.no_grad():
        ours = tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        want = stock(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    torch.testing.assert_close(ours[real], want[real], atol=1e-4, rtol=0)


def test_stock_restores_stock_and_generation_still_works(tiny_model, tiny_tokenizer):
    stock = copy.deepcopy(tiny_model)
    patch_bloom(tiny_model, "sdpa")
    assert attention_of(tiny_model) == "sdpa"
    prompt = torch.tensor([tiny_tokenizer("Q: capital of France? A:", add_special_tokens=False)["input_ids"]])
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    assert tiny_model.generate(prompt, **kwargs).tolist() == stock.generate(prompt, **kwargs).tolist()
    patch_bloom(tiny_model, "stock")
    assert attention_of(tiny_model) == "stock"
    assert "forward" not in tiny_model.transformer.h[0].self_attention.__dict__
    batch = _packed_batch(tiny_tokenizer)
    with pytest.raises(BloomzTuneError, match="patch_bloom"):
        batch_loss_sum(tiny_model, batch)


def test_attention_dropout_is_active_in_training(tiny_model_dir, tiny_tokenizer):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attention_dropout=0.5, dtype=torch.float32)
    patch_bloom(model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    model.train()
    a, b = model(**inputs).logits, model(**inputs).logits
    assert (a - b).abs().max() > 1e-3
    model.eval()
    torch.testing.assert_close(model(**inputs).logits, model(**inputs).logits)
    with pytest.raises(BloomzTuneError, match="dropout"):
        patch_bloom(model, "flex")


def test_bad_input_is_refused(tiny_model):
    with pytest.raises(BloomzTuneError, match="one of"):
        patch_bloom(tiny_model, "flash")
    patch_bloom(tiny_model, "sdpa")
    ids = torch.ones(2, 6, dtype=torch.long)
    with pytest.raises(BloomzTuneError, match="shape"):
        tiny_model(input_ids=ids, segment_ids=torch.ones(2, 5, dtype=torch.long))


def test_segment_ids_pass_through_ddp(tiny_model, tiny_tokenizer, tmp_path):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    stock = copy.deepcopy(tiny_model)
    patch_bloom(tiny_model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        ddp = DistributedDataParallel(tiny_model)
        loss, items, _ = batch_loss_sum(ddp, batch)
    finally:
        dist.destroy_process_group()
    enable_selected_logits(stock)
    want = 0.0
    for r in range(batch["input_ids"].shape[0]):
        for s in set(batch["segment_ids"][r].tolist()) - {0}:
            cols = (batch["segment_ids"][r] == s).nonzero().flatten()
            want += float(_alone(stock, batch["input_ids"][r, cols].tolist(), batch["labels"][r, cols].tolist())[1])
    assert abs(float(loss) - want) < 1e-4


def test_rank_scoring_with_sdpa_equals_stock(tiny_model, tiny_tokenizer):
    from bloomz_tune.evaluation.scoring import loglikelihoods

    requests = [("The movie was great. Sentiment:", "positive"), ("Q: capital?", "Paris et Lyon")]
    want = loglikelihoods(copy.deepcopy(tiny_model), tiny_tokenizer, requests, progress=False, pack=False)
    patch_bloom(tiny_model, "sdpa")
    got = loglikelihoods(tiny_model, tiny_tokenizer, requests, progress=False, pack=False)
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-4


def test_flex_equals_sdpa_on_packed_rows(tiny_model, tiny_tokenizer):
    """FlexAttention (ALiBi score_mod + document block mask) gives sdpa's logits; forward only, as torch has no
    flex backward on CPU (training with flex is for the GPU). Compiles flex on first use: the slowest test here.
    Compiled afresh: torch's CPU code generation for flex fails when a second shape makes it recompile."""
    torch._dynamo.reset()
    sdpa = copy.deepcopy(tiny_model)
    patch_bloom(sdpa, "sdpa")
    patch_bloom(tiny_model, "flex")
    batch = _packed_batch(tiny_tokenizer)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    real = batch["segment_ids"] > 0
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(**inputs).logits[real], sdpa(**inputs).logits[real],
                                   atol=1e-4, rtol=0)
    with pytest.raises(BloomzTuneError, match="no backward on CPU"):
        tiny_model(**inputs)


def test_patch_bloom_switches_sdpa_stock_sdpa(tiny_model, tiny_tokenizer):
    model = _lora(tiny_model)
    assert attention_of(model) == "stock"
    batch = _packed_batch(tiny_tokenizer)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    unpacked = {k: v for k, v in inputs.items() if k != "segment_ids"}
    positions, _, _ = select_targets(batch["labels"], batch["segment_ids"])
    with torch.no_grad():
        patch_bloom(model, "sdpa")
        assert attention_of(model) == attention_of(tiny_model) == "sdpa"
        first = model(**inputs, logit_positions=positions).logits
        patch_bloom(model, "stock")
        assert attention_of(model) == "stock"
        selected = model(**unpacked, logit_positions=positions).logits  # logit_positions work on stock attention
        full = model(**unpacked).logits
        torch.testing.assert_close(selected, full[positions[:, 0], positions[:, 1]], atol=1e-5, rtol=0)
        patch_bloom(model, "sdpa")
        assert attention_of(model) == "sdpa"
        torch.testing.assert_close(model(**inputs, logit_positions=positions).logits, first, atol=1e-6, rtol=0)


def test_full_logits_loss_with_labels_stops_at_sample_boundaries(tiny_model, tiny_tokenizer):
    """The labels path (every position's logits) takes the loss where the targets-only path does."""
    patch_bloom(tiny_model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)
    batch["labels"] = batch["input_ids"].masked_fill(batch["segment_ids"] == 0, IGNORE_INDEX)  # boundaries matter
    loss = tiny_model(**batch).loss
    total, items, _ = batch_loss_sum(tiny_model, batch, "token_mean")
    assert items == int(target_mask(batch["labels"], batch["segment_ids"]).sum())
    assert items < int(target_mask(batch["labels"]).sum())
    assert abs(float(loss) - float(total) / items) < 1e-5


def _attention_sized_saved(model, batch) -> set:
    """Storages of the (batch, heads or 1, L, L) tensors that a forward keeps for backward."""
    rows, length = batch["input_ids"].shape
    sizes = {rows * model.config.n_head * length * length, rows * length * length}
    saved = set()

    def keep(t):
        if t.numel() in sizes:
            saved.add(t.untyped_storage().data_ptr())
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        batch_loss_sum(model, batch)
    return saved


def test_bf16_autocast_keeps_one_attention_bias_per_forward(tiny_model, tiny_tokenizer):
    """fp32 weights under bf16 autocast (the full fine-tuning recipes): the bias is built in bf16 once and every
    layer's sdpa uses it as it is, instead of casting a copy per layer that backward would keep."""
    patch_bloom(tiny_model, "sdpa")
    assert tiny_model.config.n_layer > 1
    batch = _packed_batch(tiny_tokenizer)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert len(_attention_sized_saved(tiny_model, batch)) == 1
    assert len(_attention_sized_saved(tiny_model, batch)) == 1  # fp32 without autocast as well


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_padding_to_a_multiple_of_8_keeps_the_loss(tiny_model, tiny_tokenizer, packed):
    """Both collators pad to a multiple of 8 by default; the extra padding holds no target and changes nothing."""
    patch_bloom(tiny_model, "sdpa")
    if packed:  # rows packed into 96 tokens; the collator pads to the longest row, or to ``max_length``
        def make(**collator):
            return _packed_batch(tiny_tokenizer, **{"max_length": None, **collator})
    else:
        def make(**collator):
            return _padded_batch(tiny_tokenizer, **collator)
    tight, rounded = make(pad_to_multiple_of=None), make()
    assert tight["input_ids"].shape[1] % 8 != 0 and rounded["input_ids"].shape[1] % 8 == 0
    extra = rounded["attention_mask"][:, tight["input_ids"].shape[1]:]
    assert extra.numel() > 0 and not extra.any()
    for key in tight:  # the same rows, plus padding columns
        assert torch.equal(rounded[key][:, :tight[key].shape[1]], tight[key])
    assert (rounded["labels"][rounded["attention_mask"] == 0] == IGNORE_INDEX).all()
    for loss_type in ("sample_mean", "token_mean"):
        (a, n_a, t_a), (b, n_b, t_b) = (batch_loss_sum(tiny_model, x, loss_type) for x in (tight, rounded))
        assert (n_a, t_a) == (n_b, t_b)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert make(max_length=123)["input_ids"].shape[1] == 128  # a fixed row length is rounded up as well


def _enable_checkpointing_as_the_trainer_does(model, tmp_path):
    """Trainer.train's call, with the arguments the recipe's ``gradient_checkpointing: true`` gives."""
    from bloomz_tune.recipe import recipe_from_dict
    from bloomz_tune.training.trainer import training_arguments

    recipe = recipe_from_dict({"output_dir": str(tmp_path), "training": {"gradient_checkpointing": True,
                                                                         "bf16": False}})
    args = training_arguments(recipe, tmp_path / "ckpt")
    name = "activation_checkpointing" if hasattr(args, "activation_checkpointing") else "gradient_checkpointing"
    assert getattr(args, name)
    getattr(model, f"{name}_enable")(**{f"{name}_kwargs": getattr(args, f"{name}_kwargs")})


def _loss_and_grads(model, batch, seed=0):
    """(loss, gradients) of one training step, and how often the attention layers ran (forward + recompute)."""
    calls = []
    hooks = [m.register_forward_pre_hook(lambda *_: calls.append(1)) for n, m in model.named_modules()
             if n.endswith("self_attention")]
    torch.manual_seed(seed)  # the same dropout draws in both runs
    loss = batch_loss_sum(model, batch)[0]
    loss.backward()
    for hook in hooks:
        hook.remove()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad(set_to_none=True)
    return loss.detach(), grads, len(calls)


@pytest.mark.parametrize("attention,device", [
    ("sdpa", "cpu"),
    pytest.param("flex", "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                          reason="flex attention has no backward on CPU")),
])
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_keeps_loss_and_gradients(tiny_model_dir, tiny_tokenizer, tmp_path, attention, device,
                                                         lora):
    """The recipes train with gradient checkpointing (and, with sdpa, dropout 0.1): recomputing each block in
    backward with the shared PackedMask gives the loss and gradients of the plain packed step."""
    from transformers import AutoModelForCausalLM

    dropout = 0.1 if attention == "sdpa" else 0.0
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32, hidden_dropout=dropout,
                                                 attention_dropout=dropout)
    model = (_lora(model) if lora else model).to(device)
    patch_bloom(model, attention)
    model.train()
    batch = {k: v.to(device) for k, v in _packed_batch(tiny_tokenizer).items()}
    loss, grads, calls = _loss_and_grads(model, batch)
    _enable_checkpointing_as_the_trainer_does(model, tmp_path)
    loss_ckpt, grads_ckpt, calls_ckpt = _loss_and_grads(model, batch)
    layers = causal_lm(model).config.n_layer
    assert (calls, calls_ckpt) == (layers, 2 * layers)  # each block really ran again in backward
    torch.testing.assert_close(loss_ckpt, loss, atol=1e-6, rtol=0)
    assert grads.keys() == grads_ckpt.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)
    assert sum(float(g.abs().sum()) for g in grads.values()) > 0


def _vocab_sized_saved(model, batch, chunk) -> list:
    """Shapes of the (positions, vocab) tensors that backward keeps (logits and their softmax)."""
    vocab, shapes = causal_lm(model).config.vocab_size, []

    def keep(t):
        if t.dim() == 2 and t.shape[1] == vocab and t.shape[0] != model.config.hidden_size:  # not the head's weight
            shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        loss = batch_loss_sum(model, batch, "sample_mean", chunk)[0]
    return loss, shapes


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_chunked_head_and_loss_keep_loss_and_gradients(tiny_model, tiny_tokenizer, lora):
    """The head and cross-entropy in checkpointed chunks of target positions (recipe training.loss_chunk_size):
    the same loss and gradients, and backward keeps no (targets, vocab) tensor."""
    model = patch_bloom(_lora(tiny_model) if lora else tiny_model, "sdpa")
    batch = _packed_batch(tiny_tokenizer)
    targets = int(select_targets(batch["labels"], batch["segment_ids"])[1].numel())
    assert targets > 5  # several chunks of 3, the last one shorter
    trainable = [p for p in model.parameters() if p.requires_grad]
    results = {}
    for chunk in (None, 3):
        loss, shapes = _vocab_sized_saved(model, batch, chunk)
        results[chunk] = (loss.detach(), torch.autograd.grad(loss, trainable), shapes)
    (whole, g_whole, kept_whole), (chunked, g_chunked, kept_chunked) = results[None], results[3]
    assert (targets, causal_lm(model).config.vocab_size) in kept_whole
    assert kept_chunked == []
    assert torch.allclose(whole, chunked, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g_whole, g_chunked))


@pytest.mark.parametrize("heads", [1, 4, 12, 16, 32, 112])
def test_alibi_slopes_equal_transformers_own(heads):
    """seam.alibi_slopes reads the slopes off build_alibi_tensor; they equal the model's private slope function."""
    from transformers.models.bloom import modeling_bloom

    from bloomz_tune.seam import alibi_slopes

    private = getattr(modeling_bloom, "_get_alibi_slopes", None)
    assert private is not None, "transformers 5.25 has _get_alibi_slopes; the comparison needs it"
    assert torch.equal(alibi_slopes(heads), private(heads, torch.device("cpu")))
