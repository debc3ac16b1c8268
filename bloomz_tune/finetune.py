"""Instruction-tune BLOOM on an xP3-style mixture, BLOOMZ style.

Run it (the recipe path first, then any ``section.key=value`` overrides; ``--help`` lists every key):

    accelerate launch bloomz_tune/finetune.py recipes/lora_560m.yaml
    python bloomz_tune/finetune.py recipes/tiny_demo.yaml output_dir=/tmp/run1 training.max_steps=20
    bloomz-tune train recipes/tiny_demo.yaml

Multi-GPU: add ``--config_file recipes/accelerate/<ddp|fsdp|deepspeed_zero3>.yaml`` to accelerate launch.
From Python: ``bloomz_tune.train(recipe)`` with a Recipe from ``bloomz_tune.load_recipe``.

The run directory (``output_dir``) receives: .bloomz_tune.lock while a run holds it, recipe.resolved.yaml,
datasheet.json (the mixture's, with token counts for the model's tokenizer), run.json (global batch, tokens,
steps, epochs), metrics.jsonl, checkpoints/, final/ (adapter or full model + tokenizer,
safetensors, model card), eval/results.json (+ eval/zero_shot/ when the recipe names tasks) and loss.png.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run by path: put the repository root first on sys.path instead of this folder, so that our modules never
    # shadow a library (and `import bloomz_tune` works without installing).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bloomz_tune.charts import plot_loss
from bloomz_tune.errors import BloomzTuneError, exit_code  # noqa: E402
from bloomz_tune.evaluation.scoring import evaluate_model, prepare_tasks, sanity_accuracy, sanity_set
from bloomz_tune.hub.share import check_target, push, write_model_card
from bloomz_tune.logs import setup_logging
from bloomz_tune.mixture.builds import load_built_mixture, prepare_mixture
from bloomz_tune.model.bloom import patch_bloom
from bloomz_tune.model.loading import apply_lora, load_model, load_tokenizer
from bloomz_tune.model.tiny import save_tiny_bloom
from bloomz_tune.recipe import Recipe, check_recipe, parse_train_argv, save_recipe  # noqa: E402
from bloomz_tune.runtime import is_main_process, print0
from bloomz_tune.schema import dump_yaml
from bloomz_tune.storage import write_json
from bloomz_tune.tokens.batches import PaddingCollator
from bloomz_tune.tokens.cache import tokenized_split
from bloomz_tune.tokens.counts import datasheet_for
from bloomz_tune.tokens.packing import PackedCollator, pack_dataset
from bloomz_tune.training.budget import plan_run  # noqa: E402
from bloomz_tune.training.preflight import check_training_inputs
from bloomz_tune.training.rundir import (
    RunDir,
    check_fresh_start,
    checkpoint_step,
    claim,
    clear_for_overwrite,
    remove_incomplete,
    resolve_resume,
    trim_metrics,
)
from bloomz_tune.training.trackers import RecipeConfigCallback, check_trackers
from bloomz_tune.training.trainer import AtTrainBegin, BloomzTrainer, MetricsFileCallback, training_arguments


def main(argv: list[str] | None = None) -> int:
    """Load the recipe named on the command line (plus overrides) and run it; 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return exit_code(_train, argv)


def _train(argv: list[str]) -> int:
    recipe = parse_train_argv(argv, prog="bloomz-tune train", doc=__doc__)
    if recipe is not None:
        run(recipe)
    return 0


def run(recipe: Recipe) -> dict:
    """The whole run, in training order. Returns the results written to eval/results.json.

    Nothing is written until the recipe, the places the run writes to, the model and the evaluation data are
    checked; then the run directory is claimed (one run at a time) and the mixture is built or reused.
    """
    # ---- checks, cheap ones first; nothing is written yet --------------------------------------------------

    recipe = check_recipe(recipe)
    setup_logging()
    state = join_process_group()
    check_training_inputs(recipe)
    check_integrations(recipe)
    zero_shot_data = None
    if recipe.eval.tasks:
        e = recipe.eval
        zero_shot_data = prepare_tasks(e.tasks, e.languages or None, e.limit, e.prompts, e.data_dirs,
                                       e.data_revisions)
    run_dir = Path(recipe.output_dir).expanduser()
    checkpoint = resolve_resume(run_dir, recipe.training.resume_from_checkpoint, say=print0)
    check_fresh_start(run_dir, recipe.training.resume_from_checkpoint, checkpoint, recipe.overwrite_output_dir)
    state.wait_for_everyone()  # every process has checked the run directory before rank 0 starts writing to it

    # ---- the run directory: claimed, then written ------------------------------------------------------------
    lock = claim(run_dir, say=print0) if is_main_process() else None
    try:
        start_run_dir(recipe, run_dir, checkpoint)
        return train_and_check(recipe, run_dir, checkpoint, zero_shot_data)
    finally:
        if lock is not None:
            lock.release()


def join_process_group():
    """accelerate's process state, set up before anything asks for it: on the CPU when ACCELERATE_USE_CPU says so.

    The first ``PartialState()`` of a process fixes its state until the Trainer sets up its own, and a bare one on
    a machine without a GPU ignores torchrun's processes (only the Trainer and the Accelerator read
    ACCELERATE_USE_CPU): the mixture build would not wait for rank 0 and run.json would count one process.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def start_run_dir(recipe: Recipe, run_dir: Path, checkpoint: Path | None) -> None:
    """Clear an overwritten run, drop unusable checkpoints and log lines past the resumed step; save the recipe."""
    from transformers import set_seed

    set_seed(recipe.training.seed)
    if is_main_process():
        metrics = RunDir(run_dir).metrics
        if checkpoint is None and recipe.overwrite_output_dir:
            clear_for_overwrite(run_dir, say=print0)
        remove_incomplete(run_dir, say=print0)
        if checkpoint is None:
            metrics.unlink(missing_ok=True)  # a fresh run starts a fresh log
        else:
            trim_metrics(metrics, checkpoint_step(checkpoint))
        save_recipe(recipe, RunDir(run_dir).recipe)
    print0(f"recipe {recipe.source or '(built in code)'} -> run directory {run_dir}\n" + dump_yaml(recipe).rstrip())


def train_and_check(recipe: Recipe, run_dir: Path, checkpoint: Path | None, zero_shot_data) -> dict:
    """Data, model, sanity check, training, final weights, evaluation, card (see ``run``)."""
    # ---- data, tokenizer, model -------------------------------------------------------------------------------

    mixture, tokenizer, built = load_mixture(recipe)
    # The Trainer's arguments come before the model: under accelerate's DeepSpeed ZeRO-3 with zero3_init_flag they
    # register the DeepSpeed config, so that from_pretrained builds each process's shard of the weights instead of
    # the whole model in every process (bloom-176b: 352 GB of bf16 per process).
    args = training_arguments(recipe, RunDir(run_dir).checkpoints)
    model, tokenizer = load_model_for_training(recipe, mixture, tokenizer, run_dir)
    train_set, collator, counts = training_rows(recipe, built, mixture["train"], tokenizer, run_dir)
    plan_run(recipe, train_set, run_dir)  # global batch, tokens, epochs: printed, checked, run.json

    # ---- sanity check before training ---------------------------------------------------------------------------

    sanity_examples = sanity_set(mixture["validation"], recipe.eval.sanity_examples) if recipe.eval.sanity else []
    results: dict = {"sanity": {"examples": len(sanity_examples)}, "tokenization": counts}

    def check_before(model) -> None:
        results["sanity"]["before"] = sanity_accuracy(model, tokenizer, sanity_examples, recipe.eval.batch_size,
                                                      recipe.data.max_length)
        print0(f"sanity rank-classification accuracy before training: {results['sanity']['before']:.3f} "
               f"on {len(sanity_examples)} held-out rows")

    callbacks = []
    if sanity_examples and loaded_sharded():  # each process holds a shard until DeepSpeed's engine gathers them
        if checkpoint is None:
            callbacks.append(AtTrainBegin(check_before))
        else:
            print0("sanity check before training skipped: under ZeRO-3 it runs once the engine holds the weights, "
                   "which on a resumed run are the checkpoint's")
    elif sanity_examples:
        check_before(model)

    # ---- train and save ---------------------------------------------------------------------------------------
    trainer = train_model(recipe, model, tokenizer, train_set, collator, run_dir, checkpoint, args, callbacks)
    final_dir = save_final(trainer, tokenizer, run_dir)
    print0(f"saved {'adapter' if recipe.lora.enabled else 'model'} to {final_dir}")

    # ---- evaluate -----------------------------------------------------------------------------------------------
    model = trainer.model
    model.eval()
    if sanity_examples:
        results["sanity"]["after"] = sanity_accuracy(model, tokenizer, sanity_examples, recipe.eval.batch_size,
                                                     recipe.data.max_length)
        before = results["sanity"].get("before")
        print0(f"sanity rank-classification accuracy: before {'-' if before is None else f'{before:.3f}'} -> "
               f"after {results['sanity']['after']:.3f}")
    if zero_shot_data is not None:
        results["zero_shot"] = zero_shot(recipe, model, tokenizer, zero_shot_data, run_dir)
    finish_run_dir(recipe, run_dir, results)
    print0(f"done: {run_dir}")
    return results


def loaded_sharded() -> bool:
    """Whether from_pretrained builds the model sharded (accelerate's DeepSpeed ZeRO-3 with zero3_init_flag)."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


def load_mixture(recipe: Recipe):
    """The mixture (built, or reused from the cache), for a real model its tokenizer, and the build's folder.

    (A tiny demo model's tokenizer is trained on the mixture, so it comes later. The datasheet's token counts
    for the model's tokenizer come from the training tokenization: ``training_rows``.)
    """
    from accelerate import PartialState

    tokenizer = None
    if recipe.model.tiny is None:
        tokenizer = load_tokenizer(recipe.model.name_or_path, recipe.model.revision, recipe.model.trust_remote_code)
    with PartialState().main_process_first():  # rank 0 builds (or finds) the mixture; the others then reuse it
        built = prepare_mixture(recipe.data.mixture, Path(recipe.data.mixture_cache).expanduser(),
                                num_proc=recipe.data.num_proc or 1)
    mixture = load_built_mixture(built)
    print0(f"mixture {built}: {len(mixture['train']):,} train rows, {len(mixture['validation']):,} validation rows")
    return mixture, tokenizer, built


def write_datasheet(run_dir: Path, built: Path, tokenizer, num_proc: int, counted: dict | None = None) -> None:
    """The mixture's datasheet, with token counts for the model's tokenizer, as run_dir/datasheet.json (rank 0);
    ``counted`` holds per-row token counts of splits already tokenized (see ``datasheet_for``)."""

    if is_main_process():
        sheet = datasheet_for(built, tokenizer, num_proc, counted)
        write_json(RunDir(run_dir).datasheet, sheet)


def load_model_for_training(recipe: Recipe, mixture, tokenizer, run_dir: Path):
    """The base model (a tiny one built for the demo, or a Hub id / folder), LoRA if asked, our BLOOM attention."""

    m = recipe.model
    model_path = m.name_or_path
    if m.tiny is not None:
        model_path = str(build_tiny_base(m.tiny, mixture["train"], run_dir / "base_model"))
        tokenizer = load_tokenizer(model_path)
    model = load_model(model_path, m.dtype, m.revision, m.trust_remote_code, hidden_dropout=m.hidden_dropout,
                       attention_dropout=m.attention_dropout)
    model = adapt_model(recipe, model)
    # (a ZeRO-3 shard's parameter holds its whole size in ds_numel)
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters() if p.requires_grad)
    total = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    print0(f"model {model_path}: {total:,} parameters, {trainable:,} trainable "
           f"({'LoRA' if recipe.lora.enabled else 'full fine-tuning'})"
           + (", loaded as ZeRO-3 shards (each process holds its part)" if loaded_sharded() else ""))
    return model, tokenizer


def adapt_model(recipe: Recipe, model):
    """LoRA if the recipe asks for it, then the recipe's BLOOM attention; returns the model to train."""

    if recipe.lora.enabled:
        lora = recipe.lora
        model = apply_lora(model, lora.r, lora.lora_alpha, lora.lora_dropout, lora.target_modules, lora.bias,
                           lora.modules_to_save)
    return patch_bloom(model, attention=recipe.model.attention)


def training_rows(recipe: Recipe, built: Path, rows, tokenizer, run_dir: Path):
    """Tokenized (and, if asked, packed) training rows, their collator, and the tokenization counts.

    The tokenized split is kept beside the build (``tokenization.tokenized_split``, keyed by tokenizer,
    max_length and overlong): rank 0 tokenizes, or reuses an earlier run's; the other ranks then read it. The
    same pass gives the datasheet's token counts (``write_datasheet``), so a run tokenizes once.
    """
    from accelerate import PartialState

    d = recipe.data
    with PartialState().main_process_first():
        done = tokenized_split(built, rows, "train", tokenizer, d.max_length, d.overlong, d.num_proc)
    counted = {"train": (done.input_tokens, done.target_tokens)} if done.input_tokens is not None else None
    write_datasheet(run_dir, built, tokenizer, d.num_proc or 1, counted)
    train_set, counts = done.dataset, done.counts
    print0("tokenized train samples: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if len(train_set) == 0:
        raise BloomzTuneError(f"no training rows left after tokenization ({counts}); raise data.max_length?")
    train_set, collator = batches_of(recipe, train_set, tokenizer.pad_token_id)
    return train_set, collator, counts


def batches_of(recipe: Recipe, train_set, pad_token_id: int):
    """Tokenized rows -> (the rows the Trainer draws from, their collator): packed when the recipe packs."""

    d = recipe.data
    if not d.packing:
        return train_set, PaddingCollator(pad_token_id)
    train_set, packing_stats = pack_dataset(train_set, d.max_length, d.packing_strategy)
    print0(f"packed: {packing_stats}")
    static = d.max_length if recipe.model.attention == "flex" else None  # flex compiles for one shape
    return train_set, PackedCollator(pad_token_id, max_length=static)


def train_model(recipe: Recipe, model, tokenizer, train_set, collator, run_dir: Path, checkpoint: Path | None,
                args=None, callbacks=()):
    """Train with BloomzTrainer (BLOOMZ's loss, targets-only logits, the throughput log); returns the trainer."""
    trainer = build_trainer(recipe, model, tokenizer, train_set, collator, run_dir, args)
    for callback in callbacks:
        trainer.add_callback(callback)
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
    return trainer


def build_trainer(recipe: Recipe, model, tokenizer, train_set, collator, run_dir: Path, args=None):
    """The BloomzTrainer a run trains with: the recipe's arguments (``args``: made here when not given),
    metrics.jsonl, the recipe's trackers."""

    args = args if args is not None else training_arguments(recipe, RunDir(run_dir).checkpoints)
    trainer = BloomzTrainer(model=model, args=args, train_dataset=train_set, data_collator=collator,
                            processing_class=tokenizer, loss_type=recipe.training.loss_type,
                            loss_chunk_size=recipe.training.loss_chunk_size)
    trainer.add_callback(MetricsFileCallback(RunDir(run_dir).metrics))
    if recipe.training.report_to:
        trainer.add_callback(RecipeConfigCallback(trainer, dump_yaml(recipe)))
    return trainer


def save_final(trainer, tokenizer, run_dir: Path) -> Path:
    """The adapter (or model) and tokenizer, safetensors, into final/: written beside it, then renamed into place,
    so final/ is always whole (a save cut short leaves the earlier final/ as it was)."""
    import shutil

    final, incoming, old = RunDir(run_dir).final, RunDir(run_dir).final_incoming, RunDir(run_dir).final_old
    if is_main_process():
        shutil.rmtree(incoming, ignore_errors=True)
    trainer.save_model(str(incoming))  # every process takes part (FSDP, DeepSpeed gather the weights)
    if is_main_process():
        tokenizer.save_pretrained(incoming)
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(incoming, final)
        shutil.rmtree(old, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return final


def zero_shot(recipe: Recipe, model, tokenizer, prepared: dict, run_dir: Path) -> dict:
    """The recipe's zero-shot tasks on the trained model; full results go to eval/zero_shot/."""

    e = recipe.eval
    results = evaluate_model(model, tokenizer, e.tasks, e.languages or None, e.limit, e.prompts, e.batch_size,
                             output_dir=RunDir(run_dir).zero_shot, data_dirs=e.data_dirs,
                             max_length=recipe.data.max_length, model_name=str(RunDir(run_dir).final), prepared=prepared)
    return {"results": "zero_shot/results.json",
            "mean_of_medians": {task: r.get("mean_of_medians") for task, r in results.get("tasks", {}).items()}}


def check_integrations(recipe: Recipe) -> None:
    """Before anything is written: the trackers are known and installed, and a push at the end can happen."""

    check_trackers(recipe.training.report_to)
    if recipe.hub.push_to_hub:
        check_target(recipe.hub.repo_id)


def finish_run_dir(recipe: Recipe, run_dir: Path, results: dict) -> None:
    """eval/results.json, loss.png and the model card (rank 0), then the push if the recipe asks for it."""
    if not is_main_process():
        return
    from accelerate import PartialState

    eval_dir = RunDir(run_dir).eval
    eval_dir.mkdir(exist_ok=True)
    results["training"] = {"processes": PartialState().num_processes}  # the card's global batch needs it
    write_json(RunDir(run_dir).results, results)
    plot_loss(RunDir(run_dir).metrics, RunDir(run_dir).loss_plot)
    write_model_card(run_dir, recipe.hub.repo_id)
    if recipe.hub.push_to_hub:
        try:
            pushed = push(run_dir, recipe.hub.repo_id, private=recipe.hub.private)
        except BloomzTuneError as err:
            raise BloomzTuneError(f"the run finished in {run_dir} but was not pushed: {err}; push it with "
                                  f"`bloomz-tune push {run_dir} --repo-id {recipe.hub.repo_id}`") from None
        print0(f"pushed {', '.join(pushed['files'])} to {pushed['url']}")


def build_tiny_base(tiny, train_rows, directory: Path) -> Path:
    """Train a tokenizer on the mixture's text and save a random tiny BLOOM for it (rank 0 builds, all wait)."""
    from accelerate import PartialState

    state = PartialState()
    with state.main_process_first():
        if state.is_main_process and not (directory / "config.json").exists():
            texts = (f"{row['inputs']} {row['targets']}" for row in train_rows)
            save_tiny_bloom(directory, texts, vocab_size=tiny.vocab_size, seed=tiny.seed,
                            hidden_size=tiny.hidden_size, n_layer=tiny.n_layer, n_head=tiny.n_head)
    return directory


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
