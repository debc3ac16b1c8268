"""BLOOM, changed for packed instruction tuning: segment-isolated ALiBi attention and logits at chosen positions.

``patch_bloom(model, attention)`` changes the BLOOM inside ``model`` (bare, peft-wrapped or DDP-wrapped) in place
and returns it; calling it again switches attention, and ``attention_of(model)`` says which one runs.
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

Key k is visible from query q when both lie in the same segment and k ≤ q. Segments come from ``segment_ids``
(1..k per packed sample, 0 for padding) or, for an ordinary padded batch, from ``attention_mask`` (one segment
of real tokens). ``pos`` counts real tokens along the row (the same cumulative positions stock BLOOM builds its
ALiBi from), so within a packed sample ``pos_k − pos_q`` is the sample's own relative distance: ALiBi is
relative, and a packed, segment-masked sample sees exactly what it sees alone. Stock BLOOM adds
``slope·pos_k`` only, relying on softmax ignoring a per-row constant; the relative form is the same softmax,
with smaller numbers (kinder to bf16).

Keywords. BLOOM's 250,880-row output head is almost half of bloom-560m. Training needs logits only at positions
whose next token is a target, and rank scoring only at continuation positions, so the model's ``forward`` gets
the keyword ``logit_positions``: an (N, 2) tensor of (row, position) pairs. With it, the forward runs the
backbone, gathers those N hidden states and applies the head to them alone, returning logits of shape
(N, vocab). Given also ``target_ids`` (N,), it returns instead each position's cross-entropy as ``loss`` (N,),
through the head in chunks of ``loss_chunk_size`` positions when N is larger: each chunk's (chunk, vocab) logits
and their fp32 softmax are recomputed in backward rather than kept, so a micro-batch with long targets keeps
(N, hidden) for the head, not (N, 250,880) twice over. The same forward takes ``segment_ids`` (packed rows, see
packing.py) and hands them to the backbone.
Both are keywords of the model's own ``forward``, so they pass through peft, DDP, FSDP and DeepSpeed wrappers as
``input_ids`` does; without either keyword the stock forward runs unchanged. ``enable_selected_logits(model)``
adds the keywords alone and leaves attention as it is (evaluation uses it on any model it scores). Generation
(a KV cache) and ``output_attentions=True`` fall back to the stock backbone.

Packed batches built by TRL carry no ``segment_ids`` but ``position_ids`` restarting at 0 per sample: both
forwards derive the segment ids from them, and refuse a packed batch with neither (``packed_inputs.py``).

What was patched is kept in one place: a ``BloomPatch`` at ``backbone._bloomz_patch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.loss import target_mask
from bloomz_tune.model.packed_inputs import packed_segment_ids
from bloomz_tune.recipe import ATTENTIONS
from bloomz_tune.seam import alibi_slopes, cache_keyword, install_forward

__all__ = ["ATTENTIONS", "patch_bloom", "attention_of", "causal_lm", "enable_selected_logits"]


@dataclass
class BloomPatch:
    """What ``patch_bloom`` / ``enable_selected_logits`` changed on one model, kept on its backbone."""

    attention: str  # one of ATTENTIONS
    lm_forward: Callable  # the causal LM's forward before patching: runs when neither keyword is given
    backbone_forward: Callable  # the backbone's forward before patching: KV cache, output_attentions, "stock"


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


def _patch_of(lm) -> BloomPatch | None:
    return getattr(getattr(lm, lm.base_model_prefix, None), "_bloomz_patch", None)


# ---- segment-isolated ALiBi --------------------------------------------------------------------------------------


def segments_and_positions(attention_mask: torch.Tensor | None, segment_ids: torch.Tensor | None,
                           shape: tuple[int, int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """(segments, positions), both (batch, L): segment number per token (0 = padding) and ALiBi positions."""
    if segment_ids is not None:
        if segment_ids.shape != torch.Size(shape):
            raise BloomzTuneError(f"segment_ids has shape {tuple(segment_ids.shape)}, input_ids {tuple(shape)}")
        segments = segment_ids.to(device=device, dtype=torch.long)
    elif attention_mask is not None:
        if attention_mask.dim() != 2:
            raise BloomzTuneError(f"packed attention takes a 2D attention_mask, got {attention_mask.dim()}D")
        segments = (attention_mask.to(device) > 0).long()
    else:
        segments = torch.ones(shape, dtype=torch.long, device=device)
    valid = (segments > 0).long()
    positions = valid.cumsum(-1) - 1
    return segments, positions


def visible(segments: torch.Tensor) -> torch.Tensor:
    """(batch, L, L) bool: query q may see key k. Padding queries see only themselves, so no row is empty."""
    length = segments.shape[-1]
    idx = torch.arange(length, device=segments.device)
    causal = idx[None, :] <= idx[:, None]
    same = segments[:, :, None] == segments[:, None, :]
    real_key = (segments > 0)[:, None, :]
    diagonal = torch.eye(length, dtype=torch.bool, device=segments.device)
    return (same & causal & real_key) | diagonal


def sdpa_bias(segments: torch.Tensor, positions: torch.Tensor, slopes: torch.Tensor, dtype) -> torch.Tensor:
    """(batch, heads, L, L) additive bias: ALiBi where visible, −inf elsewhere.

    Built head by head in fp32 and stored in ``dtype``, so the only full-size tensor is the result. Pass the dtype
    attention computes in (``compute_dtype``): sdpa needs the bias in the query's dtype, and a bias in another
    dtype is cast at every layer's call, each copy kept for backward.
    """
    rel = (positions[:, None, :] - positions[:, :, None]).to(torch.float32)  # pos_k - pos_q
    hidden = ~visible(segments)
    slopes = slopes.to(rel.device).tolist()
    bias = torch.empty((rel.shape[0], len(slopes), *rel.shape[1:]), dtype=dtype, device=rel.device)
    for h, slope in enumerate(slopes):
        bias[:, h] = (rel * slope).masked_fill_(hidden, float("-inf"))
    return bias


@dataclass
class PackedMask:
    """What the backbone hands every layer in place of the stock 4D mask: built once per forward."""

    attention: str  # "sdpa" or "flex"
    bias: torch.Tensor | None = None  # sdpa: (batch, heads, L, L)
    block_mask: object = None  # flex: BlockMask
    score_mod: object = None  # flex: ALiBi score_mod


_FLEX = {}


def _compiled_flex():
    """flex_attention and create_block_mask, compiled once per process (flex attention needs torch.compile)."""
    if not _FLEX:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        _FLEX["attention"] = torch.compile(flex_attention)
        _FLEX["block_mask"] = create_block_mask
    return _FLEX["attention"], _FLEX["block_mask"]


def flex_mask(segments: torch.Tensor, positions: torch.Tensor, slopes: torch.Tensor) -> PackedMask:
    _, create_block_mask = _compiled_flex()
    batch, length = segments.shape
    slopes = slopes.to(segments.device)
    positions = positions.to(torch.int32)

    def score_mod(score, b, h, q_idx, kv_idx):
        return score + slopes[h] * (positions[b, kv_idx] - positions[b, q_idx]).to(score.dtype)

    def mask_mod(b, h, q_idx, kv_idx):
        same = segments[b, q_idx] == segments[b, kv_idx]
        return (same & (kv_idx <= q_idx) & (segments[b, kv_idx] > 0)) | (q_idx == kv_idx)

    block_mask = create_block_mask(mask_mod, batch, None, length, length, device=segments.device)
    return PackedMask("flex", block_mask=block_mask, score_mod=score_mod)


def compute_dtype(dtype: torch.dtype, device) -> torch.dtype:
    """The dtype attention runs in for activations of ``dtype`` on ``device``: autocast's when it is on."""
    device_type = torch.device(device).type
    if dtype.is_floating_point and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


def build_packed_mask(attention: str, attention_mask, segment_ids, shape, num_heads: int, dtype,
                      device) -> PackedMask:
    """The mask for one forward, every layer's: the sdpa bias is built in ``compute_dtype(dtype, device)``, so
    autocast never casts it (one copy per layer, each kept for backward) and all layers share one tensor."""
    segments, positions = segments_and_positions(attention_mask, segment_ids, shape, device)
    slopes = alibi_slopes(num_heads, device)
    if attention == "flex":
        return flex_mask(segments, positions, slopes)
    return PackedMask("sdpa", bias=sdpa_bias(segments, positions, slopes, compute_dtype(dtype, device)))


# ---- the patched forwards ----------------------------------------------------------------------------------------

def _attention_forward(self, hidden_states, residual, alibi, attention_mask, layer_past=None, use_cache=False,
                       output_attentions=False, **kwargs):
    """BloomAttention.forward for a PackedMask; anything else (generation, stock masks) runs the stock code."""
    if not isinstance(attention_mask, PackedMask):
        return type(self).forward(self, hidden_states, residual, alibi, attention_mask, layer_past=layer_past,
                                  use_cache=use_cache, output_attentions=output_attentions, **kwargs)
    batch, length, _ = hidden_states.shape
    fused_qkv = self.query_key_value(hidden_states)  # LoRA (peft) wraps this Linear; it runs here as in stock
    query, key, value = self._reshape(fused_qkv)  # (batch, heads, L, head_dim) each
    dropout = self.attention_dropout.p if self.training else 0.0
    if attention_mask.attention == "flex":
        if dropout > 0:
            raise BloomzTuneError("flex attention has no attention dropout; set attention_dropout to 0 or use sdpa")
        if query.device.type == "cpu" and torch.is_grad_enabled() and query.requires_grad:
            raise BloomzTuneError("flex attention has no backward on CPU in torch; train with sdpa there")
        flex_attention, _ = _compiled_flex()
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


def _backbone_forward(self, input_ids=None, cache=None, attention_mask=None, inputs_embeds=None,
                      use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None,
                      segment_ids=None, past_key_values=None, **kwargs):
    """BloomModel.forward building one PackedMask for all layers; no KV cache (training and scoring)."""
    from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

    patch = self._bloomz_patch
    segment_ids = packed_segment_ids(segment_ids, attention_mask, kwargs)  # TRL's packed position_ids
    cache = cache if cache is not None else past_key_values  # either name (seam.cache_keyword)
    if cache is not None or use_cache or output_attentions:
        if segment_ids is not None:
            raise BloomzTuneError("segment_ids cannot be combined with a KV cache or output_attentions")
        return patch.backbone_forward(input_ids=input_ids, **{cache_keyword(patch.backbone_forward): cache},
                                      attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                                      use_cache=use_cache, output_attentions=output_attentions,
                                      output_hidden_states=output_hidden_states, return_dict=return_dict, **kwargs)
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
    output_hidden_states = (output_hidden_states if output_hidden_states is not None
                            else self.config.output_hidden_states)
    return_dict = return_dict if return_dict is not None else self.config.return_dict
    if inputs_embeds is None:
        inputs_embeds = self.word_embeddings(input_ids)
    hidden_states = self.word_embeddings_layernorm(inputs_embeds)
    batch, length = hidden_states.shape[:2]
    mask = build_packed_mask(patch.attention, attention_mask, segment_ids, (batch, length), self.num_heads,
                             hidden_states.dtype, hidden_states.device)
    all_hidden = () if output_hidden_states else None
    for block in self.h:
        if output_hidden_states:
            all_hidden = all_hidden + (hidden_states,)
        hidden_states = block(hidden_states, alibi=None, attention_mask=mask)[0]
    hidden_states = self.ln_f(hidden_states)
    if output_hidden_states:
        all_hidden = all_hidden + (hidden_states,)
    if not return_dict:
        return tuple(v for v in (hidden_states, all_hidden) if v is not None)
    return BaseModelOutputWithPastAndCrossAttentions(last_hidden_state=hidden_states, hidden_states=all_hidden)


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


def _lm_forward(self, input_ids=None, attention_mask=None, logit_positions=None, segment_ids=None,
                target_ids=None, loss_chunk_size=None, **kwargs):
    """The causal LM's forward with ``logit_positions`` and ``segment_ids`` (see the module docstring)."""
    patch = _patch_of(self)
    segment_ids = packed_segment_ids(segment_ids, attention_mask, kwargs)  # TRL's packed position_ids
    if logit_positions is None and segment_ids is None:
        return patch.lm_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    from transformers.modeling_outputs import CausalLMOutput

    if segment_ids is not None:
        if patch.attention == "stock":
            raise BloomzTuneError("segment_ids (packed rows) need segment-isolated attention: call "
                                  "bloom.patch_bloom(model, 'sdpa' or 'flex') first")
        kwargs["segment_ids"] = segment_ids
    labels = kwargs.pop("labels", None)
    for unused in ("num_items_in_batch", "use_cache", "logits_to_keep"):
        kwargs.pop(unused, None)
    backbone = getattr(self, self.base_model_prefix)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)[0]
    head = self.get_output_embeddings()
    if logit_positions is not None:
        selected = hidden[logit_positions[:, 0], logit_positions[:, 1]]
        if target_ids is not None:
            return CausalLMOutput(loss=selected_token_losses(head, selected, target_ids, loss_chunk_size))
        return CausalLMOutput(logits=head(selected))
    logits = head(hidden)
    loss = None
    if labels is not None:  # the stock token-mean loss, over target_mask's positions (none across a boundary)
        labels = labels.to(logits.device)
        wanted = target_mask(labels, segment_ids)
        loss = F.cross_entropy(logits[:, :-1][wanted].float(), labels[:, 1:][wanted])
    return CausalLMOutput(loss=loss, logits=logits)


# ---- installing --------------------------------------------------------------------------------------------------

def enable_selected_logits(model):
    """Give the causal LM inside ``model`` the ``logit_positions`` and ``segment_ids`` keywords; returns ``model``.

    Attention stays as it is ("stock" on a model never patched, so ``segment_ids`` are refused there). Works on
    any transformers causal LM, BLOOM or not.
    """
    lm = causal_lm(model)
    if _patch_of(lm) is None:
        backbone = getattr(lm, lm.base_model_prefix)
        backbone._bloomz_patch = BloomPatch("stock", lm_forward=lm.forward, backbone_forward=backbone.forward)
        install_forward(lm, _lm_forward)
    return model


def patch_bloom(model, attention: str = "sdpa"):
    """Install ``attention`` (one of ATTENTIONS) and the keywords on the BLOOM inside ``model``; returns ``model``.

    ``model`` may be bare, peft-wrapped or DDP-wrapped. Call it again to switch attention; "stock" restores
    transformers' attention and keeps ``logit_positions`` working.
    """
    from transformers.models.bloom.modeling_bloom import BloomAttention, BloomModel

    if attention not in ATTENTIONS:
        raise BloomzTuneError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
    lm = causal_lm(model)
    backbone = getattr(lm, getattr(lm, "base_model_prefix", "transformer"), None)
    if not isinstance(backbone, BloomModel):
        raise BloomzTuneError(f"patch_bloom is written for BLOOM; got {type(lm).__name__}")
    if attention == "flex":
        if not hasattr(torch.nn.attention, "flex_attention"):
            raise BloomzTuneError(f"flex attention needs torch >= 2.5; this is torch {torch.__version__}")
        if lm.config.attention_dropout > 0:
            raise BloomzTuneError("flex attention has no attention dropout; set attention_dropout to 0 or use sdpa")
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
    """The attention running in the BLOOM inside ``model``: "sdpa", "flex" or "stock"."""
    patch = _patch_of(causal_lm(model))
    return patch.attention if patch is not None else "stock"
