"""BLOOM's config and module tree, without weights: what a run or ``estimate`` knows of a model before loading it.

Two readers with two contracts: ``checked_config`` (the model a run will load: its folder or Hub id checked, each
problem recorded for one report) and ``estimate_config`` (a shape for ``estimate``: a local folder, the Hub cache
or the public bigscience shapes, never the network). ``bloom_modules`` is BLOOM's module tree from a config, named
as in ``BloomForCausalLM`` (tested equal to transformers'), which LoRA targets are checked against.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.loading import looks_like_hub_id
from bloomz_tune.model.tiny import tiny_config
from bloomz_tune.recipe import Recipe

PUBLIC_SHAPES = {"bloom-560m": (24, 1024, 16), "bloom-1b1": (24, 1536, 16), "bloom-1b7": (24, 2048, 16),
                 "bloom-3b": (30, 2560, 32), "bloom-7b1": (30, 4096, 32), "bloom": (70, 14336, 112)}


PUBLIC_VOCAB = 250880


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def checked_config(name_or_path: str, revision: str | None, trust_remote_code: bool, problems: list[str]):
    """The config of the model a run loads, checked with its folder (config, safetensors, tokenizer) without
    loading weights; None (with the problems recorded) when unusable. The Hub is asked when it is a Hub id."""
    folder = Path(name_or_path).expanduser()
    if folder.is_dir():
        return _folder_config(folder, trust_remote_code, problems)
    if folder.exists():
        problems.append(f"model.name_or_path: {name_or_path} is a file; give a model folder or a Hub id")
        return None
    if not looks_like_hub_id(name_or_path):
        problems.append(f"model.name_or_path: there is no folder {name_or_path} (and it is not a Hub id)")
        return None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, trust_remote_code=trust_remote_code)
    except ValueError as err:  # remote code asked for and not allowed, or not a transformers model
        problems.append(f"model.name_or_path: {name_or_path}: {str(err).splitlines()[0]}")
        return None
    except OSError as err:
        problems.append(f"model.name_or_path: cannot read the config of Hub model {name_or_path!r} (no network, "
                        f"not in the local cache, or not a model repository): {str(err).splitlines()[0]}")
        return None
    return _bloom_only(config, name_or_path, problems)


def _folder_config(folder: Path, trust_remote_code: bool, problems: list[str]):
    where = f"model.name_or_path: {folder}"
    if not (folder / "config.json").is_file():
        problems.append(f"{where} has no config.json (is it a model folder?)")
        return None
    try:
        raw = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        problems.append(f"{where}/config.json is not valid JSON ({err})")
        return None
    if raw.get("auto_map") and not trust_remote_code:
        problems.append(f"{where} needs code from the model folder (auto_map in config.json); set "
                        "model.trust_remote_code: true only if you trust it")
        return None
    if not any(folder.glob("*.safetensors")):
        pickled = sorted(p.name for p in folder.glob("*.bin"))
        problems.append(f"{where} has no safetensors weights" + (f" (only pickled {', '.join(pickled)}, which "
                        "bloomz_tune does not load; convert them to safetensors)" if pickled else ""))
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"{where} has no tokenizer (tokenizer.json or tokenizer_config.json)")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code)
    except (ValueError, OSError) as err:
        problems.append(f"{where}: config.json cannot be read: {str(err).splitlines()[0]}")
        return None
    return _bloom_only(config, str(folder), problems)


def _bloom_only(config, name: str, problems: list[str]):
    if getattr(config, "model_type", None) != "bloom":
        problems.append(f"model.name_or_path: {name} is a {getattr(config, 'model_type', '?')!r} model; "
                        "bloomz_tune trains BLOOM models (model_type 'bloom')")
        return None
    return config


def estimate_config(recipe: Recipe):
    """The BloomConfig a recipe trains, for ``estimate``: from a local folder, the Hub cache or the public
    bigscience shapes, never the network and never weights (ConfigError-free: one BloomzTuneError)."""
    m = recipe.model
    if m.tiny is not None:
        return tiny_config(m.tiny)
    return config_without_weights(m.name_or_path, m.revision, "model.name_or_path")


def config_without_weights(name_or_path: str, revision: str | None = None, where: str = "model"):
    """A BLOOM's config from a local folder (or its config.json), a LoRA adapter folder (its base model's), the
    Hub cache or the public bigscience shapes; never the network, never weights. ``where`` names the setting in
    errors."""
    from transformers import AutoConfig, BloomConfig

    path = Path(name_or_path).expanduser()
    if (path / "adapter_config.json").is_file():
        try:
            base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
        except (OSError, ValueError, KeyError):
            raise BloomzTuneError(f"{where}: {path}/adapter_config.json names no base model") from None
        return config_without_weights(base, None, f"{where} (the adapter's base model)")
    try:
        if path.is_file():
            config = AutoConfig.from_pretrained(str(path.parent)) if path.name == "config.json" else None
        else:
            config = AutoConfig.from_pretrained(name_or_path, revision=revision, local_files_only=True)
    except (OSError, ValueError):
        config = None
    if config is None:
        shape = PUBLIC_SHAPES.get(re.sub(r"^bigscience/bloomz?-?", "bloom-", name_or_path).rstrip("-"))
        if not name_or_path.startswith("bigscience/") or shape is None:
            raise BloomzTuneError(f"{where}: no config.json for {name_or_path!r} (not a local folder, "
                                  "not in the Hub cache); point it at a folder holding config.json")
        config = BloomConfig(n_layer=shape[0], hidden_size=shape[1], n_head=shape[2], vocab_size=PUBLIC_VOCAB)
    if config.model_type != "bloom":
        raise BloomzTuneError(f"{where}: {name_or_path!r} is a {config.model_type} model, not BLOOM")
    return config


@dataclass
class Module:
    name: str
    weight: int
    bias: int
    shape: tuple[int, int] | None = None  # (in, out) of a Linear; (vocab, h) of an Embedding
    kind: str = "norm"  # "linear", "embedding" or "norm"
    tied: bool = False  # the head, tied to the embedding: not counted again


def bloom_modules(config) -> list[Module]:
    """BLOOM's modules with their parameter counts, named as in ``BloomForCausalLM``."""
    h, v = config.hidden_size, config.vocab_size
    out = [Module("transformer.word_embeddings", v * h, 0, (v, h), "embedding"),
           Module("transformer.word_embeddings_layernorm", h, h)]
    for i in range(config.n_layer):
        p = f"transformer.h.{i}."
        out += [Module(p + "input_layernorm", h, h),
                Module(p + "self_attention.query_key_value", 3 * h * h, 3 * h, (h, 3 * h), "linear"),
                Module(p + "self_attention.dense", h * h, h, (h, h), "linear"),
                Module(p + "post_attention_layernorm", h, h),
                Module(p + "mlp.dense_h_to_4h", 4 * h * h, 4 * h, (h, 4 * h), "linear"),
                Module(p + "mlp.dense_4h_to_h", 4 * h * h, h, (4 * h, h), "linear")]
    tied = getattr(config, "tie_word_embeddings", True)
    return out + [Module("transformer.ln_f", h, h), Module("lm_head", v * h, 0, (h, v), "linear", tied=tied)]


def module_matches(name: str, targets: list[str]) -> bool:
    """peft's rule for ``target_modules``: a module is adapted when its full name or its last parts equal a target."""
    return name in targets or any(name.endswith("." + t) for t in targets)
