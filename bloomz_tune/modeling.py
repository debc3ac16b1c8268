"""Load BLOOM (Hub id or local folder, safetensors only), add LoRA, and run the LM head only where needed.

BLOOM's 250,880-row output head is almost half of bloom-560m. Training needs logits only at positions whose
next token is a target, and rank scoring only at continuation positions, so ``enable_selected_logits`` gives
the model's ``forward`` an extra keyword, ``logit_positions``: an (N, 2) tensor of (row, position) pairs. With
it, the forward runs the backbone, gathers those N hidden states and applies the head to them alone, returning
logits of shape (N, vocab). The same forward takes ``segment_ids`` (packed rows, see packing.py) and hands them
to the backbone, which needs ``attention.install_packed_attention`` to honour them (an error otherwise). The
call still goes through the model's own ``forward`` (so DDP, FSDP, DeepSpeed and peft wrappers see a normal
forward); without either keyword the stock forward runs unchanged.
"""

from __future__ import annotations

import types
from pathlib import Path

import torch

from .errors import BloomzTuneError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_dtype(name: str) -> torch.dtype | str:
    """'auto' keeps the checkpoint's dtype; 'bf16-if-supported' picks bfloat16 on a GPU that has it, else fp32."""
    if name == "auto":
        return "auto"
    if name == "bf16-if-supported":
        return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32
    try:
        return DTYPES[name]
    except KeyError:
        raise BloomzTuneError(f"unknown dtype {name!r}; choose one of auto, bf16-if-supported, {', '.join(DTYPES)}")


def load_tokenizer(name_or_path: str, revision: str | None = None, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise BloomzTuneError(f"cannot load a tokenizer from {name_or_path!r}: {err}") from err


def load_model(name_or_path: str, dtype: str = "auto", revision: str | None = None,
               trust_remote_code: bool = False, **config_overrides):
    """A causal LM from the Hub or a local folder. Weights are read as safetensors only.

    ``config_overrides`` replace config values (e.g. ``hidden_dropout=0.1``); None values are ignored.
    """
    from transformers import AutoModelForCausalLM

    kwargs = dict(dtype=resolve_dtype(dtype), revision=revision, trust_remote_code=trust_remote_code,
                  use_safetensors=True)
    kwargs.update({k: v for k, v in config_overrides.items() if v is not None})
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except OSError as err:
        hint = "" if Path(name_or_path).exists() else " (not a local folder; is it a Hub id you can reach?)"
        raise BloomzTuneError(f"cannot load a model from {name_or_path!r}{hint}: {err}") from err
    return model


def apply_lora(model, r: int, lora_alpha: int, lora_dropout: float, target_modules: list[str],
               bias: str = "none", modules_to_save: list[str] | None = None):
    """Wrap ``model`` in a peft LoRA model; only the adapter weights (and ``modules_to_save``) stay trainable."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=list(target_modules),
                        bias=bias, modules_to_save=list(modules_to_save or []) or None, task_type="CAUSAL_LM")
    return get_peft_model(model, config)


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


def _selected_logits_forward(self, input_ids=None, attention_mask=None, logit_positions=None, segment_ids=None,
                             **kwargs):
    if logit_positions is None and segment_ids is None:
        return self._bloomz_stock_forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    from transformers.modeling_outputs import CausalLMOutput

    backbone = getattr(self, self.base_model_prefix)
    if segment_ids is not None:
        if getattr(backbone, "_bloomz_attn_impl", "eager") == "eager":
            raise BloomzTuneError("segment_ids (packed rows) need segment-isolated attention: call "
                                  "attention.install_packed_attention(model, 'sdpa' or 'flex') first")
        kwargs["segment_ids"] = segment_ids
    labels = kwargs.pop("labels", None)
    for unused in ("num_items_in_batch", "use_cache", "logits_to_keep"):
        kwargs.pop(unused, None)
    hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False, **kwargs)[0]
    if logit_positions is not None:
        hidden = hidden[logit_positions[:, 0], logit_positions[:, 1]]
        return CausalLMOutput(logits=self.get_output_embeddings()(hidden))
    logits = self.get_output_embeddings()(hidden)
    loss = None
    if labels is not None:  # the stock token-mean loss, with no prediction across a segment boundary
        labels = labels.masked_fill(torch.nn.functional.pad(segment_ids[:, 1:] != segment_ids[:, :-1], (1, 0)),
                                    -100)
        loss = self.loss_function(logits, labels, vocab_size=self.config.vocab_size)
    return CausalLMOutput(loss=loss, logits=logits)


def enable_selected_logits(model):
    """Teach the causal LM inside ``model`` the ``logit_positions`` keyword (see the module docstring)."""
    lm = causal_lm(model)
    if not hasattr(lm, "_bloomz_stock_forward"):
        lm._bloomz_stock_forward = lm.forward
        lm.forward = types.MethodType(_selected_logits_forward, lm)
    return model
