"""The patched BLOOM keeps transformers' BLOOM contract: every argument of the stock forwards is accepted and
honoured, and gives what the stock model gives on the same inputs (logits, caches, attentions, hidden states,
generated tokens); what the patch cannot do runs the stock code or is refused with a clear error.

Each test compares a patched model with an unpatched deep copy of the same weights. Padding positions are
left out of comparisons: there stock and patched attention differ by design (a padding query sees only itself
in ours), and no real token ever reads them.
"""

import copy
import inspect

import pytest
import torch
from transformers import BloomForCausalLM

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.bloom import attention_of, enable_selected_logits, patch_bloom, require_segment_attention
from bloomz_tune.model.loss import batch_loss_sum
from bloomz_tune.seam import cache_field, cache_keyword

VOCAB = 96
ATOL = 1e-5
FIELD = cache_field()  # where outputs hold the KV cache in this transformers version
CACHE = cache_keyword(BloomForCausalLM.forward)  # the stock forward's name for it


def _cache(output):
    return getattr(output, FIELD)


def _config(**overrides):
    from transformers import BloomConfig

    return BloomConfig(**{"vocab_size": VOCAB, "hidden_size": 32, "n_layer": 2, "n_head": 4, "pad_token_id": 0,
                          "bos_token_id": 1, "eos_token_id": 2, **overrides})


def _pair(cls=None, attention="sdpa", **overrides):
    """(patched, stock): one random BLOOM of class ``cls`` (default BloomForCausalLM), and its unpatched copy."""
    from transformers import BloomForCausalLM

    torch.manual_seed(0)
    stock = (cls or BloomForCausalLM)(_config(**overrides)).eval()
    return patch_bloom(copy.deepcopy(stock), attention), stock


def _left_padded(batch=3, length=9, seed=1):
    """input_ids and attention_mask of a left-padded batch: rows with 0, 3 and 5 padding tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for row, pad in enumerate((0, 3, 5)[:batch]):
        ids[row, :pad], mask[row, :pad] = 0, 0
    return ids, mask


def _close_at(real, a, b):
    """a == b at the real (non-padding) positions: dims 0 and 1 of (batch, L, ...) tensors."""
    torch.testing.assert_close(a[real], b[real], atol=ATOL, rtol=0)


def _close_caches(real, a, b):
    """Every layer's cached keys and values agree at the real positions (caches are (batch, heads, L, dim))."""
    assert len(a.layers) == len(b.layers) > 0
    for la, lb in zip(a.layers, b.layers):
        for x, y in ((la.keys, lb.keys), (la.values, lb.values)):
            assert x.shape == y.shape
            _close_at(real, x.transpose(1, 2), y.transpose(1, 2))


@pytest.fixture()
def our_forwards(monkeypatch):
    """A list that grows by one each time the patched backbone runs our attention (not the stock fallback)."""
    import bloomz_tune.model.bloom as bloom

    calls, build = [], bloom.build_packed_mask
    monkeypatch.setattr(bloom, "build_packed_mask", lambda *a, **k: calls.append(1) or build(*a, **k))
    return calls


# ---- signatures --------------------------------------------------------------------------------------------------

HEADS = ["BloomForCausalLM", "BloomForSequenceClassification", "BloomForTokenClassification",
         "BloomForQuestionAnswering", "BloomModel"]


@pytest.mark.parametrize("head", HEADS)
def test_patched_forwards_accept_every_stock_argument(head):
    import transformers

    patched, stock = _pair(getattr(transformers, head))
    assert attention_of(patched) == "sdpa" and attention_of(stock) == "stock"
    backbone = getattr(patched, "transformer", patched)
    stock_backbone = getattr(stock, "transformer", stock)
    for ours, theirs in ((patched.forward, stock.forward), (backbone.forward, stock_backbone.forward)):
        missing = set(inspect.signature(theirs).parameters) - set(inspect.signature(ours).parameters)
        assert not missing, f"{head}: the patched forward drops {missing}"
    assert "segment_ids" in inspect.signature(backbone.forward).parameters
    if head == "BloomForCausalLM":
        assert patched._supports_logits_to_keep() and stock._supports_logits_to_keep()
        assert {"logit_positions", "segment_ids", "branch_ids"} <= set(inspect.signature(patched.forward).parameters)


# ---- each argument, patched == stock -----------------------------------------------------------------------------

CASES = {
    "plain": {},
    "use_cache=False": {"use_cache": False},
    "use_cache=True": {"use_cache": True},
    "config use_cache=False": {"config": {"use_cache": False}},
    "output_hidden_states": {"output_hidden_states": True},
    "config output_hidden_states": {"config": {"output_hidden_states": True}},
    "output_attentions": {"output_attentions": True},
    "config output_attentions": {"config": {"output_attentions": True}},
    "return_dict=False": {"return_dict": False},
    "config return_dict=False": {"config": {"return_dict": False}},
    "logits_to_keep=1": {"logits_to_keep": 1},
    "logits_to_keep=tensor": {"logits_to_keep": torch.tensor([0, 4, 8])},
    "labels": {"labels": True},
    "inputs_embeds": {"inputs_embeds": True},
}


def _outputs(model, ids, mask, case):
    kwargs = {k: v for k, v in case.items() if k not in ("config", "labels", "inputs_embeds")}
    if case.get("labels"):  # a target predicted by a padding position would compare padding outputs: none here
        predicted_from_real = torch.cat([torch.zeros_like(mask[:, :1]), mask[:, :-1]], 1)
        kwargs["labels"] = ids.masked_fill((mask * predicted_from_real) == 0, -100)
    if case.get("inputs_embeds"):
        kwargs["inputs_embeds"] = model.get_input_embeddings()(ids)
    else:
        kwargs["input_ids"] = ids
    with torch.no_grad():
        return model(attention_mask=mask, **kwargs)


@pytest.mark.parametrize("name", CASES)
def test_each_argument_gives_what_stock_gives(name, our_forwards):
    """Logits, loss, cache (keys and values), hidden states and attentions equal stock's, in the same structure
    (a ModelOutput with the same fields set, or a tuple of the same length). Attention probabilities come from
    the stock attention (ours keeps none); every other case runs ours."""
    case = CASES[name]
    patched, stock = _pair(**case.get("config", {}))
    ids, mask = _left_padded()
    real = mask.bool()
    ours, theirs = _outputs(patched, ids, mask, case), _outputs(stock, ids, mask, case)
    assert len(our_forwards) == (0 if "attentions" in name else 1)
    assert type(ours) is type(theirs)
    if isinstance(theirs, tuple):
        assert len(ours) == len(theirs) and [type(x) for x in ours] == [type(x) for x in theirs]
        _close_at(real, ours[0], theirs[0])
        return
    assert [k for k, v in ours.items() if v is not None] == [k for k, v in theirs.items() if v is not None]
    assert ours.logits.shape == theirs.logits.shape
    if "logits_to_keep" in case:
        assert ours.logits.shape[1] == len(case["logits_to_keep"]) if torch.is_tensor(case["logits_to_keep"]) else 1
        kept = real[:, case["logits_to_keep"]] if torch.is_tensor(case["logits_to_keep"]) else real[:, -1:]
        _close_at(kept, ours.logits, theirs.logits)
    else:
        _close_at(real, ours.logits, theirs.logits)
    if theirs.loss is not None:
        torch.testing.assert_close(ours.loss, theirs.loss, atol=ATOL, rtol=0)
    if _cache(theirs) is not None:
        _close_caches(real, _cache(ours), _cache(theirs))
    if theirs.hidden_states is not None:
        assert len(ours.hidden_states) == len(theirs.hidden_states) == patched.config.n_layer + 1
        for a, b in zip(ours.hidden_states, theirs.hidden_states):
            _close_at(real, a, b)
    if theirs.attentions is not None:
        assert len(ours.attentions) == len(theirs.attentions) == patched.config.n_layer
        for a, b in zip(ours.attentions, theirs.attentions):
            torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


def test_the_cases_are_not_vacuous():
    """Controls: each option really changes the stock output, so equality above means it was honoured."""
    _, stock = _pair()
    ids, mask = _left_padded()
    plain = _outputs(stock, ids, mask, {})
    assert _cache(plain) is not None and plain.attentions is None and plain.hidden_states is None
    assert _cache(_outputs(stock, ids, mask, {"use_cache": False})) is None
    assert _outputs(stock, ids, mask, {"output_attentions": True}).attentions is not None
    assert _outputs(stock, ids, mask, {"logits_to_keep": 1}).logits.shape[1] == 1
    _, no_cache = _pair(use_cache=False)
    assert _cache(_outputs(no_cache, ids, mask, {})) is None


# ---- caches ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("use_cache", [True, None, False], ids=["use_cache=True", "unset", "use_cache=False"])
@pytest.mark.parametrize("keyword", ["cache", "past_key_values"])
def test_continuing_from_a_cache_equals_stock_and_the_whole_sequence(use_cache, keyword):
    """Prefill a left-padded batch, then feed 3 more tokens with the cache: the logits equal stock's and those of
    one forward over the whole sequence, whether or not use_cache is passed, under either name of the cache."""
    import warnings

    patched, stock = _pair()
    ids, mask = _left_padded()
    more = torch.randint(3, VOCAB, (ids.shape[0], 3), generator=torch.Generator().manual_seed(5))
    full_ids, full_mask = torch.cat([ids, more], 1), torch.cat([mask, torch.ones_like(more)], 1)
    extra = {} if use_cache is None else {"use_cache": use_cache}
    results = {}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # stock's own warning for the old name
        for name, model in (("patched", patched), ("stock", stock)):
            prefix = model(ids, attention_mask=mask, use_cache=True)
            past_length = _cache(prefix).get_seq_length()
            name_of_cache = keyword if model is patched else CACHE  # ours takes both names in every version
            step = model(more, attention_mask=full_mask, **{name_of_cache: _cache(prefix)}, **extra)
            assert _cache(prefix).get_seq_length() == past_length + 3  # the cache was read and extended
            results[name] = step.logits
        whole = patched(full_ids, attention_mask=full_mask, use_cache=False).logits[:, -3:]
        no_past = patched(more, attention_mask=torch.ones_like(more), use_cache=False).logits
    torch.testing.assert_close(results["patched"], results["stock"], atol=ATOL, rtol=0)
    torch.testing.assert_close(results["patched"], whole, atol=ATOL, rtol=0)
    assert (no_past - whole).abs().max() > 1e-3  # control: without its past the continuation differs


def test_continuing_with_masked_new_tokens_equals_stock(our_forwards):
    """New tokens after a cache with some of them masked (padding inside the continuation): stock's outputs at the
    real new tokens, and the cache grown the same way."""
    patched, stock = _pair()
    ids, mask = _left_padded()
    more = torch.randint(3, VOCAB, (ids.shape[0], 4), generator=torch.Generator().manual_seed(7))
    more_mask = torch.tensor([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1]])
    full_mask = torch.cat([mask, more_mask], 1)
    with torch.no_grad():
        outs = [m(more, attention_mask=full_mask, **{CACHE: _cache(m(ids, attention_mask=mask))}) for m in (patched, stock)]
    assert len(our_forwards) == 2
    _close_at(more_mask.bool(), outs[0].logits, outs[1].logits)
    _close_caches(full_mask.bool(), _cache(outs[0]), _cache(outs[1]))


def test_other_cache_kinds_run_the_stock_attention(our_forwards):
    """A StaticCache (not grown by our attention) runs transformers' own code: the same tokens as stock."""
    patched, stock = _pair()
    ids, mask = _left_padded()
    kwargs = dict(attention_mask=mask, max_new_tokens=4, do_sample=False, cache_implementation="static")
    torch.testing.assert_close(patched.generate(ids, **kwargs), stock.generate(ids, **kwargs))
    assert our_forwards == []


# ---- generation --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode,attention", [({"num_beams": 1}, "sdpa"), ({"num_beams": 3}, "sdpa"),
                                            ({"num_beams": 1}, "flex")], ids=["greedy", "beam", "greedy-flex"])
def test_generation_on_a_left_padded_batch_equals_stock(mode, attention, our_forwards):
    """The same tokens and scores as stock, with our attention running every step on the KV cache (a flex model
    uses the sdpa bias there: nothing to compile)."""
    patched, stock = _pair(attention=attention)
    ids, mask = _left_padded()
    kwargs = dict(attention_mask=mask, max_new_tokens=6, do_sample=False, output_scores=True,
                  return_dict_in_generate=True, **mode)
    ours, theirs = patched.generate(ids, **kwargs), stock.generate(ids, **kwargs)
    assert len(our_forwards) == 6
    assert torch.equal(ours.sequences, theirs.sequences)
    for a, b in zip(ours.scores, theirs.scores):
        finite = torch.isfinite(b)
        assert torch.equal(torch.isfinite(a), finite)
        torch.testing.assert_close(a[finite], b[finite], atol=1e-4, rtol=0)


def _head_shapes(model, ids, mask):
    shapes = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, out: shapes.append(tuple(out.shape)))
    try:
        model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False)
    finally:
        hook.remove()
    return shapes


def test_generate_runs_the_head_on_the_last_position_only():
    """logits_to_keep reaches the patched forward: the prompt's forward computes (batch, 1, vocab) logits, as
    stock does, not (batch, prompt length, vocab)."""
    patched, stock = _pair()
    ids, mask = _left_padded()
    shapes = _head_shapes(patched, ids, mask)
    assert shapes == _head_shapes(stock, ids, mask) == [(ids.shape[0], 1, VOCAB)] * 3
    enable_selected_logits(stock)  # the keywords alone, on a stock model
    assert _head_shapes(stock, ids, mask)[0] == (ids.shape[0], 1, VOCAB)


# ---- training-time contracts -------------------------------------------------------------------------------------

def test_gradient_checkpointing_in_training_returns_no_cache_as_stock():
    patched, stock = _pair()
    ids, mask = _left_padded()
    for model in (patched, stock):
        name = "activation" if hasattr(model, "activation_checkpointing_enable") else "gradient"
        getattr(model, f"{name}_checkpointing_enable")()
        model.train()
    ours, theirs = patched(ids, attention_mask=mask), stock(ids, attention_mask=mask)
    assert _cache(ours) is None and _cache(theirs) is None
    _close_at(mask.bool(), ours.logits, theirs.logits)


def test_keyword_path_honours_return_dict_and_hidden_states():
    patched, _ = _pair()
    ids, mask = _left_padded()
    positions = torch.tensor([[0, 8], [1, 8], [2, 6]])
    with torch.no_grad():
        full = patched(ids, attention_mask=mask, output_hidden_states=True)
        selected = patched(ids, attention_mask=mask, logit_positions=positions, output_hidden_states=True)
        as_tuple = patched(ids, attention_mask=mask, logit_positions=positions, return_dict=False)
    torch.testing.assert_close(selected.logits, full.logits[positions[:, 0], positions[:, 1]], atol=ATOL, rtol=0)
    assert len(selected.hidden_states) == len(full.hidden_states)
    assert isinstance(as_tuple, tuple) and torch.equal(as_tuple[0], selected.logits)
    with pytest.raises(BloomzTuneError, match="not both"):
        patched(ids, logit_positions=positions, logits_to_keep=1)


# ---- the non-causal heads ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("head", HEADS[1:])
def test_non_causal_heads_equal_stock(head):
    import transformers

    patched, stock = _pair(getattr(transformers, head), num_labels=3)
    ids, mask = _left_padded()
    with torch.no_grad():
        ours, theirs = patched(ids, attention_mask=mask), stock(ids, attention_mask=mask)
    real = mask.bool()
    for key, value in theirs.items():
        if key == FIELD:
            _close_caches(real, _cache(ours), value)
        elif value.dim() >= 2 and value.shape[:2] == ids.shape:  # per token: real positions only
            _close_at(real, ours[key], value)
        else:  # pooled on the last real token (sequence classification)
            torch.testing.assert_close(ours[key], value, atol=ATOL, rtol=0)
    if head == "BloomForSequenceClassification":
        labels = torch.tensor([0, 2, 1])
        torch.testing.assert_close(patched(ids, attention_mask=mask, labels=labels).loss,
                                   stock(ids, attention_mask=mask, labels=labels).loss, atol=ATOL, rtol=0)
        with pytest.raises(BloomzTuneError, match="language-model head"):
            enable_selected_logits(patched)


def test_bare_backbone_takes_segment_ids():
    """A bare BloomModel: two samples packed in one row give each sample's hidden states alone."""
    from transformers import BloomModel

    patched, stock = _pair(BloomModel)
    ids, _ = _left_padded(batch=1, length=10)
    segment_ids = torch.tensor([[1] * 4 + [2] * 6])
    with torch.no_grad():
        packed = patched(ids, segment_ids=segment_ids).last_hidden_state[0]
        first = stock(ids[:, :4]).last_hidden_state[0]
        second = stock(ids[:, 4:]).last_hidden_state[0]
    torch.testing.assert_close(packed, torch.cat([first, second]), atol=ATOL, rtol=0)


# ---- what cannot be done is refused ------------------------------------------------------------------------------

def test_packed_rows_are_refused_where_they_would_mix_or_cannot_work(tmp_path):
    from transformers import BloomForCausalLM

    patched, stock = _pair()
    ids, mask = _left_padded()
    segments = mask.clone()
    with pytest.raises(BloomzTuneError, match="KV cache"):
        patched(ids, segment_ids=segments, use_cache=True)
    with pytest.raises(BloomzTuneError, match="KV cache"):
        patched(ids, segment_ids=segments, cache=_cache(patched(ids, use_cache=True)))
    with pytest.raises(BloomzTuneError, match="output_attentions"):
        patched(ids, segment_ids=segments, output_attentions=True)
    assert _cache(patched(ids, segment_ids=segments)) is None  # config.use_cache does not apply to packed rows
    with pytest.raises(BloomzTuneError, match="cache once"):
        patched(ids, cache=_cache(patched(ids)), past_key_values=_cache(patched(ids)))
    with pytest.raises(BloomzTuneError, match="attention_mask has shape"):
        patched(ids[:, 1:], cache=_cache(patched(ids)), attention_mask=mask)

    with pytest.raises(BloomzTuneError, match="patch_bloom"):
        require_segment_attention(stock)
    require_segment_attention(patched)
    patched.save_pretrained(tmp_path)
    reloaded = BloomForCausalLM.from_pretrained(tmp_path)
    assert attention_of(reloaded) == "stock"  # weights only: the reloaded model is transformers' BLOOM again
    batch = {"input_ids": ids, "attention_mask": mask, "segment_ids": segments,
             "labels": ids.masked_fill(mask == 0, -100)}
    with pytest.raises(BloomzTuneError, match="patch_bloom"):  # our loss: refused, not silently mixed
        batch_loss_sum(reloaded, batch)
    assert batch_loss_sum(patched, batch)[1] == 3  # control: the patched model takes the same batch
    with pytest.raises(BloomzTuneError, match="loaded again after saving"):
        enable_selected_logits(reloaded)(ids, segment_ids=segments)
    patch_bloom(reloaded, "stock")
    with pytest.raises(BloomzTuneError, match="patch_bloom"):
        reloaded(ids, segment_ids=segments)
