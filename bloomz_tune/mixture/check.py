"""``bloomz-tune mixture check SPEC [--online]``: will every source of a spec load, before a long build?

Offline, the spec is read and validated as a build reads it (schema, Hub ids, template files and names, the
held-out table; every problem at once), and each source is placed: a local folder or release copy that exists,
a source left out with ``skip``, or a Hub source to ask about. With ``online``, each Hub repository is asked what
it holds at the source's revision (``hubdata.repo_view``: files, README configs, splits; no data downloaded), and
each source gets a verdict: loads / script only / missing config / missing split / no data files / unreachable,
with the fix. ``data_files`` on the Hub (``hf://datasets/...``) are matched against the repository's files.
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

from bloomz_tune.hubdata import PARQUET_EXPORT, RepoView, Verdict, repo_view, verdict
from bloomz_tune.mixture.spec import MixtureSpec, SourceSpec, load_mixture_spec

OFFLINE_OK = ("local", "skipped", "not checked")  # what an offline check leaves standing


def check_mixture(spec_path: str | Path, online: bool = False, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Check a spec plus ``key=value`` overrides (ConfigError listing every problem when it is invalid); returns
    {"spec", "online", "rows", "failed", "markdown"}, one row per source: label, what is read, status, detail, fix."""
    spec = load_mixture_spec(spec_path, overrides)
    views: dict[tuple[str, str | None], RepoView] = {}
    rows = [_source_row(spec, src, online, views) for src in spec.sources]
    failed = [r for r in rows if r["status"] not in ("loads", *OFFLINE_OK)]
    return {"spec": str(spec_path), "online": online, "rows": rows, "failed": len(failed),
            "markdown": check_table(rows, online)}


def _source_row(spec: MixtureSpec, src: SourceSpec, online: bool, views: dict) -> dict:
    kwargs = src.loader_kwargs(spec.spec_dir)
    row = {"source": src.label, "reads": _reads(src, kwargs)}
    if src.skip:
        return {**row, "status": "skipped", "detail": src.skip, "fix": ""}
    local = Path(kwargs["path"])
    if src.format != "datasets" or local.exists():
        found = local.exists()
        return {**row, "status": "local" if found else "unreachable",
                "detail": f"local folder {local}" + ("" if found else " does not exist"),
                "fix": "" if found else "download the files into it, or correct `path`"}
    hub_files = _hub_data_files(src)
    if src.data_files is not None and not hub_files:
        return {**row, "status": "local", "detail": "local data_files", "fix": ""}
    if not online:
        return {**row, "status": "not checked", "detail": "a Hub source", "fix": "run with --online to ask the Hub"}
    if hub_files:
        found = _hub_files_verdict(hub_files, src.revision, views)
    else:
        key = (kwargs["path"], src.revision)
        if key not in views:
            views[key] = repo_view(*key)
        found = verdict(views[key], src.name, src.splits, src.data_dir)
    return {**row, "status": found.status, "detail": found.detail, "fix": found.fix}


def _reads(src: SourceSpec, kwargs: dict) -> str:
    what = kwargs["path"] + (f"@{src.revision}" if src.revision else "")
    if src.revision == PARQUET_EXPORT:
        what += f" [{kwargs.get('data_dir')}]"
    elif src.name:
        what += f" [{src.name}]"
    return f"{what} {','.join(src.splits)}" if src.format == "datasets" else what


def _hub_data_files(src: SourceSpec) -> list[str]:
    patterns = [] if src.data_files is None else [src.data_files] if isinstance(src.data_files, str) \
        else src.data_files
    if isinstance(patterns, dict):
        patterns = [p for v in patterns.values() for p in ([v] if isinstance(v, str) else v)]
    return [p for p in patterns if p.startswith("hf://datasets/")]


def _hub_files_verdict(patterns: list[str], revision: str | None, views: dict) -> Verdict:
    """Each ``hf://datasets/owner/name[@rev]/glob`` pattern must match files of its repository."""
    details = []
    for pattern in patterns:
        owner, name, *rest = pattern[len("hf://datasets/"):].split("/")
        name, _, at = name.partition("@")
        key = (f"{owner}/{name}", at or revision)
        if key not in views:
            views[key] = repo_view(*key, with_export=False)
        view = views[key]
        if view.error:
            return Verdict("unreachable", view.error, view.error_fix)
        glob = "/".join(rest)
        matched = [f for f in view.files if fnmatch.fnmatchcase(f, glob)]
        if not matched:
            return Verdict("no data files", f"no file of {key[0]} matches {glob}", "correct the pattern")
        details.append(f"{glob}: {len(matched)} files")
    return Verdict("loads", "; ".join(details))


def check_table(rows: list[dict], online: bool) -> str:
    """The check as a Markdown table, with a count per status."""
    lines = ["| source | reads | status | detail | fix |", "|---|---|---|---|---|"]
    lines += [f"| {r['source']} | {r['reads']} | {r['status']} | {r['detail']} | {r['fix']} |" for r in rows]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    mode = "asked the Hub (or its cache)" if online else "offline: Hub sources not asked (use --online)"
    return "\n".join(lines) + f"\n\n{len(rows)} sources: {summary} ({mode})"
