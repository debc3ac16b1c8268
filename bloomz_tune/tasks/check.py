"""``bloomz-tune eval --check [--online]``: will every evaluation dataset load, before a model is loaded?

Offline: the tasks and languages are resolved as ``eval`` resolves them, each ``--data-dir`` folder must exist,
and a task with no Hub copy (StoryCloze) must have one. With ``online``, each task's Hub repository is asked what
it holds at its revision (the table's, or ``--data-revision TASK=REV``), and each language's config and the
evaluated split get a verdict (``hubdata.verdict``): one row per task, the first failing language named.
"""

from __future__ import annotations

from pathlib import Path

from bloomz_tune.hubdata import PARQUET_EXPORT, repo_view, verdict
from bloomz_tune.tasks.table import TASKS, resolve_tasks, task_data_dirs


def check_tasks(tasks=None, languages=None, data_dirs: dict | None = None, data_revisions: dict | None = None,
                online: bool = False) -> dict:
    """{"rows": [{task, reads, status, detail, fix}], "failed", "markdown"} for the tasks ``eval`` would run."""
    plan = resolve_tasks(tasks, languages)
    dirs = task_data_dirs(data_dirs)
    revisions = data_revisions or {}
    rows, views = [], {}
    for task, langs in plan.items():
        spec = TASKS[task]
        revision = revisions.get(task, spec.revision)
        reads = f"{spec.path}@{revision}" if revision else str(spec.path)
        row = {"task": task, "reads": f"{reads} {spec.split} ({', '.join(langs)})"}
        if task in dirs:
            found = Path(dirs[task]).is_dir()
            rows.append({**row, "reads": dirs[task], "status": "local" if found else "unreachable",
                         "detail": "local folder" if found else f"no folder {dirs[task]}",
                         "fix": "" if found else f"correct --data-dir {task}=FOLDER"})
        elif spec.path is None:
            rows.append({**row, "reads": "-", "status": "unreachable", "detail": "no Hub copy",
                         "fix": spec.manual.format(name=task)})
        elif not online:
            rows.append({**row, "status": "not checked", "detail": "a Hub dataset", "fix": "add --online"})
        else:
            if (spec.path, revision) not in views:  # CB, RTE and COPA share one repository: asked once
                views[(spec.path, revision)] = repo_view(spec.path, revision)
            view = views[(spec.path, revision)]
            verdicts = [(lang, verdict(view, spec.configs[lang], [spec.split])) for lang in langs]
            bad = [(lang, v) for lang, v in verdicts if not v.ok]
            lang, shown = bad[0] if bad else verdicts[0]
            detail = f"{len(langs)} languages, e.g. {shown.detail}" if not bad else f"{lang}: {shown.detail}" + (
                f" (and {len(bad) - 1} more languages)" if len(bad) > 1 else "")
            fix = shown.fix
            if shown.status == "script only" and view.export:
                fix = (f"read its parquet export: --data-revision {task}={PARQUET_EXPORT} (export configs: "
                       f"{', '.join(sorted(view.export))})")
            rows.append({**row, "status": shown.status, "detail": detail, "fix": fix})
    failed = sum(r["status"] not in ("loads", "local", "not checked") for r in rows)
    table = ["| task | reads | status | detail | fix |", "|---|---|---|---|---|"]
    table += [f"| {r['task']} | {r['reads']} | {r['status']} | {r['detail']} | {r['fix']} |" for r in rows]
    mode = "asked the Hub (or its cache)" if online else "offline: Hub datasets not asked (add --online)"
    return {"rows": rows, "failed": failed, "markdown": "\n".join(table) + f"\n\n{len(rows)} tasks, {failed} failing "
                                                                           f"({mode})"}
