"""Tiny BLOOM models and tokenizers made on the spot, for the offline demo and the tests.

Both are saved with ``save_pretrained`` and then loaded back through the same ``from_pretrained`` code path
that loads ``bigscience/bloom-560m`` from the Hub or a local folder, so the demo exercises the real loader.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

# BLOOM's special tokens, in BLOOM's order (ids 0..3).
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def build_tiny_tokenizer(texts: Iterable[str], vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer shaped like BLOOM's (same special tokens, no prefix space).

    Byte-level with the full byte alphabet: any text, Chinese included, can be encoded.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side="left",
    )


def tiny_config(tiny):
    """The BloomConfig of a recipe's ``model.tiny`` section (its shape only; no weights)."""
    from transformers import BloomConfig

    return BloomConfig(vocab_size=tiny.vocab_size, hidden_size=tiny.hidden_size, n_layer=tiny.n_layer,
                       n_head=tiny.n_head)


def build_tiny_bloom(tokenizer, seed: int = 0, embedding_std: float = 0.1, **config_overrides):
    """A randomly initialised BloomForCausalLM with a tiny shape; ``config_overrides`` are BloomConfig fields.

    The (tied) embedding is drawn with a larger spread than BLOOM's 0.02: a tiny hidden size times 0.02 caps
    every logit near 2.5, so a frozen tiny model under LoRA could never put much probability on any token.
    """
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    fields = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        n_layer=2,
        n_head=4,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    fields.update(config_overrides)
    torch.manual_seed(seed)
    model = BloomForCausalLM(BloomConfig(**fields))
    with torch.no_grad():
        model.get_input_embeddings().weight.normal_(0.0, embedding_std)
    return model


def save_tiny_bloom(directory: str | Path, texts: Iterable[str], vocab_size: int = 1024, seed: int = 0,
                    **config_overrides) -> Path:
    """Build a tokenizer from ``texts`` and a tiny BLOOM for it, save both (safetensors) to ``directory``."""
    directory = Path(directory)
    tokenizer = build_tiny_tokenizer(texts, vocab_size=vocab_size)
    model = build_tiny_bloom(tokenizer, seed=seed, **config_overrides)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory
