"""Every place bloomz_tune leans on transformers' (and peft's) internals, in one module.

Read from transformers 5.25.0 and peft 0.21.2; pyproject.toml's upper bounds keep installs inside the majors
these were read from. When a new transformers version moves one of these, this file is the one to read:

- ``alibi_slopes``: read off ``build_alibi_tensor`` (``models/bloom/modeling_bloom.py``), so our attention uses
  exactly the model's own slopes (tests/test_bloom.py compares them with the private ``_get_alibi_slopes``
  of 5.25, which earlier 5.x lack).
- ``install_forward``: binds a replacement ``forward`` on one module instance (our BLOOM attention and heads,
  built in ``model/bloom.py``); the class and every other instance keep transformers' forward.
- ``TrainerSeam``: transformers' ``Trainer`` with its private hooks (``_save_checkpoint``, ``_save``,
  ``_get_output_dir``, ``_get_train_sampler``, ``_get_num_items_in_batch``, ``_get_grad_norm``) turned into public
  methods that ``training/trainer.py`` overrides, and ``_load_from_checkpoint`` as ``load_checkpoint_weights``.
- ``cache_keyword`` and ``output_cache``: BLOOM's forward takes and returns its KV cache as ``cache`` from transformers
  5.25 on (the old
  ``past_key_values`` warns there), as ``past_key_values`` before.
- ``cache_field``: the name of the KV cache in a model's output (``cache`` from transformers 5.25 on,
  ``past_key_values`` before).
- ``new_cache`` / ``is_plain_cache``: the ``DynamicCache`` BLOOM's forward makes when ``use_cache`` is on and
  none is given, and whether a cache is exactly that kind (our attention appends to it with ``cache.update``;
  static, quantized or offloaded caches run transformers' own BLOOM attention instead).
- ``reporting_integrations``: the tracker names transformers knows and the installed ones
  (``integrations/integration_utils.py``).
- ``count_items_with``: replaces one Trainer instance's private ``_get_num_items_in_batch`` (what a step's loss
  is divided by), for TRL's SFTTrainer, which we do not subclass (``training/trl_support.py``).
- ``peft_model``: peft's ``get_peft_model``; peft 0.21 reads ``model.is_gradient_checkpointing``, which
  transformers 5.2x deprecates (a FutureWarning on every run that is peft's call, not ours), so it is silenced
  around that one call.
"""

from __future__ import annotations

import types
import warnings

TRANSFORMERS_READ = "5.25.0"  # the version these internals were read from


def alibi_slopes(num_heads: int, device=None):
    """BLOOM's per-head ALiBi slopes (fp32), as transformers computes them for the model: read off its
    ``build_alibi_tensor`` (every 5.x has it) as each head's bias at position 1 (slope x 1, exact)."""
    import torch
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    ones = torch.ones((1, 2), dtype=torch.long, device=device or torch.device("cpu"))
    return build_alibi_tensor(ones, num_heads, torch.float32).view(num_heads, 2)[:, 1].contiguous()


def install_forward(module, forward) -> None:
    """Make ``forward(module, ...)`` this instance's ``forward`` (the class keeps its own)."""
    module.forward = types.MethodType(forward, module)


def cache_keyword(forward) -> str:
    """The keyword a BLOOM forward takes its KV cache by: ``cache`` (transformers 5.25; ``past_key_values`` is
    deprecated there and goes in 5.40) or ``past_key_values`` (earlier 5.x)."""
    import inspect

    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"


def output_cache(output):
    """The KV cache a forward returned (its ``cache_field``; reading ``past_key_values`` on 5.25 logs a
    deprecation)."""
    return getattr(output, cache_field())


def cache_field() -> str:
    """The field a model output holds its KV cache in: ``cache`` (transformers 5.25) or ``past_key_values``."""
    from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions

    return "cache" if "cache" in BaseModelOutputWithPastAndCrossAttentions.__dataclass_fields__ else "past_key_values"


def new_cache(config):
    """The cache BLOOM's own forward creates when ``use_cache`` is on and no cache is given."""
    from transformers import DynamicCache

    return DynamicCache(config=config)


def is_plain_cache(cache) -> bool:
    """True for a ``DynamicCache`` itself (not a subclass): layers that grow by ``update(key, value, layer)``."""
    from transformers import DynamicCache

    return type(cache) is DynamicCache


def reporting_integrations() -> tuple[set[str], set[str]]:
    """(tracker names transformers' Trainer knows, those whose packages are installed here)."""
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    return set(INTEGRATION_TO_CALLBACK), set(get_available_reporting_integrations())


def count_items_with(trainer, count) -> None:
    """Make ``count(batch_samples, device)`` the item count of ``trainer``'s steps (this instance only)."""
    trainer._get_num_items_in_batch = count


def peft_model(model, config):
    """``peft.get_peft_model(model, config)`` without the deprecation warning of peft's own attribute read."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return get_peft_model(model, config)


def _trainer_class():
    from transformers import Trainer

    class TrainerSeam(Trainer):
        """transformers' Trainer whose private hooks call public methods a subclass may override."""

        def _save_checkpoint(self, model, trial):
            try:
                super()._save_checkpoint(model, trial)
            except (OSError, RuntimeError) as err:  # a full disk: torch's zip writer says "unexpected pos"
                self.checkpoint_failed(trial, err)
                raise
            self.checkpoint_saved(trial)

        def checkpoint_failed(self, trial, err: Exception) -> None:
            """Writing a checkpoint raised ``err`` (the checkpoint has no completion marker)."""

        def checkpoint_saved(self, trial) -> None:
            """After a checkpoint is written (every process)."""

        def checkpoint_folder(self, trial=None) -> str:
            """The folder of the checkpoint of the current step."""
            return f"{self._get_output_dir(trial=trial)}/checkpoint-{self.state.global_step}"

        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            super()._save(output_dir, self.state_dict_to_save(state_dict))

        def state_dict_to_save(self, state_dict: dict | None) -> dict | None:
            """The state dict ``save_pretrained`` writes (None: the model's own)."""
            return state_dict

        def save_weights(self, output_dir: str | None, state_dict: dict) -> None:
            """Write ``state_dict`` as this model's weights into ``output_dir`` (transformers' own save)."""
            self._save(output_dir, state_dict=state_dict)

        def _get_grad_norm(self, model, grad_norm=None):
            norm = super()._get_grad_norm(model, grad_norm)
            self.grad_norm_computed(norm)
            return norm

        def grad_norm_computed(self, norm) -> None:
            """The gradient norm of the step about to be taken, before the optimizer step."""

        def load_checkpoint_weights(self, checkpoint: str) -> None:
            """Load a checkpoint's weights (model or adapter) into the model, as resuming does, without training."""
            self._load_from_checkpoint(checkpoint)

        def _get_train_sampler(self, train_dataset=None):
            dataset = train_dataset if train_dataset is not None else self.train_dataset
            return self.train_sampler(dataset) or super()._get_train_sampler(train_dataset)

        def train_sampler(self, dataset):
            """A sampler for the training rows; None for transformers' own."""
            return None

        def _get_num_items_in_batch(self, batch_samples: list, device):
            return self.items_in_batch(batch_samples, device)

        def items_in_batch(self, batch_samples: list, device):
            """What the loss of an optimizer step is divided by, counted over its micro-batches."""
            return Trainer._get_num_items_in_batch(self, batch_samples, device)

    return TrainerSeam


def __getattr__(name: str):
    # TrainerSeam is built on first use, so that importing this module does not import transformers.
    if name == "TrainerSeam":
        cls = _trainer_class()
        globals()["TrainerSeam"] = cls
        return cls
    raise AttributeError(name)
