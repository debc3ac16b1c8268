"""``bloomz-tune estimate RECIPE``: parameters, memory per GPU, tokens, epochs and time of a run, before it runs.

    bloomz-tune estimate recipes/lora_560m.yaml                       # every strategy on 1 GPU, H100 figures
    bloomz-tune estimate recipes/full_7b1.yaml --accelerate-config recipes/accelerate/deepspeed_zero3.yaml
    bloomz-tune estimate recipes/lora_176b_zero3.yaml --gpus 64 --gpu a100-80g --mfu 0.35

Nothing is loaded but the model's config: ``config.json`` of a local folder, a Hub id's cached config, or, for
the public bigscience/bloom* ids when neither is at hand, their shapes (docs/bloomz.md §6). A ``model.tiny``
section is its own config.

**Parameters** (exact). A BLOOM with vocabulary V, width h, n blocks has V·h (embedding, tied to the head) +
4h (embedding and final layer norms) + n·(12h² + 13h) parameters; per block qkv 3h²+3h, dense h²+h,
dense_h_to_4h 4h²+4h, dense_4h_to_h 4h²+h, two layer norms 4h. LoRA is counted as peft builds it: each module
whose name equals a target or ends with "." + target gets r·(in + out) (an embedding r·(V + h)); modules to
save add a trainable copy of themselves; ``bias: all`` makes every bias trainable, ``lora_only`` those of
adapted modules. Tests compare the counts with models built from the public configs and with peft's.

**Memory per GPU** in bytes, N processes, P parameters of which T train (F = P − T frozen); w = bytes of the
weights' dtype, t = bytes of a trainable parameter (4 for LoRA: peft keeps adapters in fp32; w in full
fine-tuning), model states:

- DDP: F·w + T·t weights, 2·T·t gradients (the gradient and DDP's bucket copy; T·t on one process), 2·T·t Adam moments.
- FSDP full shard (FSDP2): (F·w + 4·T·t) / N, plus the gathered working set: the root module (embedding and
  final norm, kept gathered) and two blocks (one computing, one prefetched) in the compute dtype.
- ZeRO-2 (DeepSpeed, bf16): 2·P weights + 2·T gradients + 16·T/N (fp32 master, Adam moments, fp32 gradients).
- ZeRO-3: (2·P + 16·T) / N + 4 × the largest layer (two 16-bit copies gathered; DeepSpeed's own estimator,
  ``estimate_zero3_model_states_mem_needs``). The largest layer of BLOOM is its embedding, V·h.
- ZeRO-3 offload (optimizer and parameters on CPU): 4 × the largest layer on the GPU; (2·P + 16·T) / machines
  of CPU memory per machine.

Activations of one micro-batch of b rows of s tokens (a = bytes of the compute dtype; Korthikanti et al. 2022
counted for our attention, which keeps no (s, s) probabilities), per block: 10·s·b·h values always (the two
norms' inputs 2h, qkv 3h, attention output h, GeLU input 4h), plus the input of each linear layer that trains
or is LoRA-adapted (qkv h, dense 0 as it is the attention output, dense_h_to_4h h, dense_4h_to_h 4h: 16·s·b·h in
full fine-tuning), 2·s·b·h one-byte dropout masks when hidden dropout is on, and for each LoRA-adapted linear r
values and, with LoRA dropout, its input again and a mask. With gradient checkpointing a block keeps only its
input (s·b·h values) and one block is recomputed at a time. Then the embedding (2·s·b·h values), the head at
target positions only (b·s·f targets with f the targets' share of tokens: logits in the compute dtype, their
fp32 copy and fp32 log-softmax, (a + 8)·V bytes per target; beyond ``training.loss_chunk_size`` targets, their
hidden states, h·a bytes each, plus one chunk's logits being recomputed; not under ZeRO-3, which runs the head
in one piece) and, for ``sdpa``, our one (b, heads, s, s) attention bias in the compute dtype.

**Tokens and time.** Global batch = rows per device × accumulation × processes; tokens per step = global batch
× s (rows are full when packed). Epochs over the mixture = steps × global batch / training rows, the rows
being packed rows (the mixture's train tokens / (s × 0.99 packing efficiency)) when packing is on; the
mixture's counts come from its datasheet once built with the model's tokenizer. Time = FLOPs
(``throughput.bloom_flops``: 3 × forward, the head at targets) / (N × peak bf16 FLOP/s × MFU); with gradient
checkpointing the GPUs also redo the forward, which a stated MFU (model FLOPs) already absorbs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.mixture.builds import find_build, is_built_mixture
from bloomz_tune.mixture.datasheet import TOKENS_DIR, read_datasheet
from bloomz_tune.mixture.spec import load_mixture_spec, mixture_fingerprint
from bloomz_tune.model.config import Module, bloom_modules, estimate_config, module_matches
from bloomz_tune.recipe import Recipe
from bloomz_tune.training.budget import global_batch
from bloomz_tune.training.throughput import PEAK_BF16_FLOPS, bloom_flops

GiB = 2**30
# The public BLOOM shapes (docs/bloomz.md §6): n_layer, hidden_size, n_head; vocabulary 250,880 for all.
# GPU memory as torch reports it (GiB) and the name throughput.PEAK_BF16_FLOPS knows it by.
GPUS = {"h100": ("H100", 79.6), "h200": ("H200", 139.8), "a100-80g": ("A100", 79.2), "a100-40g": ("A100", 39.4),
        "l40s": ("L40S", 44.4)}
STRATEGIES = ("ddp", "fsdp", "zero2", "zero3", "zero3_offload")
PACKING_EFFICIENCY = 0.99  # best-fit packing on xP3-like lengths (benchmarks/README.md)
DEFAULT_TARGET_SHARE = 0.1  # targets' share of tokens when the mixture's token counts are unknown


# ---- the model's config ------------------------------------------------------------------------------------------


# ---- parameters --------------------------------------------------------------------------------------------------


@dataclass
class Counts:
    total: int
    trainable: int
    adapted: list[Module] = field(default_factory=list)  # modules LoRA adapts


def parameter_counts(config, lora=None) -> Counts:
    """Total and trainable parameters of BLOOM, with LoRA (a recipe's ``lora`` section) counted as peft does."""
    modules = bloom_modules(config)
    total = sum(m.weight + m.bias for m in modules if not m.tied)
    if lora is None or not lora.enabled:
        return Counts(total, total)
    saved = [m for m in modules if any(m.name.endswith(s) for s in lora.modules_to_save)]
    excluded = {m.name for m in modules if any(re.match(rf"(^|.*\.){s}($|\..*)", m.name) for s in lora.modules_to_save)}
    adapted = [m for m in modules if m.name not in excluded and module_matches(m.name, lora.target_modules)]
    found = {t for t in lora.target_modules if any(module_matches(m.name, [t]) for m in modules)}
    if missing := [t for t in lora.target_modules if t not in found]:
        raise BloomzTuneError(f"lora.target_modules: {missing} not found in BLOOM (its linear layers are "
                              "query_key_value, dense, dense_h_to_4h, dense_4h_to_h, lm_head)")
    if bad := [m.name for m in adapted if m.kind == "norm"]:
        raise BloomzTuneError(f"lora.target_modules: {bad[0]} is a layer norm; LoRA adapts linear layers")
    lora_params = sum(lora.r * sum(m.shape) for m in adapted)
    copies = sum(m.weight + m.bias for m in saved)
    if lora.bias == "all":
        biases = sum(m.bias for m in modules if m not in saved)
    else:
        biases = sum(m.bias for m in adapted) if lora.bias == "lora_only" else 0
    return Counts(total + lora_params + copies, lora_params + copies + biases, adapted)


# ---- memory ------------------------------------------------------------------------------------------------------

def dtype_bytes(recipe: Recipe) -> tuple[int, int]:
    """(bytes of a weight, bytes of an activation) on a GPU: bf16-if-supported and auto are 16-bit there."""
    w = 4 if recipe.model.dtype == "float32" else 2
    mixed = recipe.training.bf16 is not False or recipe.training.fp16
    return w, 2 if mixed else w


# Input of each BLOOM linear layer, in multiples of h per token, that autograd keeps when the layer trains (full
# fine-tuning) or is LoRA-adapted; a frozen layer needs only its weight. dense's input is a view of the attention
# output, already kept.
LINEAR_INPUTS = {"query_key_value": 1, "dense": 0, "dense_h_to_4h": 1, "dense_4h_to_h": 4}


def activation_bytes(recipe: Recipe, config, counts: Counts, target_share: float, checkpointing: bool,
                     chunked: bool = True) -> dict[str, int]:
    """Activations kept for backward on one process for one micro-batch (module docstring), by part; ``chunked``:
    the head may run in chunks (the trainer turns chunks off under ZeRO-3)."""
    a = dtype_bytes(recipe)[1]
    b, s, h = recipe.training.per_device_train_batch_size, recipe.data.max_length, config.hidden_size
    tokens = b * s
    lora = recipe.lora
    block_lora = [m for m in counts.adapted if m.name.startswith("transformer.h.0.")]
    adapted = {m.name.rsplit(".", 1)[-1] for m in block_lora}
    values = 10 + sum(n for name, n in LINEAR_INPUTS.items() if not lora.enabled or name in adapted)
    per_block = tokens * h * values * a + (tokens * h * 2 if (config.hidden_dropout or 0) > 0 else 0)
    for m in block_lora:
        per_block += tokens * (lora.r * a + (m.shape[0] * (a + 1) if lora.lora_dropout > 0 else 0))
    kept = config.n_layer * tokens * h * a + per_block if checkpointing else config.n_layer * per_block
    targets = int(tokens * target_share)
    chunk = recipe.training.loss_chunk_size
    head = targets * config.vocab_size * (a + 8)
    if chunked and chunk is not None and targets > chunk:  # checkpointed chunks (bloom.selected_token_losses)
        head = targets * h * a + chunk * config.vocab_size * (a + 8)
    out = {"blocks": kept, "embedding": 2 * tokens * h * a, "head": head}
    if recipe.model.attention == "sdpa":
        out["attention_bias"] = b * config.n_head * s * s * a
    return out


def model_state_bytes(strategy: str, counts: Counts, config, w: int, t: int, gpus: int, machines: int = 1,
                      act: int = 2) -> dict:
    """Weights, gradients and optimizer state on one GPU (and CPU memory per machine with offload), by part."""
    p, tr = counts.total, counts.trainable
    frozen = p - tr
    h = config.hidden_size
    block = 12 * h * h + 13 * h
    largest = max(config.vocab_size * h, block)
    if strategy == "ddp":
        buckets = 2 if gpus > 1 else 1  # one process runs without DDP: no bucket copy
        return {"weights": frozen * w + tr * t, "gradients": buckets * tr * t, "optimizer": 2 * tr * t}
    if strategy == "fsdp":
        root = config.vocab_size * h + 4 * h
        return {"weights": (frozen * w + tr * t) // gpus, "gradients": tr * t // gpus,
                "optimizer": 2 * tr * t // gpus, "gathered": act * (root + 2 * block)}
    if strategy == "zero2":
        return {"weights": 2 * p, "gradients": 2 * tr, "optimizer": 16 * tr // gpus}
    if strategy == "zero3":
        return {"weights": 2 * p // gpus, "gradients": 2 * tr // gpus, "optimizer": 14 * tr // gpus,
                "gathered": 4 * largest}
    if strategy == "zero3_offload":
        return {"gathered": 4 * largest, "cpu_per_machine": (2 * p + 16 * tr) // machines}
    raise BloomzTuneError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


# ---- launch, mixture, the whole estimate -------------------------------------------------------------------------

def read_accelerate_config(path: str | Path) -> dict:
    """{"strategy", "processes", "machines"} from an accelerate config file (see ``recipes/accelerate/``)."""
    path = Path(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise BloomzTuneError(f"--accelerate-config {path}: cannot read it ({err})") from None
    if not isinstance(config, dict):
        raise BloomzTuneError(f"--accelerate-config {path}: not an accelerate config (no mapping of keys)")
    kind = config.get("distributed_type", "NO")
    ds = config.get("deepspeed_config") or {}
    if kind == "DEEPSPEED":
        stage = ds.get("zero_stage")
        if stage is None and ds.get("deepspeed_config_file"):
            stage = json.loads(Path(ds["deepspeed_config_file"]).read_text())["zero_optimization"]["stage"]
        offload = "none" not in (ds.get("offload_optimizer_device", "none"), ds.get("offload_param_device", "none"))
        strategy = ("zero3_offload" if offload else "zero3") if stage == 3 else "zero2"
    elif kind in ("MULTI_GPU", "NO"):
        strategy = "ddp"
    elif kind == "FSDP":
        strategy = "fsdp"
    else:
        raise BloomzTuneError(f"--accelerate-config {path}: distributed_type {kind!r} is not estimated "
                              "(NO, MULTI_GPU, FSDP or DEEPSPEED)")
    return {"strategy": strategy, "processes": int(config.get("num_processes", 1)),
            "machines": int(config.get("num_machines", 1))}


def mixture_facts(recipe: Recipe) -> dict:
    """Train rows and tokens of the recipe's mixture from its datasheet, when it has been built (else a reason)."""

    target = Path(recipe.data.mixture)
    if target.is_dir():
        built = target if is_built_mixture(target) else None
    else:
        spec = load_mixture_spec(target)
        built = find_build(Path(recipe.data.mixture_cache).expanduser(), spec.name, mixture_fingerprint(spec))
    if built is None:
        return {"reason": f"{recipe.data.mixture} is not built in {recipe.data.mixture_cache} "
                          "(bloomz-tune mixture build SPEC --tokenizer MODEL)"}
    sheet = read_datasheet(built)
    facts = {"build": str(built), "train_rows": sheet["splits"]["train"]}
    for file in sorted((built / TOKENS_DIR).glob("*.json")):
        counts = json.loads(file.read_text(encoding="utf-8"))
        if counts.get("tokenizer") == recipe.model.name_or_path or recipe.model.tiny is not None:
            train = counts["splits"]["train"]
            facts["train_tokens"] = train["input_tokens"] + train["target_tokens"]
            facts["target_share"] = train["target_tokens"] / max(facts["train_tokens"], 1)
    return facts


def estimate(recipe: Recipe, accelerate_config: str | Path | None = None, gpus: int | None = None,
             gpu: str = "h100", mfu: float = 0.4) -> dict:
    """Everything ``bloomz-tune estimate`` prints, as a dict (figures in bytes, tokens, steps, seconds)."""

    if gpu not in GPUS:
        raise BloomzTuneError(f"--gpu {gpu!r}: choose one of {', '.join(GPUS)}")
    launch = read_accelerate_config(accelerate_config) if accelerate_config else {"strategy": None, "processes": 1,
                                                                                   "machines": 1}
    n = gpus if gpus is not None else launch["processes"]
    if n < 1:
        raise BloomzTuneError(f"--gpus must be at least 1, got {n}")
    if not 0 < mfu <= 1:
        raise BloomzTuneError(f"--mfu is a fraction of the GPU's peak FLOPs, above 0 and at most 1 (0.4 is typical); "
                              f"got {mfu:g}")
    config = estimate_config(recipe)
    counts = parameter_counts(config, recipe.lora)
    w, a = dtype_bytes(recipe)
    t = 4 if recipe.lora.enabled else w
    facts = mixture_facts(recipe)
    share = facts.get("target_share", DEFAULT_TARGET_SHARE)
    memory = {}
    for strategy in STRATEGIES:
        states = model_state_bytes(strategy, counts, config, w, t, n, launch["machines"], act=a)
        on_gpu = sum(v for k, v in states.items() if k != "cpu_per_machine")
        memory[strategy] = {"states": states, **{
            key: on_gpu + sum(activation_bytes(recipe, config, counts, share, ckpt,
                                               chunked=strategy not in ("zero3", "zero3_offload")).values())
            for key, ckpt in (("with_checkpointing", True), ("without_checkpointing", False))}}
    tr, s = recipe.training, recipe.data.max_length
    rows_per_step = global_batch(tr, n)
    mean_sample = facts["train_tokens"] / facts["train_rows"] if "train_tokens" in facts else None
    row_tokens = s * PACKING_EFFICIENCY if recipe.data.packing else (mean_sample or s)
    epoch_rows = None
    if "train_tokens" in facts and recipe.data.packing:
        epoch_rows = facts["train_tokens"] / row_tokens
    elif not recipe.data.packing and "train_rows" in facts:
        epoch_rows = facts["train_rows"]
    steps = tr.max_steps if tr.max_steps > 0 else (tr.num_train_epochs * epoch_rows / rows_per_step if epoch_rows
                                                     else None)
    step_tokens = rows_per_step * row_tokens
    sample = min(mean_sample or s, s)
    flops = bloom_flops(config, int(step_tokens), int(step_tokens * share), int(step_tokens * (sample + 1) / 2))
    peak = next(f for key, f in PEAK_BF16_FLOPS if key == GPUS[gpu][0])
    return {"model": recipe.model.name_or_path if recipe.model.tiny is None else "tiny random BLOOM",
            "shape": {"n_layer": config.n_layer, "hidden_size": config.hidden_size, "n_head": config.n_head,
                      "vocab_size": config.vocab_size},
            "parameters": counts.total, "trainable": counts.trainable, "gpus": n, "machines": launch["machines"],
            "gpu": gpu, "gpu_memory": GPUS[gpu][1] * GiB, "strategy": launch["strategy"],
            "checkpointing": tr.gradient_checkpointing, "memory": memory, "target_share": share,
            "global_batch": rows_per_step, "tokens_per_step": int(step_tokens), "steps": steps,
            "tokens": int(step_tokens * steps) if steps else None, "mixture": facts,
            "epochs": steps * rows_per_step / epoch_rows if steps and epoch_rows else None,
            "mfu": mfu, "flops_per_step": flops,
            "seconds": steps * flops / (n * peak * mfu) if steps else None}


def format_estimate(e: dict) -> str:
    """The estimate as the text ``bloomz-tune estimate`` prints."""
    shape = ", ".join(f"{k} {v:,}" for k, v in e["shape"].items())
    lines = [f"model {e['model']} ({shape})",
             f"parameters {e['parameters']:,}, trainable {e['trainable']:,} ({e['trainable'] / e['parameters']:.2%})",
             f"memory per GPU, {e['gpus']} GPU(s) of {e['gpu']} ({e['gpu_memory'] / GiB:.1f} GiB), targets "
             f"{e['target_share']:.1%} of tokens:",
             f"  {'strategy':<14} {'checkpointing':>14} {'no checkpointing':>17}   model states"]
    for name, m in e["memory"].items():
        mark = "*" if name == e["strategy"] else " "
        states = ", ".join(f"{k} {v / GiB:.2f}" for k, v in m["states"].items())
        fits = "" if m["with_checkpointing"] <= e["gpu_memory"] else "  (does not fit)"
        lines.append(f"{mark} {name:<14} {m['with_checkpointing'] / GiB:>10.2f} GiB {m['without_checkpointing'] / GiB:>13.2f}"
                     f" GiB   {states} GiB{fits}")
    lines.append(f"global batch {e['global_batch']:,} rows = {e['tokens_per_step']:,} tokens per step")
    if e["steps"]:
        lines.append(f"steps {e['steps']:,.0f}, {e['tokens']:,} tokens")
    mixture = e["mixture"]
    if "reason" in mixture:
        lines.append(f"epochs over the mixture: unknown, {mixture['reason']}")
    elif e["epochs"] is not None:
        lines.append(f"mixture {mixture['build']}: {mixture['train_rows']:,} train rows"
                     + (f", {mixture['train_tokens']:,} tokens" if "train_tokens" in mixture else "")
                     + f"; {e['epochs']:.2f} epochs over it")
    if e["seconds"]:
        lines.append(f"time at {e['mfu']:.0%} MFU on {e['gpus']} x {e['gpu']}: {e['seconds'] / 3600:,.1f} h "
                     f"({e['flops_per_step']:.3g} FLOPs per step)")
    return "\n".join(lines)
