"""Instruction-tune BLOOM on an xP3-style mixture, BLOOMZ style.

Run it (the recipe path first, then any ``section.key=value`` overrides; ``--help`` lists every key):

    accelerate launch bloomz_tune/finetune.py recipes/lora_560m.yaml
    python bloomz_tune/finetune.py recipes/tiny_demo.yaml output_dir=/tmp/run1 training.max_steps=20
    bloomz-tune train recipes/tiny_demo.yaml

Multi-GPU: add ``--config_file recipes/accelerate/<ddp|fsdp|deepspeed_zero3>.yaml`` to accelerate launch.
From Python: ``bloomz_tune.train(recipe)`` with a Recipe from ``bloomz_tune.load_recipe``.

The run directory (``output_dir``) receives: .bloomz_tune.lock while a run holds it, .bloomz_tune.run (marks it as
ours, records the stages done), recipe.resolved.yaml, datasheet.json (the mixture's, with token counts for the
model's tokenizer), run.json (global batch, tokens, steps, epochs), metrics.jsonl, checkpoints/, final/ (adapter or
full model + tokenizer, safetensors, model card), eval/results.json (+ eval/zero_shot/ when the recipe names tasks),
loss.png, and base_model/ for the tiny demo. Exit codes: 0 done, 2 bad input (one line), 3 training diverged.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    # Run by path: put the repository root first on sys.path instead of this folder, so that our modules never
    # shadow a library (and `import bloomz_tune` works without installing).
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bloomz_tune.charts import plot_loss
from bloomz_tune.errors import BloomzTuneError, exit_code  # noqa: E402
from bloomz_tune.evaluation.scoring import evaluate_model, prepare_tasks, sanity_accuracy, sanity_set
from bloomz_tune.hub.share import check_online, check_target, push, write_model_card
from bloomz_tune.logs import setup_logging
from bloomz_tune.mixture.builds import load_built_mixture, prepare_mixture
from bloomz_tune.model.bloom import patch_bloom
from bloomz_tune.model.loading import apply_lora, load_model, load_tokenizer
from bloomz_tune.model.tiny import save_tiny_bloom
from bloomz_tune.recipe import Recipe, check_recipe, parse_train_argv, save_recipe  # noqa: E402
from bloomz_tune.runtime import is_main_process, print0
from bloomz_tune.schema import dump_yaml
from bloomz_tune.storage import folder_digests, write_json
from bloomz_tune.tokens.batches import PaddingCollator
from bloomz_tune.tokens.cache import tokenized_split
from bloomz_tune.tokens.counts import datasheet_for
from bloomz_tune.tokens.packing import PackedCollator, pack_dataset
from bloomz_tune.training.budget import plan_run  # noqa: E402
from bloomz_tune.training.preflight import check_training_inputs
from bloomz_tune.training.rundir import (
    RunDir,
    checkpoint_step,
    claim,
    remove_incomplete,
    resolve_resume,
    training_finished,
    trim_metrics,
)
from bloomz_tune.training.runstate import (
    check_start,
    drop_replaced,
    extends_training,
    final_problem,
    read_stages,
    recipe_changes,
    record_stage,
    restore,
    run_inputs,
    set_aside,
    write_stages,
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


@dataclass
class Start:
    """How this run uses its directory (``runstate.check_start``'s mode) and whether it has written there yet."""

    run_dir: Path
    mode: str
    checkpoint: Path | None
    committed: bool = False


def run(recipe: Recipe) -> dict:
    """The whole run, in training order. Returns the results written to eval/results.json.

    Nothing is written into the run directory until every check has passed: the recipe, the places the run writes
    to, the model, the evaluation data, the mixture, the tokenization and the budget. Then (``commit``) an earlier
    run being replaced is moved aside and the run's first files are written; a run that fails after that puts a
    replaced run back.
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
    mode = check_start(run_dir, recipe.training.resume_from_checkpoint, checkpoint, recipe.overwrite_output_dir,
                       run_inputs(recipe))
    if mode == "finished" and checkpoint is not None and extends_training(run_dir, recipe):
        mode = "resume"  # more steps asked for: training continues from the last checkpoint
    changed = recipe_changes(run_dir, recipe) if mode in ("resume", "finished") else []
    if changed:
        raise BloomzTuneError(f"training.resume_from_checkpoint: the recipe differs from {RunDir(run_dir).recipe} in "
                              f"what it trains ({'; '.join(changed)}); resume with the run's own recipe, or start "
                              f"another output_dir")
    if mode == "finished":
        print0(f"{run_dir} holds a finished run (trained, final/ as saved, evaluated, card written): nothing to do")
        return json.loads(RunDir(run_dir).results.read_text(encoding="utf-8"))
    state.wait_for_everyone()  # every process has checked the run directory before rank 0 starts writing to it

    # ---- the run directory: claimed; written once the data, model and budget are checked -------------------------
    start = Start(run_dir, mode, checkpoint)
    existed = run_dir.exists()
    lock = claim(run_dir, say=print0) if is_main_process() else None
    try:
        if lock is not None:
            undo(start)  # what a run killed before its first write prepared: made again
        results = train_and_check(recipe, start, zero_shot_data)
        if is_main_process():
            drop_replaced(run_dir, say=print0)
        return results
    except BaseException:
        if lock is not None:
            undo(start)
        raise
    finally:
        if lock is not None:
            lock.release()
            if not existed and not any(run_dir.iterdir()):
                run_dir.rmdir()  # a refused run leaves no folder behind


def undo(start: Start) -> None:
    """After a failure (rank 0): drop what was prepared but not committed; put back a run this one was replacing."""
    import shutil

    shutil.rmtree(RunDir(start.run_dir).staging, ignore_errors=True)
    if start.committed and start.mode == "replace":
        restore(start.run_dir, say=print0)


def join_process_group():
    """accelerate's process state, set up before anything asks for it: on the CPU when ACCELERATE_USE_CPU says so.

    The first ``PartialState()`` of a process fixes its state until the Trainer sets up its own, and a bare one on
    a machine without a GPU ignores torchrun's processes (only the Trainer and the Accelerator read
    ACCELERATE_USE_CPU): the mixture build would not wait for rank 0 and run.json would count one process.
    """
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def commit(recipe: Recipe, start: Start, sheet: dict, budget: dict, model) -> None:
    """Every check has passed: set an earlier run aside (or tidy the resumed one), then write the run's first files:
    the marker, the recipe, the datasheet, run.json and the demo's base model."""
    run_dir, rd = start.run_dir, RunDir(start.run_dir)
    if is_main_process():
        if start.mode == "replace":
            set_aside(run_dir, say=print0)
        elif start.mode == "resume":
            remove_incomplete(run_dir, say=print0)
            trim_metrics(rd.metrics, checkpoint_step(start.checkpoint))
        if (rd.staging / "base_model").is_dir() and not rd.base_model.exists():
            os.replace(rd.staging / "base_model", rd.base_model)
            rebase_model_path(model, rd.base_model)
        import shutil

        shutil.rmtree(rd.staging, ignore_errors=True)
        t = recipe.training  # a resume past the last step keeps its stages; one that trains starts them anew
        kept = start.mode == "resume" and training_finished(start.checkpoint, t.max_steps, t.num_train_epochs)
        write_stages(run_dir, (read_stages(run_dir) or {}) if kept else {})
        save_recipe(recipe, rd.recipe)
        write_json(rd.datasheet, sheet)
        write_json(rd.budget, budget)
    start.committed = True
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    print0(f"recipe {recipe.source or '(built in code)'} -> run directory {run_dir}\n" + dump_yaml(recipe).rstrip())


def rebase_model_path(model, path: Path) -> None:
    """The demo's base model moved from the staging folder into the run directory: say so in the model's config
    and its adapter's config, which checkpoints and final/ record."""
    model.config._name_or_path = str(path)
    for config in (getattr(model, "peft_config", None) or {}).values():
        config.base_model_name_or_path = str(path)


def train_and_check(recipe: Recipe, start: Start, zero_shot_data) -> dict:
    """Data, model, sanity check, training, final weights, evaluation, card (see ``run``).

    A resumed run whose checkpoint is at its last step trains nothing: the checkpoint's weights are loaded, and
    only the stages not yet recorded as done run (a final/ still as it was saved is kept as it is)."""
    from transformers import set_seed

    run_dir, checkpoint = start.run_dir, start.checkpoint
    set_seed(recipe.training.seed)
    # ---- data, tokenizer, model -------------------------------------------------------------------------------

    mixture, tokenizer, built = load_mixture(recipe)
    # The Trainer's arguments come before the model: under accelerate's DeepSpeed ZeRO-3 with zero3_init_flag they
    # register the DeepSpeed config, so that from_pretrained builds each process's shard of the weights instead of
    # the whole model in every process (bloom-176b: 352 GB of bf16 per process).
    args = training_arguments(recipe, RunDir(run_dir).checkpoints)
    model, tokenizer = load_model_for_training(recipe, mixture, tokenizer, start)
    train_set, collator, counts, sheet = training_rows(recipe, built, mixture["train"], tokenizer)
    budget = plan_run(recipe, train_set)  # global batch, tokens, epochs: printed and checked
    commit(recipe, start, sheet, budget, model)

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
    t = recipe.training
    trained = checkpoint is not None and training_finished(checkpoint, t.max_steps, t.num_train_epochs)
    if trained:
        print0(f"{checkpoint} is the last step's checkpoint: training is done, no more steps; completing the "
               f"stages not yet done")
        trainer = build_trainer(recipe, model, tokenizer, train_set, collator, run_dir, args)
        trainer.load_checkpoint_weights(str(checkpoint))
    else:
        trainer = train_model(recipe, model, tokenizer, train_set, collator, run_dir, checkpoint, args, callbacks)
    if is_main_process():
        record_stage(run_dir, "trained", trainer.state.global_step if not trained else checkpoint_step(checkpoint))
    if trained and final_problem(run_dir) is None:
        print0(f"{RunDir(run_dir).final} holds the final weights as they were saved: kept as it is")
    else:
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


def load_model_for_training(recipe: Recipe, mixture, tokenizer, start: Start):
    """The base model (a tiny one built for the demo, or a Hub id / folder), LoRA if asked, our BLOOM attention.

    The demo's tiny base model is the resumed run's own, or built in the staging folder (``commit`` moves it in)."""
    from transformers import set_seed

    m = recipe.model
    model_path = m.name_or_path
    if m.tiny is not None:
        rd = RunDir(start.run_dir)
        folder = rd.base_model if start.mode == "resume" else rd.staging / "base_model"
        model_path = str(build_tiny_base(m.tiny, mixture["train"], folder))
        tokenizer = load_tokenizer(model_path)
    model = load_model(model_path, m.dtype, m.revision, m.trust_remote_code, hidden_dropout=m.hidden_dropout,
                       attention_dropout=m.attention_dropout)
    vocab = model.config.vocab_size
    if len(tokenizer) > vocab:  # a token id past the embedding would fail (or read another row) at the first step
        raise BloomzTuneError(f"the tokenizer of {model_path} has {len(tokenizer):,} tokens, more than the model's "
                              f"vocab_size {vocab:,} (config.json): the tokenizer is not this model's")
    set_seed(recipe.training.seed)  # LoRA starts the same whatever ran before it (a resumed run built nothing)
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


def training_rows(recipe: Recipe, built: Path, rows, tokenizer):
    """Tokenized (and, if asked, packed) training rows, their collator, the tokenization counts and the datasheet.

    The tokenized split is kept beside the build (``tokenizing.tokenized_split``, keyed by tokenizer,
    max_length and overlong): rank 0 tokenizes, or reuses an earlier run's; the other ranks then read it. The
    same pass gives the datasheet's token counts (``datasheet_for``), so a run tokenizes once.
    """
    from accelerate import PartialState

    d = recipe.data
    with PartialState().main_process_first():
        done = tokenized_split(built, rows, "train", tokenizer, d.max_length, d.overlong, d.num_proc)
    counted = {"train": (done.input_tokens, done.target_tokens)} if done.input_tokens is not None else None
    sheet = datasheet_for(built, tokenizer, d.num_proc or 1, counted) if is_main_process() else {}
    train_set, counts = done.dataset, done.counts
    print0("tokenized train samples: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    if len(train_set) == 0:
        raise BloomzTuneError(f"no training rows left after tokenization ({counts}); raise data.max_length?")
    train_set, collator = batches_of(recipe, train_set, tokenizer.pad_token_id)
    return train_set, collator, counts, sheet


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
        (incoming / "training_args.bin").unlink(missing_ok=True)  # a pickle; the recipe beside it says the same
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(incoming, final)
        shutil.rmtree(old, ignore_errors=True)
        stages = {k: v for k, v in (read_stages(run_dir) or {}).items() if k not in ("evaluated", "finished")}
        card_files = ("README.md", *(p.name for p in RunDir(run_dir).described_by))  # rewritten by the card stage
        write_stages(run_dir, {**stages, "final": folder_digests(final, skip=card_files)})
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
        check_online()


def finish_run_dir(recipe: Recipe, run_dir: Path, results: dict) -> None:
    """eval/results.json, loss.png and the model card (rank 0), then the push if the recipe asks for it."""
    if not is_main_process():
        return
    from accelerate import PartialState

    eval_dir = RunDir(run_dir).eval
    eval_dir.mkdir(exist_ok=True)
    results["training"] = {"processes": PartialState().num_processes}  # the card's global batch needs it
    write_json(RunDir(run_dir).results, results)
    record_stage(run_dir, "evaluated", True)
    plot_loss(RunDir(run_dir).metrics, RunDir(run_dir).loss_plot)
    write_model_card(run_dir, recipe.hub.repo_id)
    record_stage(run_dir, "finished", True)
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
