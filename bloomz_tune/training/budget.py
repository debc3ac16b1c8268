"""A run's batch and token budget: global batch, tokens, epochs over the mixture; printed, checked, kept in run.json.

Global batch = rows per device x gradient accumulation x processes (BLOOMZ counted its batches in 2048-token
rows, docs/bloomz.md §3.5). Epochs over the mixture = steps x global batch / training rows (packed rows when
packing is on). BLOOMZ's budgets (1,750 to 2,000 steps of 1,024 to 2,048 rows) on a small mixture repeat it
tens of times; the run refuses to start when the epochs exceed ``training.max_epochs_over_mixture`` (null turns
the check off). ``run.json`` in the run directory records these numbers; the model card reads it.
"""

from __future__ import annotations

import math

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.recipe import Recipe
from bloomz_tune.runtime import print0
from bloomz_tune.tokens.batches import length_column


def global_batch(training, processes: int) -> int:
    """Rows per optimizer step over all processes: rows per device x accumulation x processes. ``training`` is the
    recipe's training section or transformers' TrainingArguments (the same field names)."""
    return training.per_device_train_batch_size * training.gradient_accumulation_steps * processes


def run_budget(recipe: Recipe, train_rows: int, train_tokens: int, processes: int) -> dict:
    """The numbers ``run.json`` records for a run on ``train_rows`` rows holding ``train_tokens`` real tokens."""
    t = recipe.training
    batch = global_batch(t, processes)
    steps = t.max_steps if t.max_steps > 0 else math.ceil(t.num_train_epochs * train_rows / batch)
    tokens_per_row = train_tokens / max(train_rows, 1)
    return {"processes": processes, "per_device_train_batch_size": t.per_device_train_batch_size,
            "gradient_accumulation_steps": t.gradient_accumulation_steps, "global_batch": batch,
            "max_length": recipe.data.max_length, "packing": recipe.data.packing, "steps": steps,
            "train_rows": train_rows, "train_tokens": train_tokens,
            "tokens_per_step": round(batch * tokens_per_row), "tokens": round(steps * batch * tokens_per_row),
            "epochs_over_mixture": round(steps * batch / max(train_rows, 1), 3)}


def check_budget(budget: dict, limit: float | None) -> None:
    """Refuse a run that would repeat the mixture more than ``limit`` times (None: no limit)."""
    epochs = budget["epochs_over_mixture"]
    if limit is not None and epochs > limit:
        raise BloomzTuneError(
            f"training: {budget['steps']:,} steps x {budget['global_batch']:,} rows would be {epochs:.1f} epochs over "
            f"the mixture's {budget['train_rows']:,} training rows, more than training.max_epochs_over_mixture="
            f"{limit:g}; use a larger mixture or fewer steps, or raise that key (null turns the check off)")


def plan_run(recipe: Recipe, train_set) -> dict:
    """Compute, print and check the budget of the run on ``train_set`` (the run writes it as run.json once every
    check has passed)."""
    from accelerate import PartialState

    tokens = int(length_column(train_set).sum())
    budget = run_budget(recipe, len(train_set), tokens, PartialState().num_processes)
    print0(f"global batch {budget['global_batch']:,} rows ({budget['per_device_train_batch_size']} per device x "
           f"{budget['gradient_accumulation_steps']} accumulation x {budget['processes']} processes), "
           f"{budget['tokens_per_step']:,} tokens per step; {budget['steps']:,} steps, {budget['tokens']:,} tokens, "
           f"{budget['epochs_over_mixture']:.2f} epochs over {budget['train_rows']:,} training rows")
    check_budget(budget, recipe.training.max_epochs_over_mixture)
    return budget
