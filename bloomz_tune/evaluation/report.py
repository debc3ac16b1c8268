"""Evaluation results: aggregation over prompts and languages, results.json, results.md and a bar chart (drawn by
``charts.plot_accuracy``).

Accuracies are fractions (0-1) in results.json and percentages in results.md, where the published
bloom-560m and bloomz-560m numbers (median over prompts, percent) stand beside the model's.
"""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

from bloomz_tune.charts import plot_accuracy
from bloomz_tune.storage import write_atomic, write_json
from bloomz_tune.tasks.table import PUBLISHED, PUBLISHED_MEAN, PUBLISHED_MEAN_MODELS, PUBLISHED_MODELS, TASKS

CHART = "accuracy.png"


def aggregate(per_prompt: dict) -> dict:
    """{task: {language: {prompt: {accuracy, correct, total}}}} -> the ``tasks`` section of results.json.

    Per (task, language): the median and the max of the prompts' accuracies; per task: the mean over its
    languages of those medians (the BLOOMZ paper's summary number). The published numbers (percent) ride along.
    """
    tasks = {}
    for task, languages in per_prompt.items():
        out = {}
        for language, prompts in languages.items():
            accuracies = [p["accuracy"] for p in prompts.values()]
            out[language] = {"median": statistics.median(accuracies), "max": max(accuracies),
                             "examples": max(p["total"] for p in prompts.values()), "prompts": prompts,
                             "published_median_pct": published_for(task, language)}
        medians = [v["median"] for v in out.values()]
        tasks[task] = {"title": TASKS[task].title, "mean_of_medians": sum(medians) / len(medians),
                       "languages": out, "published_mean_of_medians_pct": published_mean_for(task)}
    return tasks


def accuracy_bars(results: dict) -> tuple[list[str], list[float], dict[str, list[float]]]:
    """The chart's bars: a label per (dataset, language), the model's median (percent), the published medians."""
    labels, ours, published = [], [], {m: [] for m in PUBLISHED_MODELS}
    for task, r in results["tasks"].items():
        for language, v in r["languages"].items():
            labels.append(f"{r['title']}\n{language}")
            ours.append(100 * v["median"])
            pub = published_for(task, language)
            for m in PUBLISHED_MODELS:
                published[m].append(pub.get(m, float("nan")))
    return labels, ours, published


def published_for(task: str, language: str) -> dict:
    values = PUBLISHED.get((task, language))
    return dict(zip(PUBLISHED_MODELS, values)) if values else {}


def published_mean_for(task: str) -> dict:
    values = PUBLISHED_MEAN.get(task)
    return dict(zip(PUBLISHED_MEAN_MODELS, values)) if values else {}


def _pct(value) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.2f}"


def _num(value) -> str:
    return "" if value is None else f"{value:.2f}"


def render_markdown(results: dict, chart: str | None = CHART) -> str:
    """results.json content -> a readable Markdown report."""
    s = results["settings"]
    name = results.get("model") or "model"
    lines = [
        f"# Zero-shot evaluation: {name}", "",
        "Rank classification as in the BLOOMZ paper: each answer choice is scored by the "
        + ("mean (length-normalised)" if s["length_normalize"] else "sum")
        + " of its token log-probabilities after the prompt, the best-scoring choice is the answer. "
        f"{s['prompts']} prompts per dataset; accuracy in percent; median and max over prompts"
        + (f"; at most {s['limit']} examples per dataset and language" if s.get("limit") else "") + ".", "",
        "## Mean of medians over languages", "",
        "| dataset | languages | this model | " + " | ".join(f"{m} (paper)" for m in PUBLISHED_MEAN_MODELS[:2])
        + " |", "|---|---|---|---|---|",
    ]
    for task, r in results["tasks"].items():
        pub = published_mean_for(task)
        langs = list(r["languages"])
        same = list(TASKS[task].default_languages) == langs
        note = "" if same or not pub else " *"
        lines.append(f"| {r['title']} | {', '.join(langs)} | {_pct(r['mean_of_medians'])} | "
                     + " | ".join(_num(pub.get(m)) + (note if pub else "") for m in PUBLISHED_MEAN_MODELS[:2]) + " |")
    if any(published_mean_for(t) and list(TASKS[t].default_languages) != list(r["languages"])
           for t, r in results["tasks"].items()):
        lines += ["", "\\* the paper's mean covers all of the dataset's languages, not only the ones run here."]
    lines += ["", "## Per dataset and language", "",
              "| dataset | language | examples | median | max | " + " | ".join(PUBLISHED_MODELS) + " |",
              "|---|---|---|---|---|---|---|"]
    for task, r in results["tasks"].items():
        for language, v in r["languages"].items():
            pub = published_for(task, language)
            lines.append(f"| {r['title']} | {language} | {v['examples']} | {_pct(v['median'])} | {_pct(v['max'])} | "
                         + " | ".join(_num(pub.get(m)) for m in PUBLISHED_MODELS) + " |")
    lines += data_files_lines(results.get("datasets") or {}, "##")
    if chart:
        lines += ["", f"![median accuracy per dataset and language]({chart})"]
    lines += ["", "## Per prompt", ""]
    for r in results["tasks"].values():
        names = list(next(iter(r["languages"].values()))["prompts"])
        lines += [f"**{r['title']}**", "", "| language | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        for language, v in r["languages"].items():
            lines.append(f"| {language} | " + " | ".join(_pct(v["prompts"][n]["accuracy"]) for n in names) + " |")
        lines.append("")
    if results.get("generation"):
        lines += ["## Generation sanity check", "",
                  "Greedy answers to a fixed handful of prompts; a broken model shows here at a glance.", ""]
        for g in results["generation"]:
            lines += [f"- prompt: `{_inline(g['prompt'])}`", f"  answer: `{_inline(g['output'])}`"]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def data_files_lines(datasets: dict, heading: str) -> list[str]:
    """The files each (task, language) was scored on, from results.json's ``datasets``: path relative to the data
    folder, size, sha256 and rows used; a dataset read from the Hub is named by its id."""
    if not datasets:
        return []
    lines = ["", f"{heading} Data scored", "", "| dataset | data | file | bytes | sha256 | rows used |",
             "|---|---|---|---|---|---|"]
    for key, d in datasets.items():
        files = d.get("files") or []
        if not files:
            lines.append(f"| {key} | {d.get('source', '')} (split {d.get('split', '')}) | | | | |")
        for f in files:
            lines.append(f"| {key} | {d.get('source', '')} | {f['path']} | {f['size']:,} | `{f['sha256']}` | "
                         f"{f['rows']:,} |")
    return lines


def _inline(text: str) -> str:
    return text.replace("\n", "\\n").replace("`", "'")


def write_results(results: dict, output_dir: str | Path) -> dict:
    """Write results.json, results.md and the chart into ``output_dir``; each file appears whole or not at all."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": output_dir / "results.json", "markdown": output_dir / "results.md", "chart": output_dir / CHART}
    chart = paths["chart"].with_name(f".{CHART}.tmp")
    try:
        plot_accuracy(*accuracy_bars(results), chart, model=results.get("model"))
        os.replace(chart, paths["chart"])
    finally:
        chart.unlink(missing_ok=True)
    write_atomic(paths["markdown"], render_markdown(results, CHART))
    write_json(paths["json"], results)  # last: a results.json says the files beside it are whole
    return {k: str(p) for k, p in paths.items()}
