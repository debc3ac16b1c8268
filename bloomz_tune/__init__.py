"""bloomz_tune: reproduce BLOOMZ on public BLOOM weights.

Build an xP3-style multitask mixture, instruction-tune BLOOM with LoRA or in full, evaluate zero-shot on
held-out tasks and share the result. The command line (``bloomz-tune``) and the notebooks use the same
functions::

    from bloomz_tune import load_recipe, build_mixture, train, evaluate, merge, generate, push, estimate

    recipe = load_recipe("recipes/tiny_demo.yaml", ["output_dir=/tmp/demo"])
    built = build_mixture(recipe.data.mixture, cache=recipe.data.mixture_cache)   # or let train() do it
    recipe.training.max_steps = 200                                            # a Recipe is editable
    results = train(recipe)                                                    # the whole run
    scores = evaluate("/tmp/demo/final", tasks=["xcopa"], data_dirs={"xcopa": "path/to/xcopa"})
    merged = merge("/tmp/demo", "/tmp/demo-merged")                            # base + adapter, safetensors
    print(generate(merged, "Translate to French: the red house"))              # greedy, as BLOOMZ prompts
    plan = push("/tmp/demo", "you/demo", dry_run=True)                         # the card and files, no upload

Every ``bloomz-tune`` command is one of these functions behind an argument parser (``bloomz_tune/cli.py``).
Importing the package is light: each function imports its stage (and so torch and the libraries) when called;
this facade is the one module whose imports of our own stages are inside functions, for that reason.
"""

from __future__ import annotations

from pathlib import Path

from bloomz_tune.errors import BloomzTuneError, ConfigError
from bloomz_tune.recipe import DataSection, EvalSection, Recipe, load_recipe, recipe_from_dict
from bloomz_tune.version import __version__

__all__ = ["__version__", "Recipe", "load_recipe", "recipe_from_dict", "build_mixture", "show_mixture",
           "check_mixture", "check_contamination", "check_tasks", "train", "estimate", "evaluate",
           "plan_evaluation", "merge",
           "generate", "push", "patch_bloom", "use_bloomz_loss", "packed_collator", "BloomzTuneError",
           "ConfigError"]


def train(recipe: Recipe) -> dict:
    """Run a recipe end to end (mixture, model, training, checks, model card); returns eval/results.json."""
    from bloomz_tune.finetune import run

    return run(recipe)


def estimate(recipe: Recipe, accelerate_config: str | Path | None = None, gpus: int | None = None,
             gpu: str = "h100", mfu: float = 0.4) -> dict:
    """Parameters, memory per GPU, tokens, steps, epochs and hours of a recipe, from the model's config alone (no
    weights): what ``bloomz-tune estimate`` prints, as a dict (bytes, tokens, steps, seconds)."""
    from bloomz_tune.training.estimate import estimate as estimate_recipe

    return estimate_recipe(recipe, accelerate_config, gpus, gpu, mfu)


def build_mixture(spec, output_dir: str | Path | None = None, cache: str | Path = DataSection.mixture_cache,
                  num_proc: int = 1, tokenizer=None, overwrite: bool = False) -> Path:
    """Build a mixture spec (a path or a MixtureSpec), or reuse its finished build; return the build folder.

    Without ``output_dir`` the build goes to (or is reused from) ``cache``, where training looks for it; with
    ``output_dir`` it goes there and is registered in ``cache``, so training reuses it too. ``tokenizer`` (a
    tokenizer, Hub id or folder; default the spec's ``tokenizer``) adds its token counts beside the build.
    """
    from bloomz_tune.tokens.counts import build_and_count

    return build_and_count(spec, output_dir, cache, num_proc=num_proc, tokenizer=tokenizer, overwrite=overwrite)


def show_mixture(built_dir: str | Path, samples_per_task: int = 2) -> str:
    """A finished build's datasheet and a few rendered samples per task cluster, as Markdown text."""
    from bloomz_tune.mixture.builds import show_mixture as show

    return show(built_dir, samples_per_task)


def check_mixture(spec: str | Path, online: bool = False, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Will every source of a mixture spec load? The spec is validated (ConfigError listing every problem); with
    ``online`` each Hub source's repository is asked (configs, splits; no data downloaded). Returns the rows (source,
    what it reads, status, detail, fix), the number that would fail, and the table as Markdown."""
    from bloomz_tune.mixture.check import check_mixture as check

    return check(spec, online, overrides)


def check_tasks(tasks=None, languages=None, data_dirs: dict | None = None, data_revisions: dict | None = None,
                online: bool = False) -> dict:
    """Will every evaluation dataset ``evaluate`` would read load? Rows per task (what it reads, status, detail,
    fix), the number that would fail, and the table as Markdown; ``online`` asks the Hub."""
    from bloomz_tune.tasks.check import check_tasks as check

    return check(tasks, languages, data_dirs, data_revisions, online)


def check_contamination(built_dir: str | Path, tasks=None, languages=None, data_dirs: dict | None = None, *,
                        split: str | None = None, ngram: int | None = None, num_proc: int = 1) -> dict:
    """Evaluation examples sharing an n-gram with the build's training rows (docs/contamination.md).

    Writes the report into the build's datasheet (json and md) and returns it, with its Markdown table under
    ``"markdown"``.
    """
    from bloomz_tune.mixture.contamination import NGRAM, contamination_report, write_report
    from bloomz_tune.mixture.datasheet import contamination_markdown

    report = contamination_report(built_dir, tasks, languages, data_dirs, split, ngram or NGRAM, num_proc)
    write_report(built_dir, report)
    return {**report, "markdown": contamination_markdown(report)}


def evaluate(model, tasks=None, languages=None, *, tokenizer=None, output_dir=None,
             limit: int | None = EvalSection.limit, prompts: int = EvalSection.prompts,
             batch_size: int = EvalSection.batch_size, max_length: int = EvalSection.max_length,
             data_dirs: dict | None = None, length_normalize: bool = EvalSection.length_normalize,
             generation: bool = EvalSection.generation, dtype: str = "auto", device: str | None = None,
             revision: str | None = None, trust_remote_code: bool = False, model_name: str | None = None,
             data_revisions: dict | None = None, device_map: str | dict | None = None,
             max_memory: dict | None = None, offload_folder: str | None = None) -> dict:
    """Zero-shot rank classification on held-out tasks, scored as BLOOMZ was.

    ``model``: a Hub id, a model folder or a LoRA adapter folder (loaded with its tokenizer; ``dtype``,
    ``device``, ``revision``, ``trust_remote_code`` apply), or a loaded model together with ``tokenizer``.
    ``data_revisions`` ({task: revision}) reads a task's Hub dataset at another revision than the table's. The
    options mean what the recipe's ``eval`` keys of the same names mean. Every task's data is loaded and checked
    before the model. Writes results.json/.md and accuracy.png when ``output_dir`` is given; returns the results.
    ``device_map`` ("auto", with ``max_memory`` {device: size} and ``offload_folder``) splits a model too large for
    one device over GPUs, CPU memory and disk (accelerate). Under ``torchrun``/``accelerate launch`` each process
    scores its share of the requests and rank 0 writes the results (bloomz_tune/evaluation/parallel.py).
    """
    from bloomz_tune.evaluation.parallel import start_processes
    from bloomz_tune.evaluation.scoring import evaluate_model, prepare_tasks
    from bloomz_tune.model.loading import load_for_eval

    if not isinstance(model, (str, Path)) and tokenizer is None:
        raise BloomzTuneError("evaluate: a loaded model needs its tokenizer (tokenizer=...)")
    # bad task data fails before the model loads
    prepared = prepare_tasks(tasks, languages, limit, prompts, data_dirs, data_revisions)
    if isinstance(model, (str, Path)):
        model_name = model_name or str(model)
        device = device if device_map else start_processes(device)
        model, tokenizer = load_for_eval(str(model), dtype, device, revision, trust_remote_code, device_map,
                                         max_memory, offload_folder)
    return evaluate_model(model, tokenizer, tasks, languages, limit=limit, prompts=prompts, batch_size=batch_size,
                          output_dir=output_dir, data_dirs=data_dirs, length_normalize=length_normalize,
                          max_length=max_length, generation=generation, model_name=model_name, prepared=prepared)


def patch_bloom(model, attention: str = "sdpa"):
    """Segment-isolated attention and logits at chosen positions on the BLOOM inside ``model`` (bare, peft or DDP
    wrapped), in place; returns ``model``. Packed rows, ours (``segment_ids``) or TRL's (``position_ids`` restarting
    at 0), then keep their samples apart. With TRL, call it before building the SFTTrainer."""
    from bloomz_tune.model.bloom import patch_bloom as patch

    return patch(model, attention)


def use_bloomz_loss(trainer, loss_type: str = "sample_mean"):
    """Train ``trainer`` (TRL's SFTTrainer or transformers' Trainer) on BLOOMZ's loss, per-sample normalised
    (``sample_mean``) or ``token_mean``; returns ``trainer``. See ``bloomz_tune/training/trl_support.py``."""
    from bloomz_tune.training.trl_support import use_bloomz_loss as use

    return use(trainer, loss_type)


def packed_collator(pad_token_id: int, max_length: int = 2048, pad_to_multiple_of: int | None = 8):
    """A data collator packing each batch's tokenized samples (``input_ids``, ``labels``) into rows of
    ``max_length`` with segment ids, for ``SFTTrainer(data_collator=...)`` on a patched BLOOM."""
    from bloomz_tune.training.trl_support import PackedCollator

    return PackedCollator(pad_token_id, max_length, pad_to_multiple_of)


def plan_evaluation(model: str | Path, dtype: str = "auto", device: str | None = None, device_map: str | None = None,
                    max_memory: dict | None = None, batch_size: int = EvalSection.batch_size,
                    max_length: int = EvalSection.max_length, revision: str | None = None) -> dict:
    """Memory per device and the device map an evaluation of ``model`` would use, from its config alone (no weights
    loaded): ``bloomz-tune eval MODEL --dry-run``. Returns {"devices": {device: bytes}, "device_map", "fits", ...}."""
    from bloomz_tune.evaluation.plan import plan_evaluation as plan

    return plan(str(model), dtype, device, device_map, max_memory, batch_size, max_length, revision)


def merge(run_dir: str | Path, output: str | Path, dtype: str = "auto") -> Path:
    """Merge a LoRA run's adapter into its base model; ``output`` gets safetensors, tokenizer and model card."""
    from bloomz_tune.hub.share import merge as merge_run

    return merge_run(run_dir, output, dtype)


def load_model_for_generation(model: str | Path, dtype: str = "auto", device: str | None = None):
    """(model, tokenizer) from a Hub id, a model folder or a LoRA adapter folder, ready for ``generate``."""
    from bloomz_tune.model.loading import load_for_eval

    return load_for_eval(str(model), dtype=dtype, device=device)


def generate(model, prompt, max_new_tokens: int = 64, *, tokenizer=None, dtype: str = "auto", device=None):
    """Greedy answer to ``prompt`` (a list of prompts gives a list): ``model`` is a Hub id, a model folder, a LoRA
    adapter folder, or a loaded model together with ``tokenizer``."""
    from bloomz_tune.evaluation.generation import generate as generate_text

    return generate_text(model, prompt, max_new_tokens, tokenizer=tokenizer, dtype=dtype, device=device)


def push(run_dir: str | Path, repo_id: str, private: bool = True, merged: bool = False,
         dry_run: bool = False) -> dict:
    """Push a finished run (adapter, or merged model with ``merged``, tokenizer, recipe, datasheet, card) to the
    Hub; ``dry_run`` checks and returns the card and file list without uploading. Returns {repo_id, url, files,
    card}; the run directory is never written."""
    from bloomz_tune.hub.share import push as push_run

    return push_run(run_dir, repo_id, private=private, merged=merged, dry_run=dry_run)
