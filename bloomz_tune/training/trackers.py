"""Experiment trackers: ``training.report_to`` checked before a run starts, and the resolved recipe logged.

The names go to transformers' Trainer as they are (tensorboard, wandb, trackio, mlflow, ...). A name that
transformers does not know, or whose package is not installed, stops the run before anything is written.
With tensorboard, the event files (under ``<output_dir>/checkpoints/runs/``) hold the training scalars and
the resolved recipe as the text ``recipe``.
"""

from __future__ import annotations

from transformers import TrainerCallback

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.seam import reporting_integrations


def check_trackers(report_to: list[str]) -> None:
    """Raise BloomzTuneError naming ``training.report_to``'s first unknown or not installed tracker."""
    known, installed = reporting_integrations()
    for name in report_to:
        if name in ("all", "none"):
            continue
        if name not in known:
            raise BloomzTuneError(f"training.report_to: unknown tracker {name!r}; transformers knows "
                                  f"{', '.join(sorted(known))}")
        if name not in installed:
            raise BloomzTuneError(f"training.report_to: {name} is known to transformers but its package is not "
                                  "installed here")


class RecipeConfigCallback(TrainerCallback):
    """At the start of training, log the resolved recipe (YAML) to the trackers that take text (tensorboard)."""

    def __init__(self, trainer, recipe_yaml: str):
        self.trainer = trainer
        self.recipe_yaml = recipe_yaml

    def on_train_begin(self, args, state, control, **kwargs):
        from transformers.integrations import TensorBoardCallback

        if not state.is_world_process_zero:
            return
        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                callback.tb_writer.add_text("recipe", f"```yaml\n{self.recipe_yaml}\n```")
