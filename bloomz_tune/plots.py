"""Plots written into the run directory (matplotlib, no display needed)."""

from __future__ import annotations

import json
from pathlib import Path


def plot_loss(metrics_path: str | Path, out_path: str | Path) -> Path | None:
    """Training loss against step from metrics.jsonl; returns the PNG path, or None when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics_path = Path(metrics_path)
    if not metrics_path.exists():
        return None
    points = []
    for line in metrics_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "loss" in record:
            points.append((record["step"], record["loss"]))
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("target loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path)
    plt.close(fig)
    return Path(out_path)
