"""How much memory an evaluation needs on each device, and which device map it would use, before any weight loads.

``bloomz-tune eval MODEL --dry-run [--device-map auto --max-memory 0=70GiB,cpu=200GiB]`` reads the model's config
alone (a local folder, an adapter's base model, the Hub cache, or the public bigscience shapes: see
``model.config.config_without_weights``), builds the model on the meta device (no memory), and asks accelerate's
``infer_auto_device_map`` where each block would go, as ``from_pretrained(device_map=...)`` decides it when
loading. Per device it reports the weights placed there; the first device also holds one forward's working set:
the hidden states of a batch (``--batch-size`` x ``--max-length`` tokens, every layer's kept for the shared-prompt
cache) and the head's fp32 logits for one row of continuation tokens. Weights on "disk" have no limit; a plan whose
memory devices exceed their ``--max-memory`` says it does not fit.
"""

from __future__ import annotations

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.model.config import config_without_weights
from bloomz_tune.model.loading import resolve_dtype

GiB = 2**30


def _dtype_of(config, dtype: str, device: str):
    import torch

    if dtype == "auto":
        stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        return getattr(torch, str(stored).replace("torch.", "")) if stored else torch.float32
    if dtype == "bf16-if-supported" and device != "cuda":
        return torch.float32
    return resolve_dtype(dtype)


def plan_evaluation(model: str, dtype: str = "auto", device: str | None = None, device_map: str | None = None,
                    max_memory: dict | None = None, batch_size: int = 16, max_length: int = 2048,
                    revision: str | None = None) -> dict:
    """{"dtype", "device_map": {module: device}, "devices": {device: {"weights", "working", "total"} in bytes},
    "fits": bool, "model_bytes"} for evaluating ``model`` as ``bloomz-tune eval`` would load it."""
    import torch
    from accelerate import infer_auto_device_map, init_empty_weights
    from accelerate.utils import compute_module_sizes, get_balanced_memory, get_max_memory
    from transformers import AutoModelForCausalLM

    if device_map not in (None, "auto", "balanced", "balanced_low_0", "sequential"):
        raise BloomzTuneError(f"--device-map: {device_map!r} is not one of auto, balanced, balanced_low_0, "
                              "sequential")
    if max_memory and device_map is None:
        raise BloomzTuneError("--max-memory takes effect with --device-map (e.g. auto)")
    config = config_without_weights(model, revision, "MODEL")
    target = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype_ = _dtype_of(config, dtype, target.split(":")[0])
    with init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config, dtype=dtype_)
    empty.tie_weights()  # the head is the embedding (as loading ties it): counted once, placed once
    sizes = compute_module_sizes(empty, dtype=dtype_)
    if device_map is None:
        placed = {"": target}
        limits = {target: None}
    else:
        limits = get_max_memory(max_memory)
        if device_map.startswith("balanced"):
            limits = get_balanced_memory(empty, max_memory=limits, no_split_module_classes=["BloomBlock"],
                                         dtype=dtype_, low_zero=device_map == "balanced_low_0")
        placed = infer_auto_device_map(empty, max_memory=limits, no_split_module_classes=["BloomBlock"],
                                       dtype=dtype_)
    devices: dict = {}
    for module, where in placed.items():
        entry = devices.setdefault(str(where), {"weights": 0, "working": 0})
        entry["weights"] += sizes[module]
    width = torch.finfo(dtype_).bits // 8
    # the working set sits where the computation runs: the first device holding weights in memory (offloaded
    # layers are brought there), the CPU when everything is on disk
    first = next((where for where in devices if where != "disk"), "cpu")
    hidden = batch_size * max_length * config.hidden_size * width
    devices.setdefault(first, {"weights": 0, "working": 0})["working"] = (hidden * (config.n_layer + 2)
                                                                          + max_length * config.vocab_size * 4)
    fits = True
    for where, entry in devices.items():
        entry["total"] = entry["weights"] + entry["working"]
        limit = limits.get(int(where) if where.isdigit() else where) if isinstance(limits, dict) else None
        entry["limit"] = _bytes(limit) if limit is not None else None
        if where == "disk":
            continue
        if entry["limit"] is None:
            fits = None if fits else fits  # nothing to compare with (no --max-memory, no device to ask)
        elif entry["total"] > entry["limit"]:
            fits = False
    return {"model": model, "dtype": str(dtype_).replace("torch.", ""), "device_map": {k: str(v) for k, v in
            placed.items()}, "devices": devices, "fits": fits, "model_bytes": sizes[""]}


def _bytes(size) -> int:
    if isinstance(size, int):
        return size
    from accelerate.utils import convert_file_size_to_int

    return convert_file_size_to_int(size)


def format_plan(plan: dict) -> str:
    """The plan as the lines ``eval --dry-run`` prints."""
    lines = [f"{plan['model']}: {plan['model_bytes'] / GiB:.2f} GiB of weights in {plan['dtype']}",
             f"{'device':<10}{'weights GiB':>12}{'working GiB':>13}{'total GiB':>11}{'limit GiB':>11}"]
    for where, e in plan["devices"].items():
        limit = f"{e['limit'] / GiB:.2f}" if e["limit"] is not None else "-"
        lines.append(f"{where:<10}{e['weights'] / GiB:>12.2f}{e['working'] / GiB:>13.2f}{e['total'] / GiB:>11.2f}"
                     f"{limit:>11}")
    blocks: dict = {}
    for module, where in plan["device_map"].items():
        blocks.setdefault(where, []).append(module or "(whole model)")
    lines += [f"on {where}: {', '.join(names[:4])}{f' and {len(names) - 4} more' if len(names) > 4 else ''}"
              for where, names in blocks.items()]
    lines.append({True: "fits", None: "no memory limit to compare with: give --device-map auto and --max-memory",
                  False: "does not fit: raise --max-memory, add devices, or use --offload-folder"}[plan["fits"]])
    return "\n".join(lines)
