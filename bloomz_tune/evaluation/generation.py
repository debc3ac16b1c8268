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


def generate(model, prompt: str | list[str], max_new_tokens: int = 64, *, tokenizer=None, dtype: str = "auto",
             device: str | None = None) -> str | list[str]:
    """Greedy answer(s) to ``prompt`` (a string, or a list of strings for a list of answers).

    ``model``: a Hub id, a model folder, a LoRA adapter folder, or a loaded model together with ``tokenizer``.
    """

    if max_new_tokens < 1:
        raise BloomzTuneError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    model, tokenizer = _loaded(model, tokenizer, dtype, device)
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    answers = [s["output"] for s in generate_samples(model, tokenizer, prompts, max_new_tokens=max_new_tokens)]
    return answers[0] if isinstance(prompt, str) else answers


def _loaded(model, tokenizer, dtype: str, device: str | None):
    if isinstance(model, (str, Path)):
        return load_for_eval(str(model), dtype=dtype, device=device)
    if tokenizer is None:
        raise BloomzTuneError("generate: a loaded model needs its tokenizer (tokenizer=...)")
    return model, tokenizer
