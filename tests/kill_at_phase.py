"""Run the training script and SIGKILL this process in one phase of the run (the kill-and-resume tests).

    python tests/kill_at_phase.py PHASE RECIPE [overrides...]

PHASE: ``build`` (the mixture's files written, its build not yet in place), ``tokenize`` (the tokenized split
written, the run directory not yet written), ``step`` (in the middle of step 3, after checkpoint-2), ``checkpoint``
(checkpoint-4's weights written, its optimizer state and marker not), ``final`` (the final weights half saved),
``evaluation`` (after the sanity check, before results.json) or ``card`` (results written, the card not).
"""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import datasets  # noqa: E402
from transformers import Trainer  # noqa: E402

from bloomz_tune import finetune  # noqa: E402
from bloomz_tune.training.trainer import BloomzTrainer  # noqa: E402

PHASE = sys.argv.pop(1)


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def after(owner, name, when=lambda *a, **k: True):
    """Make ``owner.name`` run as before, then kill the process when ``when(*args)`` holds."""
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        if when(*args, **kwargs):
            die()
        return result

    setattr(owner, name, wrapped)


if PHASE == "build":
    after(datasets.DatasetDict, "save_to_disk")
elif PHASE == "tokenize":
    after(finetune, "tokenized_split")
elif PHASE == "step":
    original_step = BloomzTrainer.training_step

    def step_then_die(self, *args, **kwargs):
        loss = original_step(self, *args, **kwargs)
        if self.state.global_step == 2:  # step 3 has computed its gradients, its update not yet made
            die()
        return loss

    BloomzTrainer.training_step = step_then_die
elif PHASE == "checkpoint":
    original_save = Trainer._save_optimizer_and_scheduler

    def save_then_die(self, output_dir):
        if self.state.global_step == 4:
            die()
        return original_save(self, output_dir)

    Trainer._save_optimizer_and_scheduler = save_then_die
elif PHASE == "final":
    after(BloomzTrainer, "save_model", lambda self, output_dir=None, *a, **k: str(output_dir).endswith(".incoming"))
elif PHASE == "evaluation":
    calls: list = []
    after(finetune, "sanity_accuracy", lambda *a, **k: calls.append(1) or len(calls) == 2)  # the one after training
elif PHASE == "card":
    after(finetune, "plot_loss")
else:
    raise SystemExit(f"unknown phase {PHASE}")
sys.exit(finetune.main(sys.argv[1:]))
