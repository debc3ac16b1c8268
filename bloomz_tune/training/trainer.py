"""transformers' Trainer with BLOOMZ's loss, logits only at target positions, and a throughput log.

The loss of an optimizer step is the sum of per-item losses over every micro-batch of the step on every
process, divided by the item count of the whole step (samples for ``sample_mean``, target tokens for
``token_mean``). The Trainer counts items before the step (``items_in_batch``), so gradient
accumulation and data parallelism give exactly the loss of one big batch.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from transformers import TrainerCallback, TrainingArguments
from transformers.integrations import is_deepspeed_zero3_enabled
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from bloomz_tune.errors import BloomzTuneError, TrainingDiverged
from bloomz_tune.model.bloom import causal_lm
from bloomz_tune.model.loading import bf16_supported, untie_trained_embedding
from bloomz_tune.model.loss import batch_loss_sum, count_items
from bloomz_tune.runtime import interactive
from bloomz_tune.seam import TrainerSeam
from bloomz_tune.tokens.batches import LengthGroupedSampler, length_column
from bloomz_tune.training.budget import global_batch
from bloomz_tune.training.rundir import mark_complete
from bloomz_tune.training.throughput import ThroughputMeter


class BloomzTrainer(TrainerSeam):
    """Trainer whose loss is ``loss.batch_loss_sum`` normalised over the whole optimizer step."""

    loss_is_scaled_for_ga = True

    def __init__(self, *args, loss_type: str = "sample_mean", loss_chunk_size: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.loss_type = loss_type
        # ZeRO-3 gathers the head's weight at every call of the head, a collective: processes with different numbers
        # of targets would call it a different number of times and wait on each other, so it runs in one piece.
        self.loss_chunk_size = None if is_deepspeed_zero3_enabled() else loss_chunk_size
        if self.is_fsdp_enabled:
            untie_trained_embedding(self.model)  # before accelerate shards it, in train()
        self.meter = ThroughputMeter(causal_lm(self.model).config, device=self.args.device)
        # Our log line replaces the raw dict that transformers prints (with or without its progress bar).
        self.remove_callback(ProgressCallback)
        self.remove_callback(PrinterCallback)
        self.add_callback(LinePrinterCallback if self.args.disable_tqdm else LineProgressCallback)

    def checkpoint_saved(self, trial) -> None:
        """Once every process has written its part of the checkpoint, mark it complete."""
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            mark_complete(Path(self.checkpoint_folder(trial)), self.state.global_step)

    def checkpoint_failed(self, trial, err: Exception) -> None:
        """A checkpoint that could not be written (a full or read-only disk) stops the run with one line; the
        cut-short checkpoint has no marker, so a resume skips it."""
        raise BloomzTuneError(
            f"writing {self.checkpoint_folder(trial)} failed at step {self.state.global_step} "
            f"({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else 'no detail'}); free disk space, "
            f"then resume with training.resume_from_checkpoint=auto") from None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """As transformers saves, except a save asked for outside training (final/) under FSDP with sharded state
        dicts: transformers writes no weights there (its checkpoints hold the shards); here every process takes
        part in gathering the whole weights, which rank 0 saves as safetensors like a one-process run."""
        plugin = getattr(self.accelerator.state, "fsdp_plugin", None)
        if _internal_call or not self.is_fsdp_enabled or "FULL_STATE_DICT" in str(plugin.state_dict_type):
            return super().save_model(output_dir, _internal_call)
        state_dict = self.accelerator.get_state_dict(self.model)
        self.save_weights(output_dir if output_dir is not None else self.args.output_dir, state_dict)

    def state_dict_to_save(self, state_dict: dict | None) -> dict | None:
        """Weights gathered from FSDP or DeepSpeed shards are copies: tied weights (BLOOM's head is its embedding)
        no longer share memory and save_pretrained would write both. Keep the first name of each shared parameter,
        as a one-process save does."""
        if state_dict is not None:
            kept = {name for name, _ in self.model.named_parameters()}
            for name, _ in self.model.named_parameters(remove_duplicate=False):
                if name not in kept:
                    state_dict.pop(name, None)
        return state_dict

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        # One process's loss only: under data parallelism a non-finite loss on one process makes the all-reduced
        # gradient norm non-finite on every process, which stops them all at once (grad_norm_computed).
        if self.accelerator.num_processes == 1 and not bool(torch.isfinite(loss).all()):
            self.diverged("loss", float(loss))
        return loss

    def grad_norm_computed(self, norm) -> None:
        if norm is not None and not math.isfinite(float(norm)):
            self.diverged("gradient norm", float(norm))

    def diverged(self, what: str, value: float) -> None:
        """Stop the run: a non-finite value would make every later weight NaN and the run look finished."""
        raise TrainingDiverged(
            f"training diverged at step {self.state.global_step + 1}: the {what} is {value} (learning_rate "
            f"{self.args.learning_rate:g}); the run stopped before that step's update and wrote no final/; lower "
            f"training.learning_rate (or check the data), then resume from the last checkpoint or start again")

    def train(self, *args, **kwargs):
        self.meter.read()  # the first logged window starts with training, not when the trainer was built
        return super().train(*args, **kwargs)

    def train_sampler(self, dataset):
        """Length grouping (unpacked rows) from the whole ``length`` column at once; see batches.LengthGroupedSampler.

        Grouped by the global batch (transformers groups by one process's share), so a step trains on the same
        rows however the global batch is split over processes and accumulation: 8 GPUs x 4 rows as 4 x 8.
        """
        if (self.args.train_sampling_strategy == "group_by_length"
                and self.args.length_column_name in getattr(dataset, "column_names", ())):
            args = self.args
            step_rows = global_batch(args, args.world_size)
            return LengthGroupedSampler(length_column(dataset, args.length_column_name), step_rows)
        return None

    def items_in_batch(self, batch_samples: list, device: torch.device):
        items = sum(count_items(b["labels"], b.get("segment_ids"), self.loss_type) for b in batch_samples)
        items = torch.tensor(items, device=device)
        if self.accelerator.num_processes > 1:
            items = self.accelerator.gather(items).sum()
        return items

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, items, n_targets = batch_loss_sum(model, inputs, self.loss_type, self.loss_chunk_size)
        if num_items_in_batch is None:
            loss = loss_sum / max(items, 1)
        else:
            # Each process divides by the global count; DDP's gradient average then divides by the number of
            # processes, which this factor undoes.
            loss = loss_sum / num_items_in_batch.clamp(min=1) * self.accelerator.num_processes
        if model.training:
            self.meter.update(inputs, logit_tokens=n_targets)
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:
            rates = self.meter.read()
            summed = torch.tensor([rates["real_tokens_per_s"], rates["target_tokens_per_s"], rates["tflops"]],
                                  dtype=torch.float64, device=self.args.device)
            if self.accelerator.num_processes > 1:  # rates add up over processes; memory is per process
                summed = self.accelerator.reduce(summed, reduction="sum")
            logs["tokens_per_second"] = round(float(summed[0]), 1)
            logs["target_tokens_per_second"] = round(float(summed[1]), 1)
            logs["packing_efficiency"] = round(rates["packing_efficiency"], 4)
            logs["peak_memory_gb"] = round(rates["peak_memory_gib"], 3)
            if "mfu" in rates:
                logs["tflops"] = round(float(summed[2]), 2)
                logs["mfu"] = round(rates["mfu"], 4)
        super().log(logs, start_time)


class AtTrainBegin(TrainerCallback):
    """Calls ``fn(model)`` once, as training starts: the model is then wrapped (DeepSpeed's engine gathers a
    ZeRO-3 shard's weights when a layer runs) and a resumed run's weights are loaded."""

    def __init__(self, fn):
        self.fn = fn

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.fn(model)


def format_log_line(step: int, max_steps: int, logs: dict) -> str:
    """The one fixed-format line printed per logging step."""
    return (f"step {step:>6}/{max_steps} | loss {logs['loss']:.4f} | lr {logs.get('learning_rate', 0):.2e} | "
            f"tok/s {logs.get('tokens_per_second', 0):,.0f} | target tok/s {logs.get('target_tokens_per_second', 0):,.0f}"
            f" | packing {logs.get('packing_efficiency', 0):.1%} | peak mem {logs.get('peak_memory_gb', 0):.2f} GB"
            + (f" | MFU {logs['mfu']:.1%}" if "mfu" in logs else ""))


class LineProgressCallback(ProgressCallback):
    """On a terminal: the progress bar, with our fixed-format line printed above it at each logging step."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs and "loss" in logs:
            self.training_bar.write(format_log_line(state.global_step, state.max_steps, logs))


class LinePrinterCallback(TrainerCallback):
    """Elsewhere (a file, a pipe, CI): no bar, one plain line per logging step, flushed."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs and "loss" in logs:
            print(format_log_line(state.global_step, state.max_steps, logs), flush=True)


class MetricsFileCallback(TrainerCallback):
    """Appends one JSON object per logging step to ``metrics.jsonl`` (rank 0 only)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def training_arguments(recipe, checkpoint_dir: str | Path) -> TrainingArguments:
    """transformers TrainingArguments from the recipe's training section."""
    t = recipe.training
    bf16 = t.bf16
    if bf16 == "auto":
        bf16 = bf16_supported() and not t.fp16
    # transformers renamed gradient_checkpointing to activation_checkpointing; pass whichever this version has.
    checkpointing = ("activation_checkpointing" if "activation_checkpointing" in TrainingArguments.__dataclass_fields__
                     else "gradient_checkpointing")
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_epsilon,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        seed=t.seed,
        data_seed=t.seed,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        max_steps=t.max_steps,
        num_train_epochs=t.num_train_epochs,
        bf16=bool(bf16),
        fp16=t.fp16,
        **{checkpointing: t.gradient_checkpointing,
           f"{checkpointing}_kwargs": {"use_reentrant": False} if t.gradient_checkpointing else None},
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a non-finite loss stops the run (BloomzTrainer.diverged), never hidden
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        dataloader_num_workers=t.dataloader_num_workers,
        report_to=list(t.report_to) or "none",
        remove_unused_columns=False,
        train_sampling_strategy="random" if recipe.data.packing else "group_by_length",
        length_column_name="length",
        ddp_find_unused_parameters=False,
        dataloader_pin_memory=torch.cuda.is_available(),
        disable_tqdm=not interactive(),  # a bar's carriage returns garble a log file or a pipe
    )
