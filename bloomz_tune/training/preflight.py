"""Checks that run before a training run touches anything: cheap ones first, the mixture build after them.

A day of GPU time should not end on a typo, and a problem found late should not leave a run directory half
rewritten. ``check_training_inputs(recipe)`` looks at what the run will need, without loading weights or
building data: where it writes (output_dir, the mixture cache), the model folder or Hub id (config.json, a BLOOM
model, no remote code unless allowed, safetensors weights, a tokenizer) and the LoRA target modules (matched
against the model's own module names, from its config) and an attention backend the device has. Every
problem is reported at once.
"""

from __future__ import annotations

from pathlib import Path

from bloomz_tune.errors import ConfigError
from bloomz_tune.model.config import bloom_modules, checked_config, module_matches
from bloomz_tune.model.tiny import tiny_config
from bloomz_tune.recipe import Recipe
from bloomz_tune.training.rundir import writable_problem


def check_training_inputs(recipe: Recipe) -> None:
    """Raise one ConfigError listing every problem with the places a run writes to and the model it loads."""
    problems = []
    for problem in (writable_problem(Path(recipe.output_dir).expanduser(), "output_dir"),
                    _cache_problem(recipe)):
        if problem:
            problems.append(problem)
    config = None
    if recipe.model.tiny is None:
        config = checked_config(recipe.model.name_or_path, recipe.model.revision, recipe.model.trust_remote_code,
                              problems)
    else:
        config = tiny_config(recipe.model.tiny)
    if config is not None and recipe.lora.enabled:
        problems += lora_target_problems(config, recipe.lora.target_modules, recipe.lora.modules_to_save)
    if recipe.model.tiny is None and Path(recipe.model.name_or_path).expanduser().is_dir():
        problems += weight_file_problems(Path(recipe.model.name_or_path).expanduser(), config)
    if recipe.model.attention == "flex" and not _has_gpu():
        problems.append("model.attention: flex attention needs a GPU to train (torch has no flex backward on the "
                        "CPU); use sdpa here")
    if problems:
        raise ConfigError(problems, source=recipe.source)


def weight_file_problems(folder: Path, config=None) -> list[str]:
    """Safetensors files of a model folder whose header is unreadable, whose data is cut short, or whose embedding
    or layer count differs from config.json (read from the headers and file sizes alone: no weights are loaded)."""
    from safetensors import safe_open

    problems, layers = [], set()
    for path in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(path), "pt") as f:
                for name in f.keys():
                    parts = name.split(".")
                    if "h" in parts[:-1] and parts[parts.index("h") + 1].isdigit():
                        layers.add(int(parts[parts.index("h") + 1]))
                    if name.endswith("word_embeddings.weight") and config is not None:
                        shape = list(f.get_slice(name).get_shape())
                        if shape != [config.vocab_size, config.hidden_size]:
                            problems.append(f"model.name_or_path: {path.name}: {name} is {shape}, but config.json "
                                            f"says vocab_size {config.vocab_size} x hidden_size {config.hidden_size}")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error type for a bad or cut file
            problems.append(f"model.name_or_path: {path} is not a whole safetensors file ({str(err)[:120]})")
    if config is not None and layers and len(layers) != config.n_layer:
        problems.append(f"model.name_or_path: the weights hold {len(layers)} layers, config.json says n_layer "
                        f"{config.n_layer}")
    return problems


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _cache_problem(recipe: Recipe) -> str | None:
    mixture = Path(recipe.data.mixture)
    if mixture.is_dir():  # a finished build: nothing is written to the cache
        return None
    problem = writable_problem(Path(recipe.data.mixture_cache).expanduser(), "data.mixture_cache")
    return problem and problem + " (mixture builds are kept there)"


def lora_target_problems(config, target_modules: list[str], modules_to_save: list[str]) -> list[str]:
    """LoRA target and saved module names that match no module of the model (peft's suffix rule)."""

    modules = bloom_modules(config)  # BLOOM's module tree from its config (tested equal to transformers')
    leaves = sorted({m.name.rsplit(".", 1)[-1] for m in modules if m.kind == "linear"})
    problems = []
    for key, wanted in (("lora.target_modules", target_modules), ("lora.modules_to_save", modules_to_save)):
        for target in wanted:
            if not any(module_matches(m.name, [target]) for m in modules):
                problems.append(f"{key}: {target!r} matches no module of this BLOOM model (its linear layers: "
                                f"{', '.join(leaves)})")
    return problems
