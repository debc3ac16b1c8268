"""Throughput accounting for the training log: real and target tokens/s, packing efficiency, peak memory, MFU.

FLOPs follow the usual accounting (Kaplan et al. 2020; PaLM appendix B): a matrix multiply of an (m, k) by a
(k, n) costs 2·m·k·n; training costs 3x the forward (the backward computes input and weight gradients). What
is counted is the work the model needs, not what a kernel happens to do: linear layers for every real token,
attention for every (query, key) pair that a query may see (causal, within its own packed sample), and the LM
head for the positions whose logits are computed (targets only with ``logit_positions``, every position
otherwise). Padding is not counted. MFU = counted FLOPs / (seconds x the accelerator's peak dense FLOP/s).
"""

from __future__ import annotations

import resource
import sys
import time

import torch

from bloomz_tune.model.loss import target_mask

# Peak dense bf16 tensor-core FLOP/s from the vendors' data sheets; first matching substring wins.
PEAK_BF16_FLOPS = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
)


def peak_flops(device=None) -> float | None:
    """Peak dense bf16 FLOP/s of a CUDA device from PEAK_BF16_FLOPS, None when unknown or on CPU."""
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_BF16_FLOPS if key in name), None)


def bloom_flops(config, real_tokens: int, logit_tokens: int, attention_pairs: int, training: bool = True) -> float:
    """FLOPs of BLOOM (``config``: a BloomConfig) over a batch.

    ``real_tokens``: non-padding tokens; ``logit_tokens``: positions the LM head runs on; ``attention_pairs``:
    visible (query, key) pairs, see ``attention_pairs``.
    """
    h, layers, vocab = config.hidden_size, config.n_layer, config.vocab_size
    linear = 2 * 12 * h * h * layers * real_tokens  # qkv 3h², dense h², mlp 8h² per layer
    attention = 2 * 2 * h * layers * attention_pairs  # q·k and probs·v over all heads
    head = 2 * h * vocab * logit_tokens
    forward = linear + attention + head
    return 3.0 * forward if training else float(forward)


def attention_pairs(mask: torch.Tensor) -> int:
    """Visible (query, key) pairs of a causal batch: n(n+1)/2 per sample.

    ``mask``: segment_ids (1..k, 0 padding) for packed rows, or a 0/1 attention_mask (one sample per row).
    """
    mask = mask.long()
    keys = mask + (mask.max() + 1) * torch.arange(mask.shape[0], device=mask.device)[:, None]
    counts = torch.bincount(keys[mask > 0])
    return int((counts * (counts + 1) // 2).sum())


def peak_memory_bytes(device=None) -> int:
    """Peak memory since the last ``reset_peak_memory``: the CUDA allocator's peak on a GPU, else the process's
    peak resident set size (Linux VmHWM; ru_maxrss elsewhere, which cannot be reset)."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # bytes on macOS, KiB on Linux


def reset_peak_memory(device=None) -> None:
    """Start a new peak: the CUDA allocator's, or on Linux the process's resident-set high-water mark."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class ThroughputMeter:
    """Counts what each batch holds and turns it into rates for one log line (per process; sum over ranks).

    ``update(batch, logit_tokens=None)`` after each micro-batch: ``batch`` has ``attention_mask`` and
    ``labels`` and, when packed, ``segment_ids``; ``logit_tokens`` is how many positions the LM head ran on
    (the number of targets with targets-only logits; default every real token). ``read()`` returns the rates
    since the previous ``read()`` and starts a new window.
    """

    def __init__(self, config, device=None, peak: float | None = None):
        self.config = config
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.peak = peak if peak is not None else (peak_flops(self.device) if self.device.type == "cuda" else None)
        self._reset()

    def _reset(self):
        self.start = time.perf_counter()
        self.real_tokens = self.target_tokens = self.slots = 0
        self.flops = 0.0

    def update(self, batch: dict, logit_tokens: int | None = None) -> None:
        mask = batch.get("segment_ids")
        if mask is None:
            mask = batch["attention_mask"]
        real = int((mask > 0).sum())
        targets = int(target_mask(batch["labels"], batch.get("segment_ids")).sum())
        self.real_tokens += real
        self.target_tokens += targets
        self.slots += mask.numel()
        logits = real if logit_tokens is None else logit_tokens
        self.flops += bloom_flops(self.config, real, logits, attention_pairs(mask))

    def read(self) -> dict:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = max(time.perf_counter() - self.start, 1e-9)
        out = {
            "real_tokens_per_s": self.real_tokens / seconds,
            "target_tokens_per_s": self.target_tokens / seconds,
            "packing_efficiency": self.real_tokens / self.slots if self.slots else 0.0,
            "peak_memory_gib": peak_memory_bytes(self.device) / 2**30,
            "tflops": self.flops / seconds / 1e12,
        }
        if self.peak:
            out["mfu"] = self.flops / seconds / self.peak
        self._reset()
        return out
