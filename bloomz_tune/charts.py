"""Every chart bloomz_tune draws (matplotlib, no display needed): a mixture's distribution, the training loss,
and the evaluation's accuracy beside the published numbers."""

from __future__ import annotations

import json
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mixture(sheet: dict, path: str | Path) -> None:
    """Train rows by language and by task cluster, from a mixture's datasheet (distribution.png)."""
    plt = _pyplot()
    height = 0.35 * max(len(sheet["by_language"]), len(sheet["by_task"]), 6) + 1.5
    fig, axes = plt.subplots(1, 2, figsize=(11, height))
    for ax, key, title in ((axes[0], "by_language", "language"), (axes[1], "by_task", "task cluster")):
        items = list(sheet[key].items())[::-1]
        ax.barh([k for k, _ in items], [v["train"] for _, v in items], color="#4c72b0")
        ax.set_title(f"train examples by {title}")
        ax.set_xlabel("examples")
    fig.suptitle(f"mixture {sheet['name']} ({sheet['splits']['train']:,} train rows)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_loss(metrics_path: str | Path, out_path: str | Path) -> Path | None:
    """Training loss against step from metrics.jsonl; returns the PNG path, or None when nothing was logged."""
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
    plt = _pyplot()
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


def plot_accuracy(labels: list[str], ours: list[float], published: dict[str, list[float]], path: str | Path,
                  model: str | None = None) -> None:
    """Grouped bars: the model's median accuracy (percent) per label beside the published numbers per model (NaN
    where unknown)."""
    plt = _pyplot()
    width = 0.27
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2), 4.0))
    xs = list(range(len(labels)))
    ax.bar([x - width for x in xs], ours, width, label=model or "this model")
    for k, m in enumerate(published):
        ax.bar([x + k * width for x in xs], published[m], width, label=f"{m} (paper)")
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("median accuracy over prompts (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
