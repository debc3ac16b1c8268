"""Ask a model a question: greedy generation from a Hub id, a model folder or a LoRA adapter folder.

    bloomz-tune generate bigscience/bloomz-560m "Translate to English: Je t'aime."
    bloomz-tune generate runs/lora_560m/final "Review: great phone. Is this review positive or negative?"
    bloomz-tune generate runs/lora_560m/merged --interactive

Prompts are used as BLOOMZ was trained: the prompt as it is (no special tokens added), the answer generated
after it until EOS or ``--max-new-tokens``. Decoding is greedy (the paper's examples), so an answer is
reproducible.
"""

from __future__ import annotations

from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation.scoring import generate_samples
from bloomz_tune.model.loading import load_for_eval

# BLOOM was trained on sequences of 2,048 tokens; an answer longer than that is past what the model has seen, and an
# unbounded request (a typo of 10**9) would run for days.
MAX_NEW_TOKENS = 2048


def generate(model, prompt: str | list[str], max_new_tokens: int = 64, *, tokenizer=None, dtype: str = "auto",
             device: str | None = None) -> str | list[str]:
    """Greedy answer(s) to ``prompt`` (a string, or a list of strings for a list of answers).

    ``model``: a Hub id, a model folder, a LoRA adapter folder, or a loaded model together with ``tokenizer``.
    """

    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise BloomzTuneError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS:,} (BLOOM's training length), "
                              f"got {max_new_tokens:,}")
    named = model if isinstance(model, (str, Path)) else None
    model, tokenizer = _loaded(model, tokenizer, dtype, device)
    bad = first_nonfinite(model.named_parameters())
    if bad:
        raise BloomzTuneError(f"{named or 'the model'}: weight {bad} holds NaN or infinite values (a training run that "
                              f"diverged?); it cannot generate anything meaningful")
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    answers = [s["output"] for s in generate_samples(model, tokenizer, prompts, max_new_tokens=max_new_tokens)]
    return answers[0] if isinstance(prompt, str) else answers


def _loaded(model, tokenizer, dtype: str, device: str | None):
    if isinstance(model, (str, Path)):
        return load_for_eval(str(model), dtype=dtype, device=device)
    if tokenizer is None:
        raise BloomzTuneError("generate: a loaded model needs its tokenizer (tokenizer=...)")
    return model, tokenizer


def first_nonfinite(named_tensors) -> str | None:
    """The name of the first floating-point tensor of ``(name, tensor)`` pairs holding a NaN or an infinity."""
    import torch

    for name, tensor in named_tensors:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            return name
    return None
