"""BLOOM, changed for packed instruction tuning: segment-isolated ALiBi attention and logits at chosen positions.

``patch_bloom(model, attention)`` changes the BLOOM inside ``model`` (bare, peft-wrapped or DDP-wrapped) in place
and returns it; calling it again switches attention, and ``attention_of(model)`` says which one runs.
The patched forwards (``attention`` other than "stock"):

    BloomForCausalLM.forward(input_ids=None, cache=None, attention_mask=None, inputs_embeds=None, labels=None,
        use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, logits_to_keep=0,
        logit_positions=None, segment_ids=None, target_ids=None, loss_chunk_size=None, past_key_values=None,
        branch_ids=None, **kwargs)
    BloomModel.forward(input_ids=None, cache=None, attention_mask=None, inputs_embeds=None, use_cache=None,
        output_attentions=None, output_hidden_states=None, return_dict=None, segment_ids=None,
        past_key_values=None, branch_ids=None, **kwargs)
``causal_lm(model)`` is the transformers causal LM inside any peft / DDP / compile wrappers.

Attention. BLOOM in transformers 5.x runs eager attention only: every layer materialises
``alibi.baddbmm(q, k^T)``, a 4D additive mask and an fp32 softmax, (batch·heads, L, L) each, and it takes no
position ids and no 4D mask, so packed samples attend to each other. ``attention`` (one of ``ATTENTIONS``) is:

- ``"sdpa"``: one additive bias per forward, ``slope[h]·(pos_k − pos_q)`` where key k is visible from query q
  and −inf elsewhere, shared by all layers and fed to ``torch.nn.functional.scaled_dot_product_attention``
  (fused kernels: the attention probabilities are not stored for backward). It is built in the dtype attention
  runs in (autocast's under mixed precision), so no layer casts a copy of it and backward keeps one tensor.
  Batches pad rows to a multiple of 8 tokens (the collators), the width CUDA's memory-efficient kernel takes
  without padding a copy of the bias at every call.
- ``"flex"``: ``torch.nn.attention.flex_attention`` with ALiBi as a ``score_mod`` and the segment-causal
  pattern as a block mask: nothing of size L² is materialised and fully masked blocks are skipped. Meant for the
  GPU; compiled on first use (on CPU the first call takes tens of seconds).
- ``"stock"``: transformers' own eager attention, unchanged (``patch_bloom`` restores it); it refuses
  ``segment_ids``.

Masks (``alibi.py``). Key k is visible from query q when both lie in the same segment and k ≤ q. Segments come
from ``segment_ids`` (1..k per packed sample, 0 for padding) or, for an ordinary padded batch, from
``attention_mask`` (one segment of real tokens); ALiBi is relative, so a packed, segment-masked sample sees
exactly what it sees alone. Stock BLOOM adds ``slope·pos_k`` only, relying on softmax ignoring a per-row
constant; the relative form ``slope·(pos_k − pos_q)`` is the same softmax, with smaller numbers (kinder to bf16).

The stock contract. The patched forwards take every argument of the stock ones, with the stock defaults
(``use_cache``, ``output_attentions``, ``output_hidden_states`` and ``return_dict`` from the config when not
given), and give what stock gives at every real (non-padding) position: logits, loss, KV cache, hidden states,
attention probabilities (tests/test_bloom_contract.py). The KV cache is taken as ``cache`` or by its older name
``past_key_values``; a plain ``DynamicCache`` is continued by our attention (generation, greedy or beam, runs on
it; ``"flex"`` uses the sdpa bias whenever a cache is involved), ``output_attentions`` and any other kind of
cache run the stock backbone. ``logits_to_keep`` reaches the stock head, so ``generate`` computes the first
step's logits at one position. Packed rows return no cache (``config.use_cache`` does not apply to them) and
refuse ``use_cache=True``, a cache and ``output_attentions``. Padding positions differ from stock on purpose
(a padding query sees only itself): no real token reads them.

Keywords. BLOOM's 250,880-row output head is almost half of bloom-560m. Training needs logits only at positions
whose next token is a target, and rank scoring only at continuation positions, so the model's ``forward`` gets
the keyword ``logit_positions``: an (N, 2) tensor of (row, position) pairs. With it, the forward runs the
backbone, gathers those N hidden states and applies the head to them alone, returning logits of shape
(N, vocab). Given also ``target_ids`` (N,), it returns instead each position's cross-entropy as ``loss`` (N,),
through the head in chunks of ``loss_chunk_size`` positions when N is larger: each chunk's (chunk, vocab) logits
and their fp32 softmax are recomputed in backward rather than kept, so a micro-batch with long targets keeps
(N, hidden) for the head, not (N, 250,880) twice over. The same forward takes ``segment_ids`` (packed rows, see
packing.py) and hands them to the backbone, with ``branch_ids`` when the segments are prompts with their answer
choices as branches (rank scoring, evaluation/packed.py; the mask is in alibi.py).
Both are keywords of the model's own ``forward``, so they pass through peft, DDP, FSDP and DeepSpeed wrappers as
``input_ids`` does; without either keyword the stock forward runs, handed the arguments given and any other
keyword (``position_ids``, ...). ``enable_selected_logits(model)`` adds the keywords alone and leaves attention as
it is (evaluation uses it on any model it scores).

Heads. ``patch_bloom`` takes a BloomForCausalLM, the other BLOOM heads (sequence and token classification,
question answering: attention only, their forwards stay stock) or a bare BloomModel (which takes ``segment_ids``
itself). What was patched is kept in one place: a ``BloomPatch`` at ``backbone._bloomz_patch``. The patch lives on
the instance: a model saved and loaded again is transformers' BLOOM (``attention_of`` says "stock"), and
``require_segment_attention(model)`` refuses packed rows for it rather than letting their samples mix.

Packed batches built by TRL carry no ``segment_ids`` but ``position_ids`` restarting at 0 per sample: both
forwards derive the segment ids from them, and refuse a packed batch with neither (``packed_inputs.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.alibi import PackedMask, build_packed_mask, compiled_flex
from bloomz_tune.model.loss import target_mask
from bloomz_tune.model.packed_inputs import packed_segment_ids
from bloomz_tune.recipe import ATTENTIONS
from bloomz_tune.seam import cache_field, cache_keyword, install_forward, is_plain_cache, new_cache

__all__ = ["ATTENTIONS", "patch_bloom", "attention_of", "causal_lm", "enable_selected_logits",
           "require_segment_attention"]


@dataclass
class BloomPatch:
    """What ``patch_bloom`` / ``enable_selected_logits`` changed on one model, kept on its backbone."""

    attention: str  # one of ATTENTIONS
    lm_forward: Callable | None  # the causal LM's forward before patching (None: not a causal LM); runs when
    # neither logit_positions nor segment_ids is given
    backbone_forward: Callable  # the backbone's forward before patching: attention probabilities, other caches


def causal_lm(model):
    """The transformers causal LM inside any peft / DDP / compile wrappers."""
    while True:
        if hasattr(model, "module"):  # DDP, DataParallel
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif hasattr(model, "get_base_model"):  # peft
            model = model.get_base_model()
        else:
            return model


# ---- the patched forwards ----------------------------------------------------------------------------------------

def _attention_forward(self, hidden_states, residual, alibi, attention_mask, layer_past=None, use_cache=False,
                       output_attentions=False, **kwargs):
    """BloomAttention.forward for a PackedMask; anything else (stock masks) runs the stock code. Like the stock
    code, a given ``layer_past`` (a plain DynamicCache) gets this call's keys and values appended."""
    if not isinstance(attention_mask, PackedMask):
        return type(self).forward(self, hidden_states, residual, alibi, attention_mask, layer_past=layer_past,
                                  use_cache=use_cache, output_attentions=output_attentions, **kwargs)
    batch, length, _ = hidden_states.shape
    fused_qkv = self.query_key_value(hidden_states)  # LoRA (peft) wraps this Linear; it runs here as in stock
    query, key, value = self._reshape(fused_qkv)  # (batch, heads, L, head_dim) each
    if layer_past is not None:
        key, value = layer_past.update(key, value, self.layer_idx)  # (batch, heads, past + L, head_dim)
    dropout = self.attention_dropout.p if self.training else 0.0
    if attention_mask.attention == "flex":
        if dropout > 0:
            raise BloomzTuneError("flex attention has no attention dropout; set attention_dropout to 0 or use sdpa")
        if query.device.type == "cpu" and torch.is_grad_enabled() and query.requires_grad:
            raise BloomzTuneError("flex attention has no backward on CPU in torch; train with sdpa there")
        flex_attention, _ = compiled_flex()
        context = flex_attention(query, key, value, score_mod=attention_mask.score_mod,
                                 block_mask=attention_mask.block_mask, scale=self.inv_norm_factor)
    else:
        context = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask.bias,
                                                 dropout_p=dropout, scale=self.inv_norm_factor)
    context = context.transpose(1, 2).reshape(batch, length, self.hidden_size)
    if self.pretraining_tp > 1 and self.slow_but_exact:
        slices = self.hidden_size / self.pretraining_tp
        output = torch.zeros_like(context)
        for i in range(self.pretraining_tp):
            output = output + F.linear(context[:, :, int(i * slices): int((i + 1) * slices)],
                                       self.dense.weight[:, int(i * slices): int((i + 1) * slices)])
    else:
        output = self.dense(context)
    output = F.dropout(output, p=self.hidden_dropout, training=self.training) + residual
    return output, None


def _cache_argument(cache, past_key_values):
    """The KV cache, given as ``cache`` (transformers 5.25) or by its older name ``past_key_values``."""
    if cache is not None and past_key_values is not None and past_key_values is not cache:
        raise BloomzTuneError("both cache and past_key_values were given; pass the KV cache once, as cache")
    return cache if cache is not None else past_key_values


def _backbone_forward(self, input_ids=None, cache=None, attention_mask=None, inputs_embeds=None, use_cache=None,
                      output_attentions=None, output_hidden_states=None, return_dict=None, segment_ids=None,
                      past_key_values=None, branch_ids=None, **kwargs):
    """BloomModel.forward with the stock arguments and defaults, plus ``segment_ids``: one PackedMask for all layers.

    ``use_cache``, ``output_attentions``, ``output_hidden_states`` and ``return_dict`` default to the config's, as
    in stock (packed rows excepted: they return no cache). A plain DynamicCache is continued and filled by our
    attention; attention probabilities, or another kind of cache, run the stock forward. ``segment_ids`` with a
    cache or attention probabilities are refused. Other keywords (``position_ids``, ...) are accepted as stock
    accepts them.
    """
    from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

    patch, config = self._bloomz_patch, self.config
    segment_ids = packed_segment_ids(segment_ids, attention_mask, kwargs)  # TRL's packed position_ids
    if branch_ids is not None and segment_ids is None:
        raise BloomzTuneError("branch_ids need segment_ids: branches are parts of packed segments")
    cache = _cache_argument(cache, past_key_values)
    packed = segment_ids is not None
    if packed and (use_cache or cache is not None):
        raise BloomzTuneError("segment_ids (packed rows) cannot be combined with a KV cache (cache / use_cache=True)")
    use_cache = (use_cache if use_cache is not None else config.use_cache) and not packed
    if self.gradient_checkpointing and self.training:
        use_cache = False  # as stock: checkpointed blocks keep no cache
    output_attentions = output_attentions if output_attentions is not None else config.output_attentions
    output_hidden_states = (output_hidden_states if output_hidden_states is not None
                            else config.output_hidden_states)
    return_dict = return_dict if return_dict is not None else config.return_dict
    if output_attentions or (cache is not None and not is_plain_cache(cache)):
        if packed:
            raise BloomzTuneError("segment_ids (packed rows) cannot be combined with output_attentions")
        return patch.backbone_forward(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                      use_cache=use_cache, output_attentions=output_attentions,
                                      output_hidden_states=output_hidden_states, return_dict=return_dict,
                                      **{cache_keyword(patch.backbone_forward): cache}, **kwargs)
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
    if inputs_embeds is None:
        inputs_embeds = self.word_embeddings(input_ids)
    if use_cache and cache is None:
        cache = new_cache(config)
    hidden_states = self.word_embeddings_layernorm(inputs_embeds)
    batch, length = hidden_states.shape[:2]
    past = cache.get_seq_length() if cache is not None else 0
    attention = patch.attention if cache is None else "sdpa"  # flex's block mask is built for a whole row
    mask = build_packed_mask(attention, attention_mask, segment_ids, (batch, length), self.num_heads,
                             hidden_states.dtype, hidden_states.device, past, branch_ids)
    all_hidden = () if output_hidden_states else None
    for block in self.h:
        if output_hidden_states:
            all_hidden = all_hidden + (hidden_states,)
        hidden_states = block(hidden_states, alibi=None, attention_mask=mask, layer_past=cache,
                              use_cache=use_cache)[0]
    hidden_states = self.ln_f(hidden_states)
    if output_hidden_states:
        all_hidden = all_hidden + (hidden_states,)
    out = BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, hidden_states=all_hidden,
                                                    **{cache_field(): cache})
    return out if return_dict else out.to_tuple()


def _chunk_losses(head, hidden: torch.Tensor, target_ids: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(head(hidden).float(), target_ids, reduction="none")


def selected_token_losses(head, hidden: torch.Tensor, target_ids: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """Cross-entropy of ``head(hidden)`` against ``target_ids``, per position; in checkpointed chunks of ``chunk``
    positions when there are more (null: never), so that backward keeps no (N, vocab) tensor."""
    if chunk is None or hidden.shape[0] <= chunk:
        return _chunk_losses(head, hidden, target_ids)
    from torch.utils.checkpoint import checkpoint

    return torch.cat([checkpoint(_chunk_losses, head, h, t, use_reentrant=False)
                      for h, t in zip(hidden.split(chunk), target_ids.split(chunk))])


def _given(**arguments) -> dict:
    """The arguments that were given (not None): what a forward is handed, so its own defaults apply to the rest."""
    return {k: v for k, v in arguments.items() if v is not None}


def _keep_positions(hidden: torch.Tensor, logits_to_keep) -> torch.Tensor:
    """The positions stock heads compute logits at: the last ``logits_to_keep`` (0: all), or those of a 1D tensor."""
    if isinstance(logits_to_keep, int):
        return hidden[:, -logits_to_keep:] if logits_to_keep else hidden
    return hidden[:, logits_to_keep]


def _lm_forward(self, input_ids=None, cache=None, attention_mask=None, inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                logits_to_keep=0, logit_positions=None, segment_ids=None, target_ids=None, loss_chunk_size=None,
                past_key_values=None, branch_ids=None, **kwargs):
    """BloomForCausalLM.forward's arguments, plus ``logit_positions``, ``segment_ids``, ``target_ids``,
    ``loss_chunk_size`` and ``branch_ids`` (see the module docstring). Without the first two, the stock forward runs, handed exactly
    the arguments given (it calls the patched backbone); other keywords (``position_ids``, ...) go on with them.
    With them, no cache is returned unless ``use_cache=True`` (and packed rows refuse that)."""
    patch = _patch_of(self)
    segment_ids = packed_segment_ids(segment_ids, attention_mask, kwargs)  # TRL's packed position_ids
    cache = _cache_argument(cache, past_key_values)
    if branch_ids is not None and segment_ids is None:
        raise BloomzTuneError("branch_ids need segment_ids: branches are parts of packed segments")
    if logit_positions is None and segment_ids is None:
        keep = None if isinstance(logits_to_keep, int) and logits_to_keep == 0 else logits_to_keep
        return patch.lm_forward(**_given(input_ids=input_ids, attention_mask=attention_mask, labels=labels,
                                         inputs_embeds=inputs_embeds, use_cache=use_cache,
                                         output_attentions=output_attentions, return_dict=return_dict,
                                         output_hidden_states=output_hidden_states, logits_to_keep=keep),
                                **_given(**{cache_keyword(patch.lm_forward): cache}), **kwargs)
    from transformers.modeling_outputs import CausalLMOutputWithCrossAttentions

    if segment_ids is not None:
        require_segment_attention(self)
    if logit_positions is not None and not (isinstance(logits_to_keep, int) and logits_to_keep == 0):
        raise BloomzTuneError("give logit_positions or logits_to_keep, not both")
    for unused in ("num_items_in_batch", "fused_lm_head"):  # the Trainer's and TRL's; our loss needs neither
        kwargs.pop(unused, None)
    return_dict = return_dict if return_dict is not None else self.config.return_dict
    backbone = getattr(self, self.base_model_prefix)
    out = backbone(**_given(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                            output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                            segment_ids=segment_ids, branch_ids=branch_ids,
                            **{cache_keyword(backbone.forward): cache}),
                   use_cache=bool(use_cache), return_dict=True, **kwargs)
    hidden, head = out.last_hidden_state, self.get_output_embeddings()
    loss = logits = None
    if logit_positions is not None:
        selected = hidden[logit_positions[:, 0], logit_positions[:, 1]]
        if target_ids is not None:
            loss = selected_token_losses(head, selected, target_ids, loss_chunk_size)
        else:
            logits = head(selected)
    else:
        logits = head(_keep_positions(hidden, logits_to_keep))
        if labels is not None:  # the stock token-mean loss, over target_mask's positions (none across a boundary)
            if logits.shape[1] != labels.shape[1]:
                raise BloomzTuneError("labels need the logits of every position: leave logits_to_keep at 0")
            labels = labels.to(logits.device)
            wanted = target_mask(labels, segment_ids)
            loss = F.cross_entropy(logits[:, :-1][wanted].float(), labels[:, 1:][wanted])
    field = cache_field()
    result = CausalLMOutputWithCrossAttentions(loss=loss, logits=logits, hidden_states=out.hidden_states,
                                               attentions=out.attentions, **{field: getattr(out, field)})
    return result if return_dict else result.to_tuple()


# ---- installing --------------------------------------------------------------------------------------------------

def _backbone_of(lm):
    """The BloomModel (or another base model) inside a transformers model: itself when it is the base model."""
    return getattr(lm, getattr(lm, "base_model_prefix", ""), lm)


def _patch_of(lm) -> BloomPatch | None:
    return getattr(_backbone_of(lm), "_bloomz_patch", None)


def _has_lm_head(lm) -> bool:
    return hasattr(lm, "get_output_embeddings") and lm.get_output_embeddings() is not None


def enable_selected_logits(model):
    """Give the causal LM inside ``model`` the ``logit_positions`` and ``segment_ids`` keywords; returns ``model``.

    Attention stays as it is ("stock" on a model never patched, so ``segment_ids`` are refused there). Works on
    any transformers causal LM, BLOOM or not.
    """
    lm = causal_lm(model)
    if not _has_lm_head(lm):
        raise BloomzTuneError(f"logit_positions need a language-model head; {type(lm).__name__} has none")
    patch = _patch_of(lm)
    if patch is None:
        backbone = _backbone_of(lm)
        patch = backbone._bloomz_patch = BloomPatch("stock", lm_forward=None, backbone_forward=backbone.forward)
    if patch.lm_forward is None:
        patch.lm_forward = lm.forward
        install_forward(lm, _lm_forward)
    return model


def patch_bloom(model, attention: str = "sdpa"):
    """Install ``attention`` (one of ATTENTIONS) in the BLOOM inside ``model``; returns ``model``.

    ``model`` may be bare, peft-wrapped or DDP-wrapped: a BloomForCausalLM (which also gets the keywords of
    ``enable_selected_logits``), another BLOOM head (sequence or token classification, question answering) or a
    bare BloomModel (which takes ``segment_ids`` itself). Call it again to switch attention; "stock" restores
    transformers' attention.
    """
    from transformers.models.bloom.modeling_bloom import BloomAttention, BloomModel

    if attention not in ATTENTIONS:
        raise BloomzTuneError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    lm = causal_lm(model)
    backbone = _backbone_of(lm)
    if not isinstance(backbone, BloomModel):
        raise BloomzTuneError(f"patch_bloom is written for BLOOM; got {type(lm).__name__}")
    if attention == "flex":
        if not hasattr(torch.nn.attention, "flex_attention"):
            raise BloomzTuneError(f"flex attention needs torch >= 2.5; this is torch {torch.__version__}")
        if lm.config.attention_dropout > 0:
            raise BloomzTuneError("flex attention has no attention dropout; set attention_dropout to 0 or use sdpa")
    if _patch_of(lm) is None:
        backbone._bloomz_patch = BloomPatch("stock", lm_forward=None, backbone_forward=backbone.forward)
    if _has_lm_head(lm):
        enable_selected_logits(model)
    patch = backbone._bloomz_patch
    stock = attention == "stock"
    if stock:
        backbone.forward = patch.backbone_forward
    else:
        install_forward(backbone, _backbone_forward)
    for module in backbone.modules():
        if isinstance(module, BloomAttention):
            if stock:
                module.__dict__.pop("forward", None)
            else:
                install_forward(module, _attention_forward)
    patch.attention = attention
    return model


def attention_of(model) -> str:
    """The attention running in the BLOOM inside ``model``: "sdpa", "flex" or "stock".

    "stock" for a model never patched, and for one saved and loaded again: ``save_pretrained`` stores weights
    only, so ``from_pretrained`` gives transformers' own BLOOM back.
    """
    patch = _patch_of(causal_lm(model))
    return patch.attention if patch is not None else "stock"


def require_segment_attention(model) -> None:
    """Refuse packed rows (``segment_ids``) for a model whose attention would let their samples see each other."""
    if attention_of(model) == "stock":
        raise BloomzTuneError("segment_ids (packed rows) need segment-isolated attention, and this BLOOM runs "
                              "transformers' own (never patched, patched with 'stock', or loaded again after "
                              "saving): call bloom.patch_bloom(model, 'sdpa' or 'flex') first")
