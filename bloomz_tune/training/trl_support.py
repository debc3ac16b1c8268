"""bloomz_tune inside TRL: correct BLOOM packing, BLOOMZ's loss and our packed collator in ``trl.SFTTrainer``.

For users who keep their TRL script (README "Already using TRL?")::

    from trl import SFTConfig, SFTTrainer
    from bloomz_tune import patch_bloom, use_bloomz_loss

    model = patch_bloom(AutoModelForCausalLM.from_pretrained("bigscience/bloom-560m"))   # before SFTTrainer
    trainer = SFTTrainer(model=model, args=SFTConfig(packing=True, ...), train_dataset=...)
    use_bloomz_loss(trainer)            # optional: BLOOMZ's per-sample loss instead of TRL's token mean
    trainer.train()

- **Packing**: TRL's packed batches mark samples only by ``position_ids`` restarting at 0. The patched BLOOM
  (``model.bloom.patch_bloom``) turns them into segment ids (``model.packed_inputs``), so each packed sample
  attends only to itself; a packed batch with neither position ids nor segment ids is refused. Patch before
  building the trainer: TRL wraps the model's forward with its own fused head, which then calls ours.
- **Loss** (``use_bloomz_loss``): BLOOMZ's ``sample_mean`` (each sample's mean target-token loss, averaged over
  the samples of the optimizer step), or ``token_mean``, as TRL's ``compute_loss_func``. TRL hands that function
  the logits and labels only, so a sample is a run of consecutive target labels: exact for prompt–completion
  data (one completion per sample; TRL sets the first label of every packed sample to -100, so two samples'
  targets never touch). A conversation with several assistant turns counts each turn as a sample. The step's
  item count is ours too, so gradient accumulation and data parallelism give the loss of one big batch.
- **Collator** (``PackedCollator``): for a dataset the user tokenizes (``input_ids``, ``labels``), packs each
  batch's samples into rows of ``max_length`` by best fit with ``segment_ids``; pass it as
  ``SFTTrainer(data_collator=...)`` with ``packing=False``.

Nothing here imports TRL: it plugs into the ``compute_loss_func`` and ``data_collator`` hooks of the Trainer
that TRL's SFTTrainer extends, so TRL stays an optional dependency of bloomz_tune.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.loss import reduce_token_losses
from bloomz_tune.recipe import LOSS_TYPES
from bloomz_tune.seam import count_items_with
from bloomz_tune.tokens.batches import PaddingCollator
from bloomz_tune.tokens.packing import plan_rows
from bloomz_tune.tokens.tokenizing import IGNORE_INDEX


def target_runs(labels: torch.Tensor) -> torch.Tensor:
    """(batch, L) sample ids for a batch without segment ids: each run of consecutive target labels is a sample.

    Position t belongs to the run of label t (aligned with ``labels``); ids count from 1 along each row, 0 where the
    label is IGNORE_INDEX.
    """
    target = labels != IGNORE_INDEX
    previous = torch.zeros_like(target)
    previous[:, 1:] = target[:, :-1]
    return (target & ~previous).long().cumsum(-1) * target.long()


def select_run_targets(labels: torch.Tensor):
    """``model.loss.select_targets`` for a batch without segment ids, its samples being ``target_runs``.

    Returns (positions (N, 2), target_ids (N,), sample_ids (N,)): position t predicts label t+1, which belongs to
    one run; sample ids number the (row, run) pairs densely.
    """
    runs = target_runs(labels)[:, 1:]
    rows, cols = (runs > 0).nonzero(as_tuple=True)
    keys = rows * (int(runs.max()) + 1) + runs[rows, cols] if rows.numel() else rows
    _, sample_ids = torch.unique(keys, return_inverse=True)
    return torch.stack([rows, cols], dim=1), labels[:, 1:][rows, cols], sample_ids


def sample_losses(logits: torch.Tensor, labels: torch.Tensor, loss_type: str = "sample_mean"):
    """(sum of per-item losses, item count) for full ``logits`` (batch, L, vocab) and aligned ``labels``."""
    if loss_type not in LOSS_TYPES:
        raise BloomzTuneError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    labels = labels.to(logits.device)
    positions, target_ids, sample_ids = select_run_targets(labels)
    token_losses = F.cross_entropy(logits[positions[:, 0], positions[:, 1]].float(), target_ids, reduction="none")
    return reduce_token_losses(token_losses, sample_ids, loss_type)


def count_step_items(batches: list[dict], loss_type: str = "sample_mean") -> int:
    """The items (samples or target tokens) that ``sample_losses`` averages over, in a step's micro-batches."""
    total = 0
    for batch in batches:
        labels = batch["labels"]
        _, target_ids, sample_ids = select_run_targets(labels)
        total += target_ids.numel() if loss_type == "token_mean" else (int(sample_ids.max()) + 1 if len(sample_ids)
                                                                      else 0)
    return total


def use_bloomz_loss(trainer, loss_type: str = "sample_mean"):
    """Make ``trainer`` (TRL's SFTTrainer or transformers' Trainer) train on BLOOMZ's loss; returns ``trainer``.

    Sets ``compute_loss_func`` and the count of items the step's loss is divided by (samples for
    ``sample_mean``, target tokens for ``token_mean``), summed over the step's micro-batches and processes.
    """
    if loss_type not in LOSS_TYPES:
        raise BloomzTuneError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")

    def count(batches: list[dict], device):
        items = torch.tensor(count_step_items(batches, loss_type), device=device)
        if trainer.accelerator.num_processes > 1:
            items = trainer.accelerator.gather(items).sum()
        return items

    def compute_loss_func(outputs, labels, num_items_in_batch=None):
        loss_sum, items = sample_losses(outputs.logits, labels, loss_type)
        if num_items_in_batch is None:
            return loss_sum / max(items, 1)
        return loss_sum / torch.as_tensor(num_items_in_batch, device=loss_sum.device).clamp(min=1)

    trainer.compute_loss_func = compute_loss_func
    count_items_with(trainer, count)
    return trainer


@dataclass
class PackedCollator:
    """Tokenized samples (``input_ids``, ``labels``) -> rows of at most ``max_length`` with ``segment_ids``.

    Each batch's samples are packed whole by best fit (``tokens.packing.plan_rows``) and the rows padded as
    ``tokens.batches.PaddingCollator`` pads them. A sample's first label is set to -100: it would be predicted
    from the previous sample's last token. A sample longer than ``max_length`` is refused.
    """

    pad_token_id: int
    max_length: int = 2048
    pad_to_multiple_of: int | None = 8

    def __call__(self, features: list[dict]) -> dict:
        if not features:
            raise BloomzTuneError("the collator got an empty list of samples")
        lengths = [len(f["input_ids"]) for f in features]
        for i, n in enumerate(lengths):
            if not 1 <= n <= self.max_length:
                raise BloomzTuneError(f"sample {i} of the batch has {n} tokens; PackedCollator takes 1.."
                                      f"{self.max_length} (max_length)")
        rows = []
        for members in plan_rows(lengths, self.max_length, "best_fit"):
            input_ids, labels, segments = [], [], []
            for k, i in enumerate(members, start=1):
                ids = list(features[i]["input_ids"])
                lab = list(features[i].get("labels", ids))
                input_ids += ids
                labels += [IGNORE_INDEX] + lab[1:]
                segments += [k] * len(ids)
            rows.append({"input_ids": input_ids, "labels": labels, "segment_ids": segments})
        return PaddingCollator(self.pad_token_id, self.pad_to_multiple_of)(rows)
