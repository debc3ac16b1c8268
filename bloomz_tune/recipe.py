"""The recipe: one typed schema for a training run, loaded from YAML, overridable with ``key=value``.

A recipe file supplies values for the dataclasses below; anything it leaves out takes the default documented
here. Overrides come after the file on the command line, ``section.key=value`` (the value is read as YAML, so
``training.max_steps=10``, ``lora.target_modules=[query_key_value,dense]`` and ``output_dir=/tmp/run1`` all
work). Validation reports every problem at once (unknown keys with a close match, wrong types, impossible
values) in one ``ConfigError`` that names the file.

Defaults follow BLOOMZ (bigscience-workshop/bigscience train/tr13-mtf and Megatron-DeepSpeed finetune_t0.py):
Adam betas (0.9, 0.95), eps 1e-8, constant learning rate 2e-5 with no warm-up, weight decay 1e-4, gradient
clipping 1.0, seed 42, sequence length 2048, per-sample normalised target loss. Key names reuse the names of
transformers' ``TrainingArguments`` and peft's ``LoraConfig`` wherever they mean the same thing.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data import OVERLONG_POLICIES
from .errors import ConfigError
from .loss import LOSS_TYPES
from .packing import STRATEGIES as PACKING_STRATEGIES


@dataclass
class TinyModel:
    """Build a random tiny BLOOM and train a tokenizer on the mixture's text, instead of loading weights.

    For the offline demo and tests. The model and tokenizer are saved under ``<output_dir>/base_model`` and
    loaded back with ``from_pretrained``, the same path that loads a Hub id or local folder.
    """

    vocab_size: int = 1024
    hidden_size: int = 128
    n_layer: int = 2
    n_head: int = 4
    seed: int = 0


@dataclass
class ModelSection:
    name_or_path: str | None = "bigscience/bloom-560m"
    """A Hub id or a local folder holding config.json, safetensors weights and the tokenizer."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of ``name_or_path``."""
    dtype: str = "bf16-if-supported"
    """Weights' dtype: float32, bfloat16, float16, auto (as saved), bf16-if-supported (bf16 on a GPU that has it)."""
    trust_remote_code: bool = False
    """Run code from the model repository. Off unless you trust it."""
    attn_implementation: str = "sdpa"
    """BLOOM attention: ``sdpa`` (ALiBi + segment mask through torch's scaled_dot_product_attention; required
    for packing), ``flex`` (FlexAttention, GPU, no attention dropout), or ``eager`` (stock transformers)."""
    hidden_dropout: float | None = None
    """Dropout after attention and MLP; None keeps the checkpoint's config (0.0 in the released BLOOM configs).
    BLOOMZ's tr13 scripts set none, so Megatron's default 0.1 applied."""
    attention_dropout: float | None = None
    """Dropout on attention probabilities; None keeps the checkpoint's config (BLOOMZ ran with 0.1, as above)."""
    tiny: TinyModel | None = None
    """If set, build a tiny random BLOOM (see TinyModel) and ignore ``name_or_path``."""


@dataclass
class LoraSection:
    enabled: bool = True
    """LoRA through peft when true; full fine-tuning of every weight when false."""
    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query_key_value"])
    """Module names to adapt; BLOOM's fused attention projection by default."""
    bias: str = "none"
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained in full and saved with the adapter (peft's modules_to_save), e.g. [word_embeddings]."""


@dataclass
class DataSection:
    mixture: str = "data_mixtures/demo.yaml"
    """A mixture spec (YAML in data_mixtures/) or a finished mixture build folder."""
    mixture_cache: str = "~/.cache/bloomz_tune/mixtures"
    """Where mixture builds are kept; a finished build with the same fingerprint is reused."""
    max_length: int = 2048
    """Tokens per training row (BLOOMZ: 2048)."""
    overlong: str = "skip"
    """A sample longer than max_length: ``skip`` it (as BLOOMZ) or ``truncate_left`` its inputs."""
    packing: bool = False
    """Pack several samples into each row, kept apart by a segment mask (as BLOOMZ); needs sdpa or flex."""
    packing_strategy: str = "best_fit"
    """``best_fit`` (fuller rows) or ``greedy`` (BLOOMZ's, in order)."""
    num_proc: int | None = None
    """Processes for tokenization and mixture building (None: in this process)."""


@dataclass
class TrainingSection:
    loss_type: str = "sample_mean"
    """``sample_mean``: each sample's mean target-token loss, averaged over samples (BLOOMZ --norm-target-loss);
    ``token_mean``: mean over all target tokens of the batch."""
    learning_rate: float = 2e-5
    lr_scheduler_type: str = "constant"
    warmup_steps: int = 0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    weight_decay: float = 1e-4
    max_grad_norm: float = 1.0
    seed: int = 42
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step; the global batch is per_device x accumulation x GPUs."""
    max_steps: int = -1
    """Optimizer steps; -1 runs ``num_train_epochs`` over the data."""
    num_train_epochs: float = 1.0
    bf16: bool | str = "auto"
    """Mixed precision in bf16: true, false, or auto (on a GPU that supports it)."""
    fp16: bool = False
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    dataloader_num_workers: int = 0
    resume_from_checkpoint: str | bool | None = None
    """A checkpoint folder, or true for the latest one in output_dir."""
    report_to: list[str] = field(default_factory=list)
    """Experiment trackers for transformers' Trainer (e.g. [tensorboard, wandb]); none by default."""


@dataclass
class EvalSection:
    sanity: bool = True
    """Rank-classify held-out mixture rows that have answer choices, before and after training."""
    sanity_examples: int = 200
    """At most this many held-out rows in the sanity check."""
    tasks: list[str] = field(default_factory=list)
    """Zero-shot tasks to run after training (e.g. [xnli, xcopa]); empty for none."""
    languages: list[str] = field(default_factory=list)
    """Languages for those tasks; empty for each task's BLOOMZ held-out set."""
    limit: int | None = None
    """At most this many examples per task and language."""
    prompts: int = 5
    batch_size: int = 16
    data_dirs: dict[str, str] = field(default_factory=dict)
    """Local folders for tasks, e.g. {xstorycloze: /data/xstory_cloze}."""


@dataclass
class HubSection:
    push_to_hub: bool = False
    """Push the final adapter (or model) and its card with huggingface_hub. The token comes from HF_TOKEN or
    ``huggingface-cli login``; it is never written to the recipe or logs."""
    repo_id: str | None = None
    private: bool = True


@dataclass
class Recipe:
    output_dir: str = "runs/run"
    """The run directory: resolved recipe, metrics, checkpoints, final weights, evaluation, plots."""
    model: ModelSection = field(default_factory=ModelSection)
    lora: LoraSection = field(default_factory=LoraSection)
    data: DataSection = field(default_factory=DataSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    eval: EvalSection = field(default_factory=EvalSection)
    hub: HubSection = field(default_factory=HubSection)


CHOICES = {
    "model.dtype": ("float32", "bfloat16", "float16", "auto", "bf16-if-supported"),
    "model.attn_implementation": ("eager", "sdpa", "flex"),
    "lora.bias": ("none", "all", "lora_only"),
    "data.overlong": OVERLONG_POLICIES,
    "data.packing_strategy": PACKING_STRATEGIES,
    "training.loss_type": LOSS_TYPES,
    "training.lr_scheduler_type": ("constant", "constant_with_warmup", "linear", "cosine",
                                   "cosine_with_restarts", "polynomial", "inverse_sqrt"),
}
POSITIVE = ("model.tiny.vocab_size", "model.tiny.hidden_size", "model.tiny.n_layer", "model.tiny.n_head",
            "lora.r", "lora.lora_alpha", "data.max_length", "training.per_device_train_batch_size",
            "training.gradient_accumulation_steps", "training.logging_steps", "training.save_steps",
            "eval.sanity_examples", "eval.prompts", "eval.batch_size")
NON_NEGATIVE = ("training.learning_rate", "training.warmup_steps", "training.weight_decay",
                "training.max_grad_norm", "training.num_train_epochs", "training.adam_epsilon")


# --- reading --------------------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value read as YAML)."""
    if "=" not in text:
        raise ConfigError([f"override {text!r} is not of the form key=value (e.g. training.max_steps=10)"])
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError([f"override {key}: value {raw!r} is not valid YAML ({err.problem})"]) from err
    return key.strip().split("."), value


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file, apply ``key=value`` overrides, validate everything and return the Recipe."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"recipe file {str(path)!r} does not exist"])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {err}"], source=str(path)) from err
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"the top level must be a mapping of sections, got {type(raw).__name__}"],
                          source=str(path))
    problems: list[str] = []
    for item in overrides:
        try:
            keys, value = parse_override(item)
        except ConfigError as err:
            problems.extend(err.problems)
            continue
        node = raw
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return recipe_from_dict(raw, source=str(path), problems=problems)


def recipe_from_dict(raw: dict, source: str | None = None, problems: list[str] | None = None) -> Recipe:
    problems = list(problems or [])
    recipe = _build(Recipe, raw, "", problems)
    if recipe is not None:
        _check_values(recipe, problems)
    if problems:
        raise ConfigError(problems, source=source)
    return recipe


def _build(cls, raw: Any, prefix: str, problems: list[str]):
    if not isinstance(raw, dict):
        problems.append(f"{prefix.rstrip('.') or 'recipe'}: expected a mapping, got {_describe(raw)}")
        return None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in raw.items():
        where = f"{prefix}{key}"
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
            problems.append(f"{where}: unknown key{hint}")
            continue
        ok, converted = _convert(hints[key], value, where, problems)
        if ok:
            values[key] = converted
    return cls(**values)


def _convert(hint, value, where: str, problems: list[str]):
    """(ok, value converted to ``hint``); on failure append a problem naming ``where``."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        options = [a for a in args if a is not type(None)]
        for option in options:  # try each member silently; report once if none fits
            trial: list[str] = []
            ok, converted = _convert(option, value, where, trial)
            if ok and not trial:
                return True, converted
        if len(options) == 1 and dataclasses.is_dataclass(options[0]):
            return _convert(options[0], value, where, problems)
        problems.append(f"{where}: expected {_name(hint)}, got {_describe(value)}")
        return False, None
    if dataclasses.is_dataclass(hint):
        built = _build(hint, {} if value is None else value, where + ".", problems)
        return built is not None, built
    if origin is list:
        if not isinstance(value, list):
            problems.append(f"{where}: expected a list of {_name(args[0])}, got {_describe(value)}")
            return False, None
        out, ok = [], True
        for i, item in enumerate(value):
            good, converted = _convert(args[0], item, f"{where}[{i}]", problems)
            ok &= good
            out.append(converted)
        return ok, out
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{where}: expected a mapping, got {_describe(value)}")
            return False, None
        out, ok = {}, True
        for k, v in value.items():
            good, converted = _convert(args[1], v, f"{where}.{k}", problems)
            ok &= good
            out[str(k)] = converted
        return ok, out
    if hint is Any:
        return True, value
    if hint is bool:
        if isinstance(value, bool):
            return True, value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return True, value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return True, float(value)
        if isinstance(value, str):  # YAML reads 2e-5 (no dot) as a string
            try:
                return True, float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, str):
            return True, value
    problems.append(f"{where}: expected {_name(hint)}, got {_describe(value)}")
    return False, None


def _name(hint) -> str:
    if hint is type(None):
        return "null"
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_name(a) for a in args)
    if typing.get_origin(hint) is list:
        return f"a list of {_name(args[0])}"
    return getattr(hint, "__name__", str(hint))


def _describe(value) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"


def get(recipe: Recipe, dotted: str):
    node = recipe
    for part in dotted.split("."):
        if node is None:
            return None
        node = getattr(node, part)
    return node


def _check_values(recipe: Recipe, problems: list[str]) -> None:
    for key, allowed in CHOICES.items():
        value = get(recipe, key)
        if value not in allowed:
            problems.append(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    for key in POSITIVE:
        value = get(recipe, key)
        if value is not None and value <= 0:
            problems.append(f"{key}: must be > 0, got {value}")
    for key in NON_NEGATIVE:
        value = get(recipe, key)
        if value is not None and value < 0:
            problems.append(f"{key}: must be >= 0, got {value}")
    t = recipe.training
    for name in ("hidden_dropout", "attention_dropout"):
        value = getattr(recipe.model, name)
        if value is not None and not 0 <= value < 1:
            problems.append(f"model.{name}: must be in [0, 1), got {value}")
    if recipe.data.packing and recipe.model.attn_implementation == "eager":
        problems.append("data.packing: stock eager attention would let packed samples see each other; "
                        "set model.attn_implementation to sdpa or flex")
    if recipe.model.attn_implementation == "flex" and (recipe.model.attention_dropout or 0) > 0:
        problems.append("model.attention_dropout: flex attention has no dropout; use sdpa or set it to 0")
    if not 0 <= recipe.lora.lora_dropout < 1:
        problems.append(f"lora.lora_dropout: must be in [0, 1), got {recipe.lora.lora_dropout}")
    if recipe.lora.enabled and not recipe.lora.target_modules:
        problems.append("lora.target_modules: LoRA needs at least one module name")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(t, name) < 1:
            problems.append(f"training.{name}: must be in [0, 1), got {getattr(t, name)}")
    if t.max_steps == 0 or t.max_steps < -1:
        problems.append(f"training.max_steps: must be > 0, or -1 to train by epochs; got {t.max_steps}")
    if isinstance(t.bf16, str) and t.bf16 != "auto":
        problems.append(f"training.bf16: must be true, false or auto, got {t.bf16!r}")
    if t.fp16 and t.bf16 is True:
        problems.append("training.fp16 and training.bf16: choose one mixed precision, not both")
    tiny = recipe.model.tiny
    if tiny is None and not recipe.model.name_or_path:
        problems.append("model.name_or_path: give a Hub id or local folder (or a model.tiny section)")
    if tiny is not None and tiny.n_head > 0 and tiny.hidden_size % tiny.n_head:
        problems.append(f"model.tiny.hidden_size: {tiny.hidden_size} is not divisible by n_head {tiny.n_head}")
    if recipe.hub.push_to_hub and not recipe.hub.repo_id:
        problems.append("hub.repo_id: push_to_hub is true but no repo_id is given")
    if not recipe.output_dir:
        problems.append("output_dir: must not be empty")


# --- writing --------------------------------------------------------------------------------------------------

def recipe_to_dict(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe (every value, defaults included) as YAML."""
    Path(path).write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False, allow_unicode=True),
                          encoding="utf-8")
