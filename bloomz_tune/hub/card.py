"""The model card of a run: Hub metadata the Hub can read, and a text that says how the model was made.

The metadata (huggingface_hub's ``ModelCardData``) holds base_model, the mixture's sources that are Hub
datasets, the training languages, the base model's license, pipeline_tag, tags and the zero-shot results as
``model-index`` entries (one per dataset and language: task, dataset id, config, split, median accuracy over
prompts in percent, as the BLOOMZ cards report it). The text gives the recipe (with the real global batch and
the tokens seen), the mixture, the results beside the published bloom and bloomz numbers of the same size
(docs/bloomz.md §5) where the published tables have them, how to load the model (peft and merged) and its
limits. Everything is read from the run directory; nothing is fetched.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation.report import data_files_lines
from bloomz_tune.recipe import Recipe, load_recipe
from bloomz_tune.tasks.table import TASKS
from bloomz_tune.training.budget import global_batch
from bloomz_tune.training.rundir import RunDir

BLOOM_LICENSE = "bigscience-bloom-rail-1.0"  # the license of every bigscience/bloom* checkpoint
SIZES = ("560m", "1b1", "1b7", "3b", "7b1")
# BLOOMZ's training per size (global batch in 2048-token sequences, steps, tokens): docs/bloomz.md §3.5.
BLOOMZ_TRAINING = {"bloomz-560m": (1024, 1750, "~3.67B"), "bloomz-1b1": (1024, None, None),
                   "bloomz-1b7": (2048, 2000, "~8.39B"), "bloomz-3b": (2048, 2000, "~8.39B"),
                   "bloomz-7b1": (2048, None, None), "bloomz": (2048, 498, "~2.09B")}


def read_run(run_dir: str | Path) -> dict:
    """The parts of a run directory the card reads: recipe, datasheet, results, zero-shot results, metrics."""
    run_dir = Path(run_dir)
    recipe_path = RunDir(run_dir).recipe
    if not run_dir.is_dir():
        raise BloomzTuneError(f"there is no run directory {run_dir}")
    if not recipe_path.is_file():
        raise BloomzTuneError(f"{run_dir} is not a run directory: no recipe.resolved.yaml")

    def _json(path: Path):
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    metrics = []
    if (RunDir(run_dir).metrics).is_file():
        metrics = [json.loads(line) for line in (RunDir(run_dir).metrics).read_text(encoding="utf-8").splitlines()
                   if line.strip()]
    return {"name": run_dir.name, "recipe": load_recipe(recipe_path),
            "datasheet": _json(RunDir(run_dir).datasheet) or {}, "results": _json(RunDir(run_dir).results)
            or {}, "zero_shot": _json(RunDir(run_dir).zero_shot / "results.json"), "metrics": metrics,
            "budget": _json(RunDir(run_dir).budget) or {}}


def base_model_of(recipe: Recipe) -> str | None:
    """The base model's Hub id, or None for the tiny demo model or a local folder."""
    model = recipe.model
    name = model.name_or_path
    if model.tiny is not None or not name or Path(name).expanduser().exists():
        return None
    return name


def published_names(base: str | None) -> tuple[str, str] | None:
    """The published bloom and bloomz names of the base model's size, e.g. ('bloom-7b1', 'bloomz-7b1')."""
    match = re.fullmatch(r"bigscience/bloomz?(?:-(\w+))?", base or "")
    if not match:
        return None
    size = match.group(1)
    if size is None:
        return "bloom", "bloomz"
    return (f"bloom-{size}", f"bloomz-{size}") if size in SIZES else None


def license_of(recipe: Recipe) -> str | None:
    """The base model's license: from a local model folder's card, or BLOOM's for bigscience/bloom*."""
    name = recipe.model.name_or_path or ""
    card = Path(name).expanduser() / "README.md"
    if recipe.model.tiny is None and card.is_file():
        from huggingface_hub import metadata_load

        return (metadata_load(card) or {}).get("license")
    return BLOOM_LICENSE if name.startswith("bigscience/bloom") else None


def hub_datasets(datasheet: dict) -> list[str]:
    """The mixture's sources that are Hub datasets (a source's ``dataset``, or a ``path`` that is a Hub id)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    spec_dir = Path(datasheet.get("spec_file") or ".").parent
    ids = []
    for src in (datasheet.get("spec") or {}).get("sources", []):
        ident = src.get("dataset")
        path = src.get("path") or ""
        if not ident and src.get("data_files") is None and "/" in path and not (spec_dir / path).exists() \
                and not Path(path).expanduser().is_absolute():
            ident = path
        try:
            validate_repo_id(ident or "")
        except HFValidationError:
            continue
        if ident not in ids:
            ids.append(ident)
    return ids


def eval_results(zero_shot: dict | None) -> list:
    """The zero-shot medians as huggingface_hub EvalResults: one per (dataset, language)."""
    from huggingface_hub import EvalResult

    out = []
    for task, r in (zero_shot or {}).get("tasks", {}).items():
        spec = TASKS.get(task)
        if spec is None:
            continue
        dataset_id = spec.path or next((a for a in spec.aliases if "/" in a), task)
        prompts = (zero_shot.get("settings") or {}).get("prompts", "?")
        for language, v in r["languages"].items():
            out.append(EvalResult(
                task_type="text-generation", task_name=spec.task_kind.card_name, dataset_type=dataset_id,
                dataset_name=f"{spec.title} ({language})", dataset_config=spec.configs.get(language),
                dataset_split=spec.split, metric_type="accuracy", metric_value=round(100 * v["median"], 2),
                metric_name=f"median accuracy over {prompts} prompts (%)"))
    return out


def card_data(run: dict, merged: bool = False, model_name: str | None = None):
    """huggingface_hub ModelCardData for the run (``merged``: the LoRA merged into the base model)."""
    from huggingface_hub import ModelCardData

    recipe, sheet = run["recipe"], run["datasheet"]
    adapter = recipe.lora.enabled and not merged
    results = eval_results(run["zero_shot"])
    return ModelCardData(
        base_model=base_model_of(recipe), datasets=hub_datasets(sheet) or None,
        language=sorted(sheet.get("by_language", {})) or None, license=license_of(recipe),
        library_name="peft" if adapter else "transformers", pipeline_tag="text-generation",
        tags=["bloom", "bloomz", "bloomz_tune", "multitask", "instruction-tuning"]
        + (["lora"] if recipe.lora.enabled else []),
        model_name=(model_name or run["name"]) if results else None, eval_results=results or None)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def training_summary(run: dict) -> dict:
    """Steps done, processes, global batch, rows and (about) tokens seen, from the run's own records."""
    t, data = run["recipe"].training, run["recipe"].data
    processes = run.get("budget", {}).get("processes") or (run["results"].get("training") or {}).get("processes", 1)
    rows_per_step = global_batch(t, processes)
    last = next((m for m in reversed(run["metrics"]) if "step" in m), {})
    steps = last.get("step", t.max_steps if t.max_steps > 0 else None)
    train_tokens = (run["datasheet"].get("tokens") or {}).get("train") or {}
    tokens = None
    if last.get("epoch") is not None and train_tokens:  # epochs done x the mixture's train tokens
        tokens = round(last["epoch"] * (train_tokens.get("input", 0) + train_tokens.get("target", 0)))
    return {"processes": processes, "global_batch": rows_per_step, "steps": steps,
            "rows": steps * rows_per_step if steps else None, "tokens": tokens, "max_length": data.max_length}


def _training_lines(run: dict, merged: bool) -> list[str]:
    recipe = run["recipe"]
    lora, data, t, model = recipe.lora, recipe.data, recipe.training, recipe.model
    s = training_summary(run)
    method = (f"LoRA (r={lora.r}, alpha={lora.lora_alpha}, dropout={lora.lora_dropout}, modules "
              f"{', '.join(lora.target_modules)}"
              + (f"; trained in full: {', '.join(lora.modules_to_save)}" if lora.modules_to_save else "")
              + ")" + (", merged into the base model" if merged else "")) if lora.enabled else "full fine-tuning"
    row_kind = "packed rows" if data.packing else "rows (one sample each, padded)"
    rows = [
        ["method", method],
        ["loss", f"target tokens only, {t.loss_type}"],
        ["sequence length", f"{data.max_length}" + (" (packed, segment-isolated)" if data.packing else "")],
        ["global batch", f"{s['global_batch']} {row_kind} = {t.per_device_train_batch_size} per device x "
                         f"{t.gradient_accumulation_steps} accumulation x {s['processes']} process(es)"],
        ["steps", s["steps"] if s["steps"] is not None else f"{t.num_train_epochs} epochs"],
        *([["planned", f"{b['tokens_per_step']:,} tokens per step, {b['epochs_over_mixture']:.2f} epochs over the "
                       "mixture"]] if (b := run.get("budget")) else []),
        ["rows seen", f"{s['rows']:,}" if s["rows"] else "–"],
        ["tokens seen", f"about {s['tokens']:,} (epochs done x the mixture's train tokens)" if s["tokens"] else "–"],
        ["optimizer", f"AdamW betas ({t.adam_beta1}, {t.adam_beta2}), eps {t.adam_epsilon}, "
                      f"weight decay {t.weight_decay}, clipping {t.max_grad_norm}"],
        ["learning rate", f"{t.learning_rate} {t.lr_scheduler_type}, warm-up {t.warmup_steps}"],
        ["dropout", ", ".join(f"{k} {'as in the checkpoint' if getattr(model, f'{k}_dropout') is None else getattr(model, f'{k}_dropout')}"
                              for k in ("hidden", "attention"))],
        ["seed", t.seed],
    ]
    lines = ["## Training", "", *_table(["setting", "value"], rows)]
    names = published_names(base_model_of(recipe))
    if names:
        batch, steps, tokens = BLOOMZ_TRAINING[names[1]]
        lines += ["", f"{names[1]} for comparison: global batch {batch} x 2048 tokens"
                  + (f", {steps} steps, {tokens} tokens" if steps else "") + " (docs/bloomz.md §3.5 in bloomz_tune)."]
    return lines


def _data_lines(sheet: dict, data: dict) -> list[str]:
    lines = ["## Training data", "",
             f"The mixture `{sheet.get('name', data.mixture)}` (fingerprint `{sheet.get('fingerprint', '?')}`); "
             "its datasheet is `datasheet.json` beside this card.", ""]
    if sheet.get("by_language"):
        lines += _table(["language", "train rows", "share"],
                        [[k, f"{v['train']:,}", f"{v['share']:.1%}"] for k, v in sheet["by_language"].items()])
        lines += [""] + _table(["task", "train rows", "share"],
                               [[k, f"{v['train']:,}", f"{v['share']:.1%}"] for k, v in sheet.get("by_task", {}).items()])
    return lines


def _results_lines(run: dict) -> list[str]:
    lines = ["## Evaluation", ""]
    sanity = run["results"].get("sanity", {})
    if "after" in sanity:
        before = "not measured" if sanity.get("before") is None else f"{sanity['before']:.3f}"
        lines.append(f"Rank classification on {sanity['examples']} held-out mixture rows: accuracy "
                     f"{before} before training, {sanity['after']:.3f} after.")
    zero_shot = run["zero_shot"]
    if zero_shot:
        names = published_names(base_model_of(run["recipe"]))
        header = ["dataset", "languages", "this model"] + (list(names) if names else [])
        rows = []
        for r in zero_shot.get("tasks", {}).values():
            published = r.get("published_mean_of_medians_pct") or {}
            rows.append([r.get("title", "?"), len(r["languages"]), f"{100 * r['mean_of_medians']:.2f}"]
                        + [published.get(n, "–") for n in names or ()])
        lines += ["", "Zero-shot rank classification, median accuracy (%) over prompts, mean over languages "
                  "(BLOOMZ's method)" + (f", beside the published {names[0]} and {names[1]} "
                                         "(docs/bloomz.md §5 in bloomz_tune; '–': not published)" if names else
                                         "; no published numbers exist for this base model") + ":", ""]
        lines += _table(header, rows)
        lines += ["", "The published means are over the paper's languages; a row with fewer languages is not "
                  "directly comparable. Per-language medians are in the model-index metadata above."]
        lines += data_files_lines(zero_shot.get("datasets") or {}, "###")
    if not sanity and not zero_shot:
        lines.append("No evaluation was run.")
    return lines


def _use_lines(repo: str, adapter: bool) -> list[str]:
    lines = ["## Use", "", "```python"]
    if adapter:
        lines += ["from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer", "",
                  f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}")  # loads the base model too',
                  "model = model.merge_and_unload()  # optional: one plain model, faster to run"]
    else:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{repo}")']
    lines += [f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
              'inputs = tokenizer("Translate to English: Je t\'aime.", return_tensors="pt")',
              "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=20)[0]))", "```", "",
              f"Or with bloomz_tune: `bloomz-tune generate {repo} \"Translate to English: Je t'aime.\"`"
              + ("; `bloomz-tune merge RUN_DIR --output DIR` writes the merged model." if adapter else ".")]
    return lines


LIMITS = ["## Limits", "",
          "- BLOOMZ-style prompting: state the task in the prompt and end it where the answer starts (e.g. "
          "\"Translate to English: ...\", \"... Is this review positive or negative?\"). Greedy decoding fits "
          "short answers; the model was not trained for long open-ended generation or chat.",
          "- It knows only what the base model and the mixture's tasks taught it: languages and tasks outside "
          "the mixture (tables above) are weaker, and the base model's biases remain.",
          "- Zero-shot numbers come from bloomz_tune's own prompts and the limit per dataset recorded in "
          "`recipe.resolved.yaml`; check them on your data before relying on them."]


def model_card(run_dir: str | Path, repo_id: str | None = None, merged: bool = False) -> str:
    """The Markdown model card (metadata first) for the run in ``run_dir``; ``repo_id`` fills the load code."""
    from huggingface_hub import ModelCard

    run = read_run(run_dir)
    recipe, sheet = run["recipe"], run["datasheet"]
    base = base_model_of(recipe) or ("a tiny random BLOOM (demo)" if recipe.model.tiny is not None
                                     else recipe.model.name_or_path)
    lora = recipe.lora.enabled
    kind = "full fine-tune" if not lora else ("LoRA, merged into the base model" if merged else "LoRA adapter")
    lines = [f"# {repo_id.split('/')[-1] if repo_id else run['name']}", "",
             f"A BLOOMZ-style multitask fine-tune ({kind}) of **{base}**, made with bloomz_tune: the mixture "
             "below, BLOOMZ's per-sample target loss, and zero-shot evaluation on held-out tasks.", ""]
    lines += _training_lines(run, merged) + [""] + _data_lines(sheet, recipe.data) + [""]
    lines += _results_lines(run) + [""] + _use_lines(repo_id or "REPO_ID", lora and not merged) + [""]
    lines += LIMITS
    if base_model_of(recipe) is None and lora and not merged:
        where = "the tiny demo" if recipe.model.tiny is not None else recipe.model.name_or_path
        lines.append(f"- The base model is a local folder ({where}), not a Hub model: the adapter loads only where "
                     "that folder exists.")
    lines += ["", "The full resolved recipe is `recipe.resolved.yaml` beside this card."]
    data = card_data(run, merged, repo_id.split("/")[-1] if repo_id else None)
    text = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"
    ModelCard(text)  # parses, model-index included, or raises
    return text
