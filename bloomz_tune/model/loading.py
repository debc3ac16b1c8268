"""Load BLOOM (Hub id or local folder, safetensors only) for training or evaluation, and add LoRA.

``load_model`` and ``load_tokenizer`` load what a recipe names; ``apply_lora`` wraps the model in a peft LoRA
model. ``load_for_eval`` takes what ``bloomz-tune eval`` is given: a model folder, a LoRA adapter folder (its
base model read from adapter_config.json) or a Hub id, and checks that the tokenizer fits the model. The changes
to BLOOM itself (packed attention, logits at chosen positions) are in bloom.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.bloom import causal_lm
from bloomz_tune.recipe import DTYPE_CHOICES
from bloomz_tune.seam import peft_model
from bloomz_tune.tokens.tokenizing import load_tokenizer

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # the rest of DTYPE_CHOICES


def bf16_supported() -> bool:
    """Whether this machine trains in bfloat16: a CUDA GPU that has it."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_dtype(name: str) -> torch.dtype | str:
    """'auto' keeps the checkpoint's dtype; 'bf16-if-supported' picks bfloat16 on a GPU that has it, else fp32."""
    if name == "auto":
        return "auto"
    if name == "bf16-if-supported":
        return torch.bfloat16 if bf16_supported() else torch.float32
    try:
        return DTYPES[name]
    except KeyError:
        raise BloomzTuneError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPE_CHOICES)}") from None


def load_model(name_or_path: str, dtype: str = "auto", revision: str | None = None,
               trust_remote_code: bool = False, **config_overrides):
    """A causal LM from the Hub or a local folder. Weights are read as safetensors only.

    ``config_overrides`` replace config values (e.g. ``hidden_dropout=0.1``); None values are ignored.
    """
    from transformers import AutoModelForCausalLM

    kwargs = dict(dtype=resolve_dtype(dtype), revision=revision, trust_remote_code=trust_remote_code,
                  use_safetensors=True)
    kwargs.update({k: v for k, v in config_overrides.items() if v is not None})
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except ValueError as err:
        if "device_map" not in kwargs:
            raise
        raise BloomzTuneError(f"cannot place {name_or_path!r} with device_map={kwargs['device_map']!r}: {err}") from err
    except OSError as err:
        hint = "" if Path(name_or_path).exists() else " (not a local folder; is it a Hub id you can reach?)"
        raise BloomzTuneError(f"cannot load a model from {name_or_path!r}{hint}: {err}") from err
    return model


def apply_lora(model, r: int, lora_alpha: int, lora_dropout: float, target_modules: list[str],
               bias: str = "none", modules_to_save: list[str] | None = None):
    """Wrap ``model`` in a peft LoRA model; only the adapter weights (and ``modules_to_save``) stay trainable."""
    from peft import LoraConfig

    config = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=list(target_modules),
                        bias=bias, modules_to_save=list(modules_to_save or []) or None, task_type="CAUSAL_LM")
    return peft_model(model, config)


def parse_max_memory(text: str | None) -> dict | None:
    """``--max-memory`` as accelerate takes it: "0=20GiB,1=20GiB,cpu=64GiB" -> {0: "20GiB", 1: "20GiB", "cpu": ...}."""
    if not text:
        return None
    limits = {}
    for part in text.split(","):
        key, sep, size = part.strip().partition("=")
        if not sep or not key or not size:
            raise BloomzTuneError(f"--max-memory: {part.strip()!r} is not DEVICE=SIZE (e.g. 0=20GiB,cpu=64GiB)")
        limits[int(key) if key.isdigit() else key] = size
    return limits


def placement(device_map: str | dict | None, max_memory: dict | None, offload_folder: str | None) -> dict:
    """from_pretrained's keywords for accelerate's big-model loading: the model split over GPUs, CPU memory and
    disk (``device_map="auto"`` fills each device of ``max_memory`` in turn; what is left goes to
    ``offload_folder``). Empty without a device map."""
    if device_map is None:
        if max_memory or offload_folder:
            raise BloomzTuneError("--max-memory and --offload-folder take effect with --device-map (e.g. auto)")
        return {}
    return {"device_map": device_map, "max_memory": max_memory, "offload_folder": offload_folder}


def load_for_eval(name_or_path: str, dtype: str = "auto", device: str | None = None, revision: str | None = None,
                  trust_remote_code: bool = False, device_map: str | dict | None = None,
                  max_memory: dict | None = None, offload_folder: str | None = None):
    """A model folder, a LoRA adapter folder (base model from adapter_config.json) or a Hub id -> (model, tokenizer).

    An adapter's tokenizer is the adapter folder's own when it has one, else the base model's; it must be the
    base model's tokenizer (same vocabulary) and fit the base model's embedding. With ``device_map`` the model is
    split as ``placement`` says instead of moved to ``device``.
    """
    folder = Path(name_or_path)
    split = placement(device_map, max_memory, offload_folder)
    if split and device:
        raise BloomzTuneError("give either --device or --device-map, not both")
    if folder.is_dir():
        if (folder / "adapter_config.json").is_file():
            model, tokenizer = _load_adapter(folder, dtype, revision, trust_remote_code, split)
        elif (folder / "config.json").is_file():
            tokenizer = load_tokenizer(str(folder), trust_remote_code=trust_remote_code)
            model = load_model(str(folder), dtype=dtype, trust_remote_code=trust_remote_code, **split)
        else:
            raise BloomzTuneError(f"{folder} is neither a model folder (config.json) nor a LoRA adapter folder "
                                  "(adapter_config.json)")
    elif folder.exists():
        raise BloomzTuneError(f"{folder} is a file; give a model folder, an adapter folder or a Hub id")
    elif not looks_like_hub_id(name_or_path):
        raise BloomzTuneError(f"there is no folder {name_or_path} (and it is not a Hub id)")
    else:
        tokenizer = load_tokenizer(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
        model = load_model(name_or_path, dtype=dtype, revision=revision, trust_remote_code=trust_remote_code,
                           **split)
    _check_vocab(tokenizer, model, name_or_path)
    if split:
        return model.eval(), tokenizer  # accelerate placed every layer
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


def looks_like_hub_id(name: str) -> bool:
    """Whether ``name`` can be a Hub repository id ("name" or "owner/name"), rather than a local path."""
    return bool(HUB_ID.match(name)) and not name.startswith((".", "~"))


def _load_adapter(folder: Path, dtype, revision, trust_remote_code, split: dict):
    from peft import PeftModel

    if not (folder / "adapter_model.safetensors").is_file():
        pickled = (folder / "adapter_model.bin").is_file()
        raise BloomzTuneError(f"{folder} has no adapter_model.safetensors" + (
            " (only a pickled adapter_model.bin, which bloomz_tune does not load: loading pickles can run code; "
            "convert it to safetensors)" if pickled else ""))
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise BloomzTuneError(f"{folder}/adapter_config.json names no base_model_name_or_path")
    base_tokenizer = None
    try:
        base_tokenizer = load_tokenizer(base, trust_remote_code=trust_remote_code)
    except BloomzTuneError:
        pass
    has_own = any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    tokenizer = load_tokenizer(str(folder), trust_remote_code=trust_remote_code) if has_own else base_tokenizer
    if tokenizer is None:
        raise BloomzTuneError(f"no tokenizer for adapter {folder}: none in the folder and none loadable from its "
                              f"base model {base!r}")
    if has_own and base_tokenizer is not None and tokenizer.get_vocab() != base_tokenizer.get_vocab():
        raise BloomzTuneError(f"the tokenizer of adapter {folder} is not the tokenizer of its base model {base!r} "
                              "(different vocabularies): the adapter was trained on another base model")
    model = load_model(base, dtype=dtype, trust_remote_code=trust_remote_code, **split)
    _check_vocab(tokenizer, model, str(folder))
    try:
        model = PeftModel.from_pretrained(model, str(folder), revision=revision)
    except RuntimeError as err:  # size mismatch: the adapter's shapes are not the base model's
        raise BloomzTuneError(f"adapter {folder} does not fit its base model {base!r}: {err}") from err
    return model, tokenizer


def _check_vocab(tokenizer, model, where: str) -> None:
    rows = causal_lm(model).get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise BloomzTuneError(f"{where}: the tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                              f"{rows} rows; the tokenizer does not belong to this model")


def untie_trained_embedding(model) -> bool:
    """Give the output head its own frozen copy of the weights when LoRA trains a copy of the tied input embedding
    (``modules_to_save``); True when it did.

    peft trains the copy and leaves the head on the frozen original, which is then one parameter in two places.
    FSDP2 refuses a parameter in two shard groups (the embedding's and the head's), and accelerate's
    ``tie_weights()`` while sharding would move the head onto the trained copy. Same values, same training; one
    more frozen vocabulary x hidden matrix, so the trainer does this only under FSDP.
    """
    lm = causal_lm(model)
    head, original = lm.get_output_embeddings(), getattr(lm.get_input_embeddings(), "original_module", None)
    if head is None or original is None or head.weight is not original.weight:
        return False
    head.weight = torch.nn.Parameter(original.weight.detach().clone(), requires_grad=False)
    lm.config.tie_word_embeddings = False  # so that no later tie_weights() joins them again
    return True
