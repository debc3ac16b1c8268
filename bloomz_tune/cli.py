"""The ``bloomz-tune`` command.

    bloomz-tune train RECIPE.yaml [section.key=value ...]      fine-tune (same as bloomz_tune/finetune.py)
    bloomz-tune mixture build SPEC.yaml [--output DIR]         build an xP3-style mixture (into the cache)
    bloomz-tune mixture show DIR                               print a built mixture's datasheet and samples
    bloomz-tune mixture contamination DIR --tasks xnli,xcopa   evaluation examples overlapping its training rows
    bloomz-tune eval MODEL --tasks xnli,xcopa --output DIR     zero-shot evaluation
    bloomz-tune push RUN_DIR --repo-id you/name [--merged]     push adapter (or merged model) + card to the Hub
    bloomz-tune merge RUN_DIR --output DIR                     merge a LoRA adapter into its base model
    bloomz-tune generate MODEL "prompt" [--interactive]        greedy answers from a model or adapter
    bloomz-tune estimate RECIPE.yaml [--accelerate-config F]   parameters, memory per GPU, tokens, epochs, time
"""

from __future__ import annotations

import sys

from .errors import BloomzTuneError

COMMANDS = {
    "train": ("bloomz_tune.finetune", "fine-tune BLOOM from a recipe"),
    "mixture": ("bloomz_tune.mixture", "build or inspect an xP3-style mixture"),
    "eval": ("bloomz_tune.evaluation", "zero-shot evaluation on held-out tasks"),
    "push": ("bloomz_tune.share", "push a run (adapter or merged model, tokenizer, card) to the Hub"),
    "share": ("bloomz_tune.share", "the same as push"),
    "merge": ("bloomz_tune.share:main_merge", "merge a run's LoRA adapter into its base model"),
    "generate": ("bloomz_tune.inference", "greedy generation from a model, model folder or adapter"),
    "estimate": ("bloomz_tune.estimate", "parameters, memory per GPU, tokens, epochs and time of a recipe"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from . import __version__

        print(__version__)
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    import importlib

    module_name, _, function = COMMANDS[argv[0]][0].partition(":")
    command = getattr(importlib.import_module(module_name), function or "main")
    try:
        return command(argv[1:])
    except BloomzTuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
