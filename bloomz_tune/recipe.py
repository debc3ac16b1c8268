"""The recipe: everything a training run uses, as one typed schema, read from YAML and overridable.

A recipe file supplies values for the dataclasses below; anything it leaves out takes the default documented
here (``bloomz-tune train --help`` prints them all). Overrides come after the file on the command line,
``section.key=value``, read as YAML: ``training.max_steps=10``, ``lora.target_modules=[query_key_value,dense]``,
``output_dir=/tmp/run1``. Every problem is reported at once, naming the file and the key.

    from bloomz_tune import load_recipe, train
    recipe = load_recipe("recipes/tiny_demo.yaml", ["training.max_steps=50"])
    recipe.lora.r = 8            # a Recipe is a plain object: edit it, then hand it to train()
    train(recipe)

Defaults follow BLOOMZ (docs/bloomz.md §3): Adam betas (0.9, 0.95), eps 1e-8, constant learning rate 2e-5
with no warm-up, weight decay 1e-4, gradient clipping 1.0, seed 42, rows of 2048 tokens, the per-sample
normalised target loss. Key names reuse transformers' ``TrainingArguments`` and peft's ``LoraConfig`` names
where they mean the same thing. This module does not import torch.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bloomz_tune import schema
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.schema import bounded, internal

Dtype = Literal["float32", "bfloat16", "float16", "auto", "bf16-if-supported"]
Attention = Literal["sdpa", "flex", "stock"]
Overlong = Literal["skip", "truncate_left"]
PackingStrategy = Literal["best_fit", "greedy"]
LossType = Literal["sample_mean", "token_mean"]
Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
                    "inverse_sqrt"]

ATTENTIONS = typing.get_args(Attention)
OVERLONG_POLICIES = typing.get_args(Overlong)
PACKING_STRATEGIES = typing.get_args(PackingStrategy)
LOSS_TYPES = typing.get_args(LossType)
DTYPE_CHOICES = typing.get_args(Dtype)


@dataclass
class TinyModel:
    """Build a random tiny BLOOM and train a tokenizer on the mixture's text, instead of loading weights."""

    vocab_size: int = bounded(1024, gt=0)
    """Tokens in the tokenizer trained on the mixture (BLOOM's special tokens included)."""
    hidden_size: int = bounded(128, gt=0)
    """Width of the tiny model."""
    n_layer: int = bounded(2, gt=0)
    """Transformer blocks."""
    n_head: int = bounded(4, gt=0)
    """Attention heads; must divide hidden_size."""
    seed: int = 0
    """Seed of the random weights."""

    def problems(self) -> list[str]:
        if self.hidden_size % self.n_head:
            return [f"hidden_size: {self.hidden_size} is not divisible by n_head {self.n_head}"]
        return []


@dataclass
class ModelSection:
    name_or_path: str | None = "bigscience/bloom-560m"
    """A Hub id or a local folder holding config.json, safetensors weights and the tokenizer."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) of ``name_or_path``."""
    dtype: Dtype = "bf16-if-supported"
    """Weights' dtype: float32, bfloat16, float16, auto (as saved), bf16-if-supported (bf16 on a GPU that has it,
    else float32)."""
    trust_remote_code: bool = False
    """Run code from the model repository. Off unless you trust it."""
    attention: Attention = "sdpa"
    """BLOOM attention: ``sdpa`` (ALiBi plus a segment mask through torch's scaled_dot_product_attention; CPU and
    GPU), ``flex`` (FlexAttention, GPU, no attention dropout) or ``stock`` (transformers' own eager attention,
    which cannot keep packed samples apart)."""
    hidden_dropout: float | None = bounded(None, ge=0, lt=1)
    """Dropout after attention and MLP; null keeps the checkpoint's value (0.0 in the released BLOOM configs).
    BLOOMZ trained with Megatron's default 0.1 (docs/bloomz.md §3)."""
    attention_dropout: float | None = bounded(None, ge=0, lt=1)
    """Dropout on attention probabilities; null keeps the checkpoint's value (BLOOMZ: 0.1, as above)."""
    tiny: TinyModel | None = None
    """If set, build a tiny random BLOOM (offline demo and tests) and ignore ``name_or_path``. It is saved under
    ``<output_dir>/base_model`` and loaded back with ``from_pretrained``, the path a Hub id takes."""

    def problems(self) -> list[str]:
        out = []
        if self.tiny is None and not self.name_or_path:
            out.append("name_or_path: give a Hub id or local folder (or a model.tiny section)")
        if self.attention == "flex" and (self.attention_dropout or 0) > 0:
            out.append("attention_dropout: flex attention has no dropout; use sdpa or set it to 0")
        return out


@dataclass
class LoraSection:
    enabled: bool = True
    """LoRA through peft when true; full fine-tuning of every weight when false."""
    r: int = bounded(16, gt=0)
    """Rank of the LoRA update matrices."""
    lora_alpha: int = bounded(32, gt=0)
    """LoRA scaling: the update is multiplied by lora_alpha / r."""
    lora_dropout: float = bounded(0.05, ge=0, lt=1)
    """Dropout on the LoRA branch's input."""
    target_modules: list[str] = field(default_factory=lambda: ["query_key_value"])
    """Module names to adapt; BLOOM's fused attention projection by default. BLOOM's linear layers are
    query_key_value, dense, dense_h_to_4h and dense_4h_to_h."""
    bias: Literal["none", "all", "lora_only"] = "none"
    """Which biases train with LoRA (peft's ``bias``)."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained in full and saved with the adapter (peft's modules_to_save), e.g. [word_embeddings]."""

    def problems(self) -> list[str]:
        if self.enabled and not self.target_modules:
            return ["target_modules: LoRA needs at least one module name"]
        return []


@dataclass
class DataSection:
    mixture: str = "data_mixtures/demo.yaml"
    """A mixture spec (YAML in data_mixtures/) or a finished mixture build folder."""
    mixture_cache: str = "~/.cache/bloomz_tune/mixtures"
    """Where mixture builds are kept; a finished build of the same spec is reused instead of rebuilt."""
    max_length: int = bounded(2048, ge=2)
    """Tokens per training row (BLOOMZ: 2048)."""
    overlong: Overlong = "skip"
    """A sample longer than max_length: ``skip`` it (as BLOOMZ) or ``truncate_left`` its inputs (the target is
    never cut)."""
    packing: bool = False
    """Pack several samples into each row, kept apart by a segment mask (as BLOOMZ); needs sdpa or flex."""
    packing_strategy: PackingStrategy = "best_fit"
    """``best_fit`` (fuller rows) or ``greedy`` (BLOOMZ's: in order, a new row when the next does not fit)."""
    num_proc: int | None = bounded(None, gt=0)
    """Processes for mixture building; above 1, tokenization runs on the fast tokenizer's threads too (null: in
    this process, one thread)."""


@dataclass
class TrainingSection:
    loss_type: LossType = "sample_mean"
    """``sample_mean``: each sample's mean target-token loss, averaged over samples (BLOOMZ --norm-target-loss);
    ``token_mean``: mean over all target tokens of the batch."""
    loss_chunk_size: int | None = bounded(8192, gt=0)
    """A micro-batch with more target tokens than this runs the LM head and cross-entropy in checkpointed chunks
    of this many: backward keeps no (targets, 250,880) logits (about 1.5 MB a target), at the cost of the head's
    forward once more; null: never chunk. (Not under DeepSpeed ZeRO-3, where every process must call the head
    equally often.)"""
    learning_rate: float = bounded(2e-5, ge=0)
    """Peak learning rate (BLOOMZ: 2e-5 for full fine-tuning)."""
    lr_scheduler_type: Scheduler = "constant"
    """Learning-rate schedule after warm-up (BLOOMZ: constant)."""
    warmup_steps: int = bounded(0, ge=0)
    """Steps of linear warm-up (BLOOMZ: none)."""
    adam_beta1: float = bounded(0.9, ge=0, lt=1)
    """Adam's first-moment decay."""
    adam_beta2: float = bounded(0.95, ge=0, lt=1)
    """Adam's second-moment decay (BLOOMZ: 0.95)."""
    adam_epsilon: float = bounded(1e-8, ge=0)
    """Adam's epsilon."""
    weight_decay: float = bounded(1e-4, ge=0)
    """Decoupled weight decay (AdamW)."""
    max_grad_norm: float = bounded(1.0, ge=0)
    """Gradient clipping by global norm; 0 turns it off."""
    seed: int = bounded(42, ge=0, le=2**32 - 1)
    """Seed for model init of new weights, data order and dropout (0 to 2**32 - 1, what numpy accepts)."""
    per_device_train_batch_size: int = bounded(8, gt=0)
    """Rows per micro-batch on each process."""
    gradient_accumulation_steps: int = bounded(1, gt=0)
    """Micro-batches per optimizer step; the global batch is per_device x accumulation x processes."""
    max_steps: int = -1
    """Optimizer steps; -1 runs ``num_train_epochs`` over the data."""
    num_train_epochs: float = bounded(1.0, gt=0)
    """Epochs over the training rows when max_steps is -1."""
    max_epochs_over_mixture: float | None = bounded(4.0, gt=0)
    """Refuse to start when the steps would repeat the training rows more often than this (steps x global batch /
    rows); null turns the check off. BLOOMZ's budgets on a small mixture are tens of epochs of overfitting."""
    bf16: bool | Literal["auto"] = "auto"
    """Mixed precision in bf16: true, false, or auto (on a GPU that supports it)."""
    fp16: bool = False
    """Mixed precision in fp16 (older GPUs); not together with bf16: true."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""
    logging_steps: int = bounded(10, gt=0)
    """Optimizer steps between log lines (and metrics.jsonl records)."""
    save_steps: int = bounded(500, gt=0)
    """Optimizer steps between checkpoints."""
    save_total_limit: int | None = bounded(2, gt=0)
    """Checkpoints kept (the oldest are deleted); null keeps all."""
    dataloader_num_workers: int = bounded(0, ge=0)
    """Worker processes loading batches (0: in the training process)."""
    resume_from_checkpoint: str | bool | None = None
    """Resume training: ``true`` from the newest complete checkpoint in output_dir/checkpoints (there must be
    one), ``auto`` from it if there is one (else start from the beginning), or a checkpoint folder. Checkpoints
    whose save was cut short are skipped, and said so."""
    report_to: list[str] = field(default_factory=list)
    """Experiment trackers for transformers' Trainer (e.g. [tensorboard, wandb]); none by default."""

    def problems(self) -> list[str]:
        out = []
        if self.max_steps == 0 or self.max_steps < -1:
            out.append(f"max_steps: must be > 0, or -1 to train by epochs; got {self.max_steps}")
        if self.fp16 and self.bf16 is True:
            out.append("fp16: choose one mixed precision, not both fp16 and bf16")
        return out


@dataclass
class EvalSection:
    sanity: bool = True
    """Rank-classify held-out mixture rows that have answer choices, before and after training."""
    sanity_examples: int = bounded(200, gt=0)
    """At most this many held-out rows in the sanity check."""
    tasks: list[str] = field(default_factory=list)
    """Zero-shot tasks to run after training (e.g. [xnli, xcopa]); empty for none. See ``bloomz-tune eval``."""
    languages: list[str] = field(default_factory=list)
    """Languages for those tasks; empty for each task's BLOOMZ held-out set."""
    limit: int | None = bounded(None, gt=0)
    """At most this many examples per task and language."""
    prompts: int = bounded(5, gt=0)
    """Prompts per dataset (BLOOMZ: 5); the report gives the median and max over them."""
    batch_size: int = bounded(16, gt=0)
    """Per forward pass when scoring: rows of 256 tokens on BLOOM (prompts packed with their choices), distinct
    prompts on a BLOOM split over devices, requests on other models."""
    max_length: int = bounded(2048, gt=1)
    """Tokens per scored request (prompt and choice); longer prompts lose tokens from the left."""
    length_normalize: bool = False
    """Score a choice by the mean of its tokens' log-probabilities instead of their sum (BLOOMZ: the sum)."""
    generation: bool = True
    """Also write a few greedy answers to sanity prompts beside the scores."""
    data_dirs: dict[str, str] = field(default_factory=dict)
    """Local folders for tasks, e.g. {xstorycloze: /data/xstory_cloze}."""
    data_revisions: dict[str, str] = field(default_factory=dict)
    """Hub revisions to read tasks at instead of the task table's, e.g. {xstorycloze: refs/convert/parquet} (the
    parquet export of a repository whose main branch holds only a loading script)."""


@dataclass
class HubSection:
    push_to_hub: bool = False
    """Push the final adapter (or model) and its card with huggingface_hub. The token comes from HF_TOKEN or
    ``huggingface-cli login``; it is never written to the recipe or logs."""
    repo_id: str | None = None
    """The Hub repository to push to, e.g. you/bloomz-560m-lora."""
    private: bool = True
    """Create the repository as private."""

    def problems(self) -> list[str]:
        return ["repo_id: push_to_hub is true but no repo_id is given"] if self.push_to_hub and not self.repo_id else []


@dataclass
class Recipe:
    output_dir: str = "runs/run"
    """The run directory: resolved recipe, metrics, checkpoints, final weights, evaluation, plots. One run at a
    time holds it (a lock file); a new run into a directory that holds an earlier run is refused."""
    overwrite_output_dir: bool = False
    """Let a new run replace an earlier run in output_dir (removed once every input has been checked)."""
    model: ModelSection = field(default_factory=ModelSection)
    """The base model and its attention."""
    lora: LoraSection = field(default_factory=LoraSection)
    """LoRA (peft) or full fine-tuning."""
    data: DataSection = field(default_factory=DataSection)
    """The mixture and how it becomes training rows."""
    training: TrainingSection = field(default_factory=TrainingSection)
    """Optimisation (transformers' TrainingArguments names)."""
    eval: EvalSection = field(default_factory=EvalSection)
    """Checks before and after training."""
    hub: HubSection = field(default_factory=HubSection)
    """Sharing the result."""
    source: str | None = internal()

    def problems(self) -> list[str]:
        out = []
        if not self.output_dir:
            out.append("output_dir: must not be empty")
        if self.data.packing and self.model.attention == "stock":
            out.append("data.packing: stock attention would let packed samples see each other; "
                       "set model.attention to sdpa or flex")
        return out


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a recipe file, apply ``key=value`` overrides, check everything and return the Recipe."""
    return schema.load(Recipe, path, "recipe", overrides, source=str(path))


def recipe_from_dict(raw: dict, source: str | None = None) -> Recipe:
    """A Recipe from a mapping with the same keys as a recipe file (checked the same way)."""
    return schema.build(Recipe, raw, source, source=source)


def recipe_to_dict(recipe: Recipe) -> dict:
    return schema.to_dict(recipe)


def check_recipe(recipe: Recipe) -> Recipe:
    """Check a Recipe built or edited in code, as a file is checked; returns it, or raises ConfigError."""
    return recipe_from_dict(recipe_to_dict(recipe), recipe.source)


def save_recipe(recipe: Recipe, path: str | Path) -> None:
    """Write the resolved recipe (every value, defaults included) as YAML."""
    Path(path).write_text(schema.dump_yaml(recipe), encoding="utf-8")


TRAIN_USAGE = "usage: {prog} RECIPE.yaml [section.key=value ...]"


def parse_train_argv(argv: list[str], prog: str = "bloomz-tune train", doc: str = "") -> Recipe | None:
    """The training command line, ``RECIPE.yaml [section.key=value ...]``: the checked Recipe, or None after
    printing the help (``-h``/``--help``: every recipe key). Raises ConfigError for a bad recipe or override."""
    if not argv or argv[0] in ("-h", "--help"):
        head = f"{doc.strip()}\n\n" if doc else ""
        print(f"{head}{TRAIN_USAGE.format(prog=prog)}\n\nRecipe keys (section.key, type, default):\n\n{recipe_help()}")
        if not argv:
            raise BloomzTuneError(f"no recipe given; {TRAIN_USAGE.format(prog=prog)}")
        return None
    return load_recipe(argv[0], argv[1:])


def recipe_help() -> str:
    """Every recipe key with its type, default and meaning (``bloomz-tune train --help``)."""
    return schema.describe(Recipe)
