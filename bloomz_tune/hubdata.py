"""Dataset repositories on the Hub: where a dataset lives today, which revision to read, and what a repository
offers, found without downloading its data.

- ``MOVED``: ids without an owner (the old canonical datasets) and their ``owner/name`` homes. Current
  huggingface_hub refuses an id without a namespace, so a mixture source naming one is refused with its home.
- ``PARQUET_EXPORT`` is the branch ``refs/convert/parquet``, where the Hub's converter keeps a parquet copy of a
  dataset as ``<config>/<split>/NNNN.parquet`` (``<config>/partial-<split>/`` when it converted only the first
  part of a large split). datasets 4+ refuses a repository whose main branch holds a loading script
  (``<name>.py``), even with data files beside it; it reads the export when asked for that revision with
  ``data_dir`` set to the export's config name (``load_arguments``). The export's config names are its folder
  names, which can differ from the script's (``default`` instead of ``plain_text``).
- ``RepoView`` / ``verdict``: what one (repository, revision) holds and whether a (config, splits) loads from it:
  loads, script only, missing config, missing split, no data files, unreachable, each with the fix. Files are
  listed and the README read with huggingface_hub; configs and splits are inferred as datasets infers them (its
  ``MetadataConfigs`` and ``get_data_patterns``). No data file is downloaded. With no network (HF_HUB_OFFLINE=1)
  the same is read from the Hub cache (``~/.cache/huggingface/hub``, or HF_HUB_CACHE).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PARQUET_EXPORT = "refs/convert/parquet"
STATUSES = ("loads", "script only", "missing config", "missing split", "no data files", "unreachable")

# Ids without an owner -> the repository that holds the dataset today (the Hub moved the old canonical datasets
# under their authors' organisations). One place: a move is one edit here.
MOVED: dict[str, str] = {
    "adversarial_qa": "UCLNLP/adversarial_qa", "ag_news": "fancyzhx/ag_news", "ai2_arc": "allenai/ai2_arc",
    "amazon_polarity": "fancyzhx/amazon_polarity", "anli": "facebook/anli", "app_reviews": "sealuzh/app_reviews",
    "cnn_dailymail": "abisee/cnn_dailymail", "common_gen": "allenai/common_gen", "cos_e": "Salesforce/cos_e",
    "cosmos_qa": "allenai/cosmos_qa", "dbpedia_14": "fancyzhx/dbpedia_14", "dream": "dataset-org/dream",
    "duorc": "ibm/duorc", "gigaword": "Harvard/gigaword", "glue": "nyu-mll/glue", "imdb": "stanfordnlp/imdb",
    "kilt_tasks": "facebook/kilt_tasks", "mbpp": "google-research-datasets/mbpp", "mlqa": "facebook/mlqa",
    "multi_news": "alexfabbri/multi_news", "openbookqa": "allenai/openbookqa",
    "paws": "google-research-datasets/paws", "paws-x": "google-research-datasets/paws-x", "piqa": "ybisk/piqa",
    "qasc": "allenai/qasc", "quail": "textmachinelab/quail", "quarel": "allenai/quarel",
    "quartz": "allenai/quartz", "quoref": "allenai/quoref", "race": "ehovy/race", "ropes": "allenai/ropes",
    "rotten_tomatoes": "cornell-movie-review-data/rotten_tomatoes", "samsum": "Samsung/samsum",
    "sciq": "allenai/sciq", "social_i_qa": "allenai/social_i_qa", "squad_v2": "rajpurkar/squad_v2",
    "super_glue": "aps/super_glue", "trec": "CogComp/trec", "trivia_qa": "mandarjoshi/trivia_qa",
    "tydiqa": "google-research-datasets/tydiqa", "web_questions": "stanfordnlp/web_questions",
    "wiki_bio": "michaelauli/wiki_bio", "wiki_qa": "microsoft/wiki_qa", "wiqa": "allenai/wiqa",
    "winogrande": "allenai/winogrande", "xcopa": "cambridgeltl/xcopa", "xnli": "facebook/xnli",
    "xquad": "google/xquad", "xsum": "EdinburghNLP/xsum", "yelp_polarity": "fancyzhx/yelp_polarity",
    "yelp_review_full": "Yelp/yelp_review_full",
}


def bare_id_problem(path: str) -> str | None:
    """Why ``path`` cannot name a Hub dataset (an id without ``owner/``), with its home when we know it."""
    if "/" in path or "\\" in path:
        return None
    home = MOVED.get(path)
    if home:
        return f"{path!r} is an id without an owner, which the Hub no longer resolves; it lives at {home!r} now"
    return (f"{path!r} is an id without an owner, which the Hub no longer resolves; give its `owner/name` (search "
            f"https://huggingface.co/datasets?search={path}) or a local folder")


def load_arguments(path: str, config: str | None, revision: str | None, data_dir: str | None = None) -> dict:
    """``datasets.load_dataset`` arguments for a Hub dataset at ``revision``. From the parquet export the config
    is a folder of the branch, read with ``data_dir`` (a ``name`` would not select it)."""
    kwargs: dict = {"path": path}
    if revision == PARQUET_EXPORT:
        kwargs["data_dir"] = data_dir or config or "default"
    else:
        if config:
            kwargs["name"] = config
        if data_dir:
            kwargs["data_dir"] = data_dir
    if revision:
        kwargs["revision"] = revision
    return kwargs


@dataclass
class Verdict:
    status: str  # one of STATUSES
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "loads"


@dataclass
class RepoView:
    """What one revision of a dataset repository holds: its files, and configs -> splits as datasets sees them."""

    repo: str
    revision: str | None
    files: list[str] = field(default_factory=list)
    configs: dict[str, list[str]] = field(default_factory=dict)
    default: str | None = None  # the config datasets uses when none is named
    script: str | None = None  # the loading script that makes datasets 4+ refuse the repository
    error: str | None = None  # why the repository could not be read
    error_fix: str = ""  # ... and what to do about it
    export: dict[str, list[str]] | None = None  # its parquet export's configs -> splits (None: none seen)


def repo_view(repo: str, revision: str | None = None, with_export: bool = True) -> RepoView:
    """List ``repo`` at ``revision`` (the Hub, or the Hub cache when offline) and infer its configs and splits."""
    view = RepoView(repo, revision)
    try:
        view.files, base = _list_files(repo, revision)
    except _Unreachable as err:
        view.error, view.error_fix = err.args
        return view
    if revision == PARQUET_EXPORT:  # configs are its folders; splits as datasets infers them with data_dir set
        view.configs = {name: _inferred_splits(f"{base}/{name}") for name in _export_configs(view.files)}
        return view
    script = f"{repo.split('/')[-1]}.py"
    if script in view.files:
        view.script = script
        if with_export:
            exported = repo_view(repo, PARQUET_EXPORT, with_export=False)
            view.export = None if exported.error else exported.configs
        return view
    view.configs, view.default = _configs(repo, revision, view.files, base)
    return view


def verdict(view: RepoView, config: str | None, splits: list[str], data_dir: str | None = None) -> Verdict:
    """Whether ``config`` and ``splits`` load from ``view``, and if not, the fix."""
    at = f"{view.repo}@{view.revision or 'main'}"
    if view.error:
        return Verdict("unreachable", view.error, view.error_fix)
    if view.script:
        return Verdict("script only", f"{at} holds the loading script {view.script}, which datasets 4+ refuses",
                       _export_fix(view, config))
    if view.revision == PARQUET_EXPORT:
        config = data_dir or config
    elif data_dir:
        config = config or view.default
    if not view.configs:
        return Verdict("no data files", f"{at} has no data files datasets can read",
                       "read the dataset from a local folder holding its files")
    chosen = config or view.default
    if chosen is None or chosen not in view.configs:
        have = ", ".join(sorted(view.configs))
        what = f"no config {config!r}" if config else f"{len(view.configs)} configs and no default"
        key = "data_dir" if view.revision == PARQUET_EXPORT else "name"
        return Verdict("missing config", f"{at} has {what}", f"set `{key}` to one of: {have}")
    have = view.configs[chosen]
    missing = [s for s in splits if s not in have]
    if missing:
        return Verdict("missing split", f"{at} config {chosen!r} has no split {', '.join(missing)}",
                       f"choose among: {', '.join(have)}")
    partial = view.revision == PARQUET_EXPORT and any(f.startswith(f"{chosen}/partial-") for f in view.files)
    note = " (a partial export: the converter kept only the first part of a large split)" if partial else ""
    return Verdict("loads", f"{at} config {chosen!r}: {', '.join(splits)}{note}")


def _export_fix(view: RepoView, config: str | None) -> str:
    if not view.export:
        return ("it has no parquet export (refs/convert/parquet): download its files and read them from a local "
                "folder, or leave the source out (`skip`)")
    names = sorted(view.export)
    pick = config if config in view.export else ("default" if names == ["default"] else None)
    if pick:
        return f"read its parquet export: `revision: {PARQUET_EXPORT}`, `data_dir: {pick}`"
    return f"read its parquet export: `revision: {PARQUET_EXPORT}` and `data_dir` one of: {', '.join(names)}"


class _Unreachable(Exception):
    """(why, fix)"""

    def __init__(self, why: str, fix: str):
        super().__init__(why, fix)


LOCAL_COPY = "or download its files and read them from a local folder"


def _list_files(repo: str, revision: str | None) -> tuple[list[str], str]:
    """The repository's files at ``revision`` and a base path datasets can glob (hf:// URL or cache folder)."""
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        files = HfApi().list_repo_files(repo, repo_type="dataset", revision=revision)
        info = HfApi().dataset_info(repo, revision=revision)
        return files, f"hf://datasets/{repo}@{info.sha}"
    except HFValidationError as err:
        raise _Unreachable(f"{repo!r} is not a valid repository id ({str(err).splitlines()[0]})",
                           "give the dataset's owner/name") from None
    except RevisionNotFoundError:
        raise _Unreachable(f"{repo} has no revision {revision!r}", "correct the revision (a branch, tag or commit)"
                           ) from None
    except GatedRepoError:
        raise _Unreachable(f"{repo} is gated", f"accept its terms on the Hub and set HF_TOKEN, {LOCAL_COPY}") from None
    except RepositoryNotFoundError:
        raise _Unreachable(f"{repo} does not exist on the Hub (or is private)",
                           f"check the id (moved datasets: bloomz_tune.hubdata.MOVED), {LOCAL_COPY}") from None
    except Exception as err:  # noqa: BLE001 - offline, or the network failed: look in the Hub cache
        offline = isinstance(err, (OfflineModeIsEnabled, ConnectionError)) or any(
            word in type(err).__name__.lower() for word in ("connect", "timeout"))
        if not offline:
            raise _Unreachable(f"{repo}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
                               f"check the id and the network, {LOCAL_COPY}") from None
    try:
        folder = Path(snapshot_download(repo, repo_type="dataset", revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise _Unreachable(f"{repo}@{revision or 'main'}: the Hub cannot be reached and the Hub cache does not "
                           f"hold it", f"run the check with network (HF_HUB_OFFLINE unset), {LOCAL_COPY}") from None
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    return files, str(folder)


def _export_configs(files: list[str]) -> list[str]:
    """The export's configs: the top folders holding ``<split>/NNNN.parquet`` files."""
    return sorted({f.split("/")[0] for f in files if f.endswith(".parquet") and f.count("/") >= 2})


def _inferred_splits(base: str) -> list[str]:
    """The splits datasets finds under ``base`` (split-named files or folders; else everything is train)."""
    from datasets.data_files import get_data_patterns
    from datasets.exceptions import DataFilesNotFoundError

    try:
        return [str(split) for split in get_data_patterns(base)]
    except (DataFilesNotFoundError, FileNotFoundError):
        return []


def _configs(repo: str, revision: str | None, files: list[str], base: str) -> tuple[dict[str, list[str]], str | None]:
    """configs -> splits as datasets infers them: the README's ``configs:`` section, else the file layout."""
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard, hf_hub_download

    metadata = {}
    if "README.md" in files:
        readme = hf_hub_download(repo, "README.md", repo_type="dataset", revision=revision)
        metadata = MetadataConfigs.from_dataset_card_data(DatasetCard.load(readme).data)
    if metadata:
        configs = {name: _metadata_splits(cfg, base) for name, cfg in metadata.items()}
        defaults = [name for name, cfg in metadata.items() if cfg.get("default")]
        default = defaults[0] if defaults else (next(iter(configs)) if len(configs) == 1 else None)
        return configs, default
    splits = _inferred_splits(base)
    return ({"default": splits}, "default") if splits else ({}, None)


def _metadata_splits(cfg: dict, base: str) -> list[str]:
    data_files = cfg.get("data_files")
    if isinstance(data_files, list) and data_files and isinstance(data_files[0], dict):
        return [d["split"] for d in data_files]
    if isinstance(data_files, dict):
        return list(data_files)
    if data_files:
        return ["train"]
    return _inferred_splits(f"{base}/{cfg['data_dir']}" if cfg.get("data_dir") else base)
