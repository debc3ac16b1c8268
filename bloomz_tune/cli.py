"""The ``bloomz-tune`` command: each subcommand parses its options and calls one function of ``bloomz_tune``.

    bloomz-tune train RECIPE.yaml [section.key=value ...]      fine-tune (same as bloomz_tune/finetune.py)
    bloomz-tune mixture build SPEC.yaml [--output DIR]         build an xP3-style mixture (into the cache)
    bloomz-tune mixture show DIR                               print a built mixture's datasheet and samples
    bloomz-tune mixture check SPEC.yaml [--online]             will every source load? (before a long build)
    bloomz-tune mixture contamination DIR --tasks xnli,xcopa   evaluation examples overlapping its training rows
    bloomz-tune eval MODEL --tasks xnli,xcopa --output DIR     zero-shot evaluation (--device-map auto to split a
                                                               model; under torchrun -m bloomz_tune.cli eval ...,
                                                               the processes share the requests)
    bloomz-tune eval --check [--online] [--tasks ...]          will every evaluation dataset load?
    bloomz-tune push RUN_DIR --repo-id you/name [--merged]     push adapter (or merged model) + card to the Hub
    bloomz-tune merge RUN_DIR --output DIR                     merge a LoRA adapter into its base model
    bloomz-tune generate MODEL "prompt" [--interactive]        greedy answers from a model or adapter
    bloomz-tune estimate RECIPE.yaml [--accelerate-config F]   parameters, memory per GPU, tokens, epochs, time

Defaults are declared once: evaluation options come from the recipe's ``eval`` section (``recipe.EvalSection``),
mixture options from its ``data`` section, and the API functions use the same. A ``BloomzTuneError`` becomes a
one-line message and exit code 2 here (``errors.exit_code``), for every command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bloomz_tune as api
from bloomz_tune.errors import BloomzTuneError, exit_code
from bloomz_tune.evaluation.generation import MAX_NEW_TOKENS
from bloomz_tune.evaluation.plan import format_plan
from bloomz_tune.logs import setup_logging
from bloomz_tune.mixture.contamination import NGRAM, RULE
from bloomz_tune.mixture.datasheet import CONTAMINATION_KEY, DATASHEET_JSON, DATASHEET_MD
from bloomz_tune.mixture.spec import spec_help
from bloomz_tune.model.loading import parse_max_memory
from bloomz_tune.recipe import DTYPE_CHOICES, DataSection, EvalSection, parse_train_argv
from bloomz_tune.runtime import print0
from bloomz_tune.tasks.table import MULTILINGUAL_TASKS, TASKS, parse_data_dirs, parse_task_values
from bloomz_tune.training.estimate import GPUS, format_estimate
from bloomz_tune.training.rundir import writable_problem

DTYPE_HELP = f"{', '.join(DTYPE_CHOICES)} (default: %(default)s)"
TASKS_HELP = f"comma list of {', '.join(TASKS)}; 'anli' for its three rounds, 'all' for every task (default: %(default)s)"


# -- train ----------------------------------------------------------------------------------------------------------

def train(argv: list[str]) -> int:
    recipe = parse_train_argv(argv, prog="bloomz-tune train")
    if recipe is None:  # --help was printed
        return 0
    api.train(recipe)
    return 0


# -- mixture --------------------------------------------------------------------------------------------------------

def mixture_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bloomz-tune mixture", description="Build and inspect xP3-style mixtures.")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build a mixture spec (into the cache, or into --output)",
                       description="Build a mixture spec. Without --output the build goes to the cache as "
                                   "<name>-<fingerprint>; with --output DIR it goes to DIR and is registered in the "
                                   "cache. Training reuses either.",
                       epilog=spec_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("spec", help="mixture spec (YAML), e.g. data_mixtures/xp3_mini.yaml")
    b.add_argument("--output", "-o", default=None, help="build into this folder (and register it in the cache)")
    b.add_argument("--cache", default=DataSection.mixture_cache,
                   help="the mixture cache, as the recipe's data.mixture_cache (default: %(default)s)")
    b.add_argument("--num-proc", type=int, default=1,
                   help="worker processes for rendering, saving, counting (default: %(default)s)")
    b.add_argument("--tokenizer", default=None,
                   help="tokenizer (Hub id or folder) whose token counts are stored beside the build "
                        "(default: the spec's tokenizer, if any)")
    b.add_argument("--overwrite", action="store_true", help="replace an existing build instead of keeping it")
    k = sub.add_parser(
        "check", help="will every source of a spec load? (validation offline; --online asks the Hub)",
        description="Validate a spec as a build would (schema, Hub ids, templates, held-out datasets) and place each "
                    "source. With --online, ask the Hub for each source's repository at its revision (configs, "
                    "splits; no data downloaded) and print a verdict per source: loads, script only, missing "
                    "config, missing split, no data files, unreachable, with the fix. Exit code 2 if any fails.")
    k.add_argument("spec", help="mixture spec (YAML)")
    k.add_argument("overrides", nargs="*", help="key=value overrides, e.g. promptsource=PATH/TO/CHECKOUT")
    k.add_argument("--online", action="store_true", help="ask the Hub (with HF_HUB_OFFLINE=1: the Hub cache)")
    s = sub.add_parser("show", help="print a build's datasheet and sample rows")
    s.add_argument("dir", help="a built mixture directory")
    s.add_argument("--samples", type=int, default=2, help="samples per task cluster (default: %(default)s)")
    c = sub.add_parser(
        "contamination", help="share of evaluation examples that share an n-gram with the build's training rows",
        description="For each evaluation dataset and language: the share of its examples whose own text (its "
                    "fields, not our prompts) shares an n-gram of --ngram tokens with a training row (inputs and "
                    "targets) of the build's train split, and the training sources of those rows. Tokens: " + RULE
                    + f" Written into the build's datasheet ({DATASHEET_JSON} key '{CONTAMINATION_KEY}', a "
                    f"{DATASHEET_MD} section that `mixture show` prints) and printed as a table. Verbatim overlap "
                    "only; docs/contamination.md gives the rule and its limits.")
    c.add_argument("dir", help="a built mixture directory")
    c.add_argument("--tasks", default=",".join(MULTILINGUAL_TASKS), help=TASKS_HELP)
    c.add_argument("--languages", default=None, help="comma list (default: each task's paper languages)")
    c.add_argument("--data-dir", action="append", default=[], metavar="TASK=FOLDER",
                   help="read TASK from a local folder (release files or a Hub snapshot), as `eval` does")
    c.add_argument("--split", default=None,
                   help="evaluation split to check, e.g. test (default: the split each task is evaluated on)")
    c.add_argument("--ngram", type=int, default=NGRAM, help="tokens per n-gram (default: %(default)s)")
    c.add_argument("--num-proc", type=int, default=1, help="worker processes for the scan (default: %(default)s)")
    return parser


def mixture(argv: list[str]) -> int:
    args = mixture_parser().parse_args(argv)
    if args.command == "build":
        check_writable(args.output or args.cache, "--output" if args.output else "--cache")
        out = api.build_mixture(args.spec, output_dir=args.output, cache=args.cache, num_proc=args.num_proc,
                                tokenizer=args.tokenizer, overwrite=args.overwrite)
        print0(f"wrote {out} (datasheet: {out / DATASHEET_MD})")
    elif args.command == "check":
        report = api.check_mixture(args.spec, online=args.online, overrides=args.overrides)
        print0(report["markdown"])
        if report["failed"]:
            raise BloomzTuneError(f"{report['failed']} source(s) of {args.spec} would not load; see the fix column")
    elif args.command == "contamination":
        report = api.check_contamination(args.dir, args.tasks, args.languages, parse_data_dirs(args.data_dir),
                                         split=args.split, ngram=args.ngram, num_proc=args.num_proc)
        print0(report["markdown"])
        print0(f"scanned {report['training_rows']:,} training rows in {report['seconds']:.1f}s; written to "
               f"{args.dir}/{DATASHEET_MD} and {DATASHEET_JSON} (key {CONTAMINATION_KEY!r})")
    else:
        print0(api.show_mixture(args.dir, args.samples))
    return 0


# -- eval -----------------------------------------------------------------------------------------------------------

def eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bloomz-tune eval",
        description="Zero-shot rank classification on BLOOMZ's held-out tasks; writes results.json, results.md "
                    "and accuracy.png.")
    parser.add_argument("model", nargs="?", help="Hub id, local model folder, or LoRA adapter folder")
    parser.add_argument("--tasks", default=",".join(MULTILINGUAL_TASKS), help=TASKS_HELP)
    parser.add_argument("--languages", default=None, help="comma list (default: each task's languages in the BLOOMZ "
                                                          "paper)")
    parser.add_argument("--output", help="folder for results.json, results.md, accuracy.png (required to evaluate)")
    parser.add_argument("--limit", type=int, default=EvalSection.limit, help="at most N examples per task and "
                                                                            "language")
    parser.add_argument("--prompts", type=int, default=EvalSection.prompts,
                        help="prompts per dataset (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=EvalSection.batch_size,
                        help="per forward: rows of 256 tokens on BLOOM (prompts packed with their choices), distinct "
                             "prompts on a BLOOM split over devices, requests on other models (default: %(default)s)")
    parser.add_argument("--max-length", type=int, default=EvalSection.max_length,
                        help="tokens per request (default: %(default)s)")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    parser.add_argument("--data-dir", action="append", default=[], metavar="TASK=FOLDER",
                        help="read TASK from a local folder (a copy of the Hub repository, or for StoryCloze the "
                             "release files); repeat for several tasks")
    parser.add_argument("--length-normalize", action="store_true", default=EvalSection.length_normalize,
                        help="score choices by mean instead of sum of token log-probabilities (BLOOMZ: sum)")
    parser.add_argument("--no-generation", dest="generation", action="store_false", default=EvalSection.generation,
                        help="skip the greedy generation sanity check")
    parser.add_argument("--revision", default=None, help="Hub revision of MODEL")
    parser.add_argument("--data-revision", action="append", default=[], metavar="TASK=REV",
                        help="read TASK's Hub dataset at REV (e.g. refs/convert/parquet, its parquet export) instead "
                             "of the task table's revision; repeat for several tasks")
    parser.add_argument("--check", action="store_true",
                        help="check that every task's data would load, and stop (no model needed)")
    parser.add_argument("--online", action="store_true", help="with --check: ask the Hub (configs, splits)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the memory per device and the device map the evaluation would use (from the "
                             "model's config alone; no weights, no data), and stop")
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--device-map", default=None,
                        help="split a model too large for one device (accelerate): auto, balanced, sequential")
    parser.add_argument("--max-memory", default=None, metavar="DEVICE=SIZE,...",
                        help="with --device-map: memory per device, e.g. 0=20GiB,1=20GiB,cpu=64GiB")
    parser.add_argument("--offload-folder", default=None,
                        help="with --device-map: folder for the weights that fit in no memory (disk offload)")
    return parser


def evaluate(argv: list[str]) -> int:
    args = eval_parser().parse_args(argv)
    data_revisions = parse_task_values(args.data_revision)
    if args.check:
        report = api.check_tasks(args.tasks, args.languages, parse_data_dirs(args.data_dir), data_revisions,
                                 online=args.online)
        print0(report["markdown"])
        if report["failed"]:
            raise BloomzTuneError(f"{report['failed']} task(s) would not load; see the fix column")
        return 0
    if args.batch_size < 1 or args.max_length < 8:
        raise BloomzTuneError(f"--batch-size must be at least 1 and --max-length at least 8; got {args.batch_size} "
                              f"and {args.max_length}")
    if args.dry_run:
        if not args.model:
            raise BloomzTuneError("eval --dry-run needs MODEL")
        plan = api.plan_evaluation(args.model, args.dtype, args.device, args.device_map,
                                   parse_max_memory(args.max_memory), args.batch_size, args.max_length, args.revision)
        print0(format_plan(plan))
        if plan["fits"] is False:
            raise BloomzTuneError("the evaluation would not fit in the memory given (see the table)")
        return 0
    if not args.model or not args.output:
        raise BloomzTuneError("eval needs MODEL and --output (or --check to check the data only)")
    check_device(args.device)
    check_writable(args.output, "--output")
    setup_logging()
    results = api.evaluate(args.model, args.tasks, args.languages, output_dir=args.output, limit=args.limit,
                           prompts=args.prompts, batch_size=args.batch_size, max_length=args.max_length,
                           data_dirs=parse_data_dirs(args.data_dir), length_normalize=args.length_normalize,
                           generation=args.generation, dtype=args.dtype, device=args.device,
                           revision=args.revision, trust_remote_code=args.trust_remote_code,
                           data_revisions=data_revisions, device_map=args.device_map,
                           max_memory=parse_max_memory(args.max_memory), offload_folder=args.offload_folder)
    for r in results["tasks"].values():
        medians = ", ".join(f"{lang} {100 * v['median']:.2f}" for lang, v in r["languages"].items())
        print0(f"{r['title']}: mean of medians {100 * r['mean_of_medians']:.2f} ({medians})")
    return 0


# -- push, merge, generate -----------------------------------------------------------------------------------------

def push(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bloomz-tune push", description="Push a finished run (adapter or merged "
                                     "model, tokenizer, recipe, datasheet, model card) to the Hub.")
    parser.add_argument("run_dir", help="a finished run directory (holds final/ and recipe.resolved.yaml)")
    parser.add_argument("--repo-id", required=True, help="Hub repository, USER/NAME")
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=True,
                            help="create the repository as private (the default)")
    visibility.add_argument("--public", dest="private", action="store_false", help="create it public")
    parser.add_argument("--merged", action="store_true", help="upload the LoRA merged into its base model")
    parser.add_argument("--dry-run", action="store_true", help="check and print the card and files; upload nothing")
    args = parser.parse_args(argv)
    result = api.push(args.run_dir, args.repo_id, private=args.private, merged=args.merged, dry_run=args.dry_run)
    if args.dry_run:
        print(result["card"])
        print(f"would upload to {args.repo_id}: {', '.join(result['files'])}")
    else:
        print(f"pushed {', '.join(result['files'])} to {result['url']}")
    return 0


def merge(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bloomz-tune merge",
                                     description="Merge a run's LoRA adapter into its base model (safetensors, "
                                                 "tokenizer and model card in a new folder).")
    parser.add_argument("run_dir", help="a finished LoRA run directory")
    parser.add_argument("--output", required=True, help="a new (or empty) folder for the merged model")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help=f"{DTYPE_HELP}; auto keeps the base checkpoint's")
    args = parser.parse_args(argv)
    check_writable(args.output, "--output")
    print(f"merged model written to {api.merge(args.run_dir, args.output, args.dtype)}")
    return 0


def generate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bloomz-tune generate",
                                     description="Greedy answers from a model, model folder or LoRA adapter.")
    parser.add_argument("model", help="Hub id, local model folder, or LoRA adapter folder")
    parser.add_argument("prompt", nargs="?", help="the prompt (quote it)")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="at most N new tokens (default: %(default)s)")
    parser.add_argument("--interactive", action="store_true", help="read prompts from the terminal, one per line")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES, help=DTYPE_HELP)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    args = parser.parse_args(argv)
    if not args.prompt and not args.interactive:
        raise BloomzTuneError("give a prompt, or --interactive to type prompts one per line")
    if not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS:  # before the model loads
        raise BloomzTuneError(f"--max-new-tokens must be between 1 and {MAX_NEW_TOKENS:,}, got {args.max_new_tokens:,}")
    check_device(args.device)
    model, tokenizer = api.load_model_for_generation(args.model, dtype=args.dtype, device=args.device)
    if args.prompt:
        print(api.generate(model, args.prompt, args.max_new_tokens, tokenizer=tokenizer), flush=True)
    if args.interactive:
        print("one prompt per line; an empty line or Ctrl-D ends", file=sys.stderr)
        for line in sys.stdin:
            if not line.strip():
                break
            print(api.generate(model, line.rstrip("\n"), args.max_new_tokens, tokenizer=tokenizer), flush=True)
    return 0


# -- estimate -------------------------------------------------------------------------------------------------------

def check_writable(folder: str | None, option: str) -> None:
    """The folder an option names can be created and written (before any work)."""
    problem = writable_problem(Path(folder).expanduser(), option) if folder else None
    if problem:
        raise BloomzTuneError(problem)


def check_device(device: str | None) -> None:
    """--device names a device this machine has (before any model loads)."""
    if device is None or device == "cpu":
        return
    import torch

    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError):
        raise BloomzTuneError(f"--device {device!r} is not a device name (cpu, cuda, cuda:1, mps, ...)") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise BloomzTuneError(f"--device {device}: this machine has no CUDA GPU that torch can use; use --device cpu")


def estimate(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bloomz-tune estimate", description="Parameters, memory per GPU, tokens, "
                                     "steps, epochs over the mixture and time of a recipe, from the model's config.")
    parser.add_argument("recipe", help="a recipe YAML file")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, as for train")
    parser.add_argument("--accelerate-config", help="the accelerate config the run is launched with")
    parser.add_argument("--gpus", type=int, help="processes (default: the accelerate config's, else 1)")
    parser.add_argument("--gpu", default="h100", choices=list(GPUS), help="GPU kind (default: %(default)s)")
    parser.add_argument("--mfu", type=float, default=0.4, help="model FLOPs utilisation for the time "
                                                               "(default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the estimate as JSON")
    args = parser.parse_args(argv)
    result = api.estimate(api.load_recipe(args.recipe, args.overrides), args.accelerate_config, args.gpus, args.gpu,
                          args.mfu)
    print(json.dumps(result, indent=2) if args.json else format_estimate(result))
    return 0


COMMANDS = {
    "train": (train, "fine-tune BLOOM from a recipe"),
    "mixture": (mixture, "build or inspect an xP3-style mixture"),
    "eval": (evaluate, "zero-shot evaluation on held-out tasks"),
    "push": (push, "push a run (adapter or merged model, tokenizer, card) to the Hub"),
    "share": (push, "the same as push"),
    "merge": (merge, "merge a run's LoRA adapter into its base model"),
    "generate": (generate, "greedy generation from a model, model folder or adapter"),
    "estimate": (estimate, "parameters, memory per GPU, tokens, epochs and time of a recipe"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(api.__version__)
        return 0
    if argv[0] not in COMMANDS:
        print(f"error: unknown command {argv[0]!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    return exit_code(COMMANDS[argv[0]][0], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
