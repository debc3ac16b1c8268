"""Hub sources before a long build: each verdict of ``mixture check --online`` and ``eval --check --online`` on a
Hub cache laid out as huggingface_hub lays it out (``datasets--owner--name/{refs,snapshots,blobs}``, with a
``refs/convert/parquet`` branch), read offline (HF_HUB_OFFLINE=1, set in conftest); ids without an owner refused
with their homes; the parquet export read as the fallback says."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import constants, scan_cache_dir

from bloomz_tune import cli
from bloomz_tune.errors import ConfigError
from bloomz_tune.hubdata import PARQUET_EXPORT, load_arguments, repo_view, verdict
from bloomz_tune.mixture.spec import load_mixture_spec

TEMPLATE = Path(__file__).parents[1] / "data_mixtures" / "templates" / "sentiment.yaml"
README_CONFIGS = """---
configs:
- config_name: plain
  data_files:
  - split: train
    path: plain/train-*.parquet
  - split: test
    path: plain/test-*.parquet
- config_name: other
  data_files:
  - split: train
    path: other/train-*.parquet
---
# a dataset with two configs
"""


def _parquet(value: int, path: Path | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"text": [f"row {value}"], "label": [value]}), sink)
    data = sink.getvalue().to_pybytes()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return data


def lay_out(cache: Path, repo: str, files: dict[str, str | int], branch: str = "main") -> str:
    """One revision of a dataset repository in the Hub cache: blobs by content hash, the snapshot's files linked
    to them, the branch's ref naming the commit. ``files``: path -> text, or an int for a parquet file."""
    root = cache / f"datasets--{repo.replace('/', '--')}"
    commit = hashlib.sha1(f"{repo}@{branch}".encode()).hexdigest()
    for name, content in files.items():
        data = _parquet(content) if isinstance(content, int) else content.encode()
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = root / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (name.count("/") + 2)) / "blobs" / blob.name)
    ref = root / "refs" / branch
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(commit)
    return commit


@pytest.fixture()
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    lay_out(cache, "owner/data", {"README.md": README_CONFIGS, "plain/train-00000-of-00001.parquet": 1,
                                  "plain/test-00000-of-00001.parquet": 2, "other/train-00000-of-00001.parquet": 3})
    lay_out(cache, "owner/flat", {"data/train-00000-of-00001.parquet": 1, "data/validation-00000-of-00001.parquet": 2})
    lay_out(cache, "owner/scripted", {"README.md": "# scripted\n", "scripted.py": "# a loading script\n",
                                      "data/train.jsonl": '{"text": "a"}\n'})
    lay_out(cache, "owner/scripted", {"default/train/0000.parquet": 4, "default/partial-validation/0000.parquet": 5},
            branch=PARQUET_EXPORT)
    lay_out(cache, "owner/scriptonly", {"scriptonly.py": "# a loading script\n"})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_the_cache_is_laid_out_as_huggingface_hub_reads_it(hub_cache):
    repos = {r.repo_id: r for r in scan_cache_dir(hub_cache).repos}
    assert set(repos) == {"owner/data", "owner/flat", "owner/scripted", "owner/scriptonly"}
    assert all(r.repo_type == "dataset" for r in repos.values())
    refs = {ref for rev in repos["owner/scripted"].revisions for ref in rev.refs}
    assert refs == {"main", PARQUET_EXPORT}


@pytest.mark.parametrize("repo, revision, config, splits, data_dir, status, says", [
    ("owner/data", None, "plain", ["train", "test"], None, "loads", "config 'plain'"),
    ("owner/data", None, "missing", ["train"], None, "missing config", "set `name` to one of: other, plain"),
    ("owner/data", None, None, ["train"], None, "missing config", "2 configs and no default"),
    ("owner/data", None, "other", ["test"], None, "missing split", "choose among: train"),
    ("owner/flat", None, None, ["train", "validation"], None, "loads", "config 'default'"),
    ("owner/flat", None, None, ["test"], None, "missing split", "choose among: train, validation"),
    ("owner/scripted", None, "plain_text", ["train"], None, "script only",
     "`revision: refs/convert/parquet`, `data_dir: default`"),
    ("owner/scriptonly", None, None, ["train"], None, "script only", "no parquet export"),
    ("owner/scripted", PARQUET_EXPORT, None, ["train", "validation"], "default", "loads", "partial export"),
    ("owner/scripted", PARQUET_EXPORT, None, ["train"], "plain_text", "missing config", "`data_dir` to one of: default"),
    ("owner/scripted", PARQUET_EXPORT, None, ["test"], "default", "missing split", "train, validation"),
    ("owner/absent", None, None, ["train"], None, "unreachable", "Hub cache does not hold it"),
    ("owner/data", "v2", None, ["train"], None, "unreachable", "Hub cache does not hold it"),
])
def test_each_verdict_on_the_laid_out_cache(hub_cache, repo, revision, config, splits, data_dir, status, says):
    found = verdict(repo_view(repo, revision), config, splits, data_dir)
    assert found.status == status, found
    assert says in f"{found.detail} {found.fix}", found


def test_the_export_fallback_reads_the_config_folder_as_datasets_does(tmp_path):
    import datasets

    for name, value in {"default/train/0000.parquet": 1, "default/partial-validation/0000.parquet": 2,
                        "other/train/0000.parquet": 3}.items():
        _parquet(value, tmp_path / name)
    kwargs = load_arguments(str(tmp_path), "default", PARQUET_EXPORT)
    assert kwargs == {"path": str(tmp_path), "data_dir": "default", "revision": PARQUET_EXPORT}
    kwargs.pop("revision")  # a local folder has no revisions; the same files as the export branch
    loaded = datasets.load_dataset(**kwargs)
    assert sorted(loaded) == ["train", "validation"] and loaded["train"]["label"] == [1]  # not other/'s rows
    assert load_arguments("o/n", "plain", None) == {"path": "o/n", "name": "plain"}


def _spec(tmp_path: Path, sources: list[dict]) -> Path:
    for s in sources:
        s.setdefault("language", "en"), s.setdefault("task", "sentiment"), s.setdefault("template_file", str(TEMPLATE))
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "check", "sources": sources}), encoding="utf-8")
    return path


def test_mixture_check_prints_a_verdict_per_source_and_fails_when_one_would_not_load(hub_cache, tmp_path, capsys):
    local = tmp_path / "local"
    local.mkdir()
    spec = _spec(tmp_path, [
        {"path": "owner/data", "name": "plain", "splits": ["train", "test"], "label": "good"},
        {"path": "owner/scripted", "label": "script"},
        {"path": "owner/scripted", "revision": PARQUET_EXPORT, "data_dir": "default", "label": "export"},
        {"path": "owner/data", "name": "plain_text", "label": "noconfig"},
        {"path": "owner/absent", "label": "gone"},
        {"path": "owner/scriptonly", "skip": "only a loading script", "label": "left"},
        {"path": str(local), "label": "folder"},
        {"path": "json", "data_files": "hf://datasets/owner/scripted/data/*.jsonl", "label": "files"},
    ])
    assert cli.main(["mixture", "check", str(spec), "--online"]) == 2
    out = capsys.readouterr()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[2] for line in out.out.splitlines()
            if line.startswith("| ") and not line.startswith("| source")}
    assert rows == {"good": "loads", "script": "script only", "export": "loads", "noconfig": "missing config",
                    "gone": "unreachable", "left": "skipped", "folder": "local", "files": "loads"}
    assert "refs/convert/parquet" in out.out and "3 source(s)" in out.err
    # offline: validated and placed, nothing asked; the control spec passes
    assert cli.main(["mixture", "check", str(spec)]) == 0
    assert "not checked" in capsys.readouterr().out
    good = _spec(tmp_path, [{"path": "owner/data", "name": "plain", "label": "good"}])
    assert cli.main(["mixture", "check", str(good), "--online"]) == 0


def test_an_id_without_an_owner_is_refused_with_its_home(tmp_path):
    spec = _spec(tmp_path, [{"path": "trec", "label": "a"}, {"path": "wiki_hop", "label": "b"},
                            {"path": "wiki_hop", "label": "c", "skip": "no known home"}])
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(spec)
    assert len(err.value.problems) == 2
    assert "sources[0].path: 'trec'" in err.value.problems[0] and "'CogComp/trec'" in err.value.problems[0]
    assert "sources[1].path" in err.value.problems[1] and "search" in err.value.problems[1]
    # control: a local folder of that name, and a packaged builder, are not Hub ids
    (tmp_path / "trec").mkdir()
    assert load_mixture_spec(_spec(tmp_path, [{"path": "trec", "label": "a"},
                                              {"path": "json", "data_files": "x.jsonl", "label": "b"}]))


def test_eval_check_names_each_tasks_verdict(hub_cache, capsys):
    langs = ("zh", "sw")
    configs = "".join(f"- config_name: {lang}\n  data_files:\n  - split: validation\n    path: {lang}/val-*.parquet\n"
                      for lang in langs)
    lay_out(hub_cache, "cambridgeltl/xcopa", {"README.md": f"---\nconfigs:\n{configs}---\n",
                                              **{f"{lang}/val-00000.parquet": i for i, lang in enumerate(langs)}})
    lay_out(hub_cache, "juletxara/xstory_cloze", {"xstory_cloze.py": "# a loading script\n"})
    lay_out(hub_cache, "juletxara/xstory_cloze", {"zh/eval/0000.parquet": 1}, branch=PARQUET_EXPORT)
    argv = ["eval", "--check", "--online", "--tasks", "xcopa,xstorycloze", "--languages", "zh,sw"]
    assert cli.main(argv) == 2
    out = capsys.readouterr().out
    assert "| xcopa | cambridgeltl/xcopa validation (zh, sw) | loads |" in out
    assert "| xstorycloze |" in out and "script only" in out
    assert "--data-revision xstorycloze=refs/convert/parquet" in out
    # the fix, applied: datasets reads the export's eval/ folder as the split "test" (its name inference), so the
    # check says the split is missing, before any model is loaded
    assert cli.main([*argv, "--data-revision", f"xstorycloze={PARQUET_EXPORT}"]) == 2
    out = capsys.readouterr().out
    assert "zh: juletxara/xstory_cloze@refs/convert/parquet config 'zh' has no split eval" in out
    assert "choose among: test" in out and "(and 1 more languages)" in out  # sw: no config at all
    assert cli.main(["eval", "--check", "--online", "--tasks", "xcopa", "--languages", "zh,sw"]) == 0  # control
    assert cli.main(["eval", "--check", "--tasks", "xcopa"]) == 0  # offline: not asked
    assert "not checked" in capsys.readouterr().out
    assert cli.main(["eval", "--check", "--data-revision", "nope=main"]) == 2


@pytest.mark.parametrize("error, says", [
    ("RepositoryNotFoundError", "does not exist on the Hub"),
    ("GatedRepoError", "accept its terms"),
    ("RevisionNotFoundError", "correct the revision"),
])
def test_the_hubs_refusals_become_unreachable_with_their_fix(monkeypatch, error, says):
    from types import SimpleNamespace

    from huggingface_hub import HfApi, errors

    response = SimpleNamespace(headers={}, request=None, status_code=404)  # what the errors read of a response

    def refuse(*args, **kwargs):
        raise getattr(errors, error)("refused", response=response)

    monkeypatch.setattr(HfApi, "list_repo_files", refuse)
    found = verdict(repo_view("o/n", "v1"), None, ["train"])
    assert found.status == "unreachable" and says in f"{found.detail} {found.fix}", found


def test_a_tasks_revision_reaches_the_loader(monkeypatch):
    import datasets

    from bloomz_tune.tasks.table import load_task_rows

    calls = []

    def fake_load(**kwargs):
        calls.append(kwargs)
        return [{"input_sentence_1": "a", "input_sentence_2": "b", "input_sentence_3": "c", "input_sentence_4": "d",
                 "sentence_quiz1": "e", "sentence_quiz2": "f", "answer_right_ending": 1}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    load_task_rows("xstorycloze", "zh", revision=PARQUET_EXPORT)
    load_task_rows("xstorycloze", "zh")
    assert calls == [{"path": "juletxara/xstory_cloze", "data_dir": "zh", "revision": PARQUET_EXPORT, "split": "eval"},
                     {"path": "juletxara/xstory_cloze", "name": "zh", "split": "eval"}]
