"""The model card carries Hub metadata the Hub can read; a push uploads exactly the right files through
huggingface_hub (patched only at HfApi's network methods) and never changes the run directory."""

import hashlib
import importlib
import json
import shutil

import pytest
import torch
from huggingface_hub import HfApi, ModelCard, ModelCardData
from huggingface_hub.errors import HfHubHTTPError
from test_recipe import ROOT

from bloomz_tune import cli, push
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.hub.card import model_card
from bloomz_tune.recipe import load_recipe, save_recipe

TOKEN = "hf_SentinelTokenThatMustNeverBeWritten0123"


def _datasheet(**extra):
    return {"name": "xp3_mini", "fingerprint": "abc123", "spec_file": "data_mixtures/xp3_mini.yaml",
            "spec": {"sources": [
                {"path": "google-research-datasets/paws-x", "name": "fr", "data_files": None, "dataset": None},
                {"path": "demo_data/sentiment", "data_files": "en.jsonl", "dataset": None},  # local rows
                {"path": "/data/xquad_copy", "data_files": None, "dataset": "google/xquad"},  # a local mirror
                {"path": "json", "data_files": "rows/*.jsonl", "dataset": None}]},
            "by_language": {"en": {"train": 900, "share": 0.6}, "zh": {"train": 600, "share": 0.4}},
            "by_task": {"paraphrase": {"train": 1500, "share": 1.0}},
            "tokens": {"train": {"input": 300_000, "target": 100_000}}, **extra}


def make_run(run, overrides=(), processes=1):
    """A run directory as finetune.py leaves it (final/ is filled by the caller)."""
    (run / "final").mkdir(parents=True)
    (run / "eval" / "zero_shot").mkdir(parents=True)
    save_recipe(load_recipe(ROOT / "recipes" / "lora_560m.yaml", list(overrides)), run / "recipe.resolved.yaml")
    (run / "datasheet.json").write_text(json.dumps(_datasheet()))
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1750, "epoch": 2.5, "loss": 1.0}) + "\n")
    (run / "eval" / "results.json").write_text(json.dumps(
        {"sanity": {"examples": 50, "before": 0.4, "after": 0.7}, "training": {"processes": processes}}))
    (run / "eval" / "zero_shot" / "results.json").write_text(json.dumps({
        "settings": {"prompts": 5}, "datasets": {"xnli/en": {
            "source": "/data/XNLI-1.0", "config": "en", "split": "validation", "skipped": 0, "files": [
                {"path": "xnli.dev.tsv", "size": 12345, "sha256": "ab" * 32, "rows": 2490}]}}, "tasks": {"xnli": {
            "title": "XNLI", "mean_of_medians": 0.4123,
            "languages": {"en": {"median": 0.4246}, "fr": {"median": 0.4}},
            "published_mean_of_medians_pct": {"bloom-560m": 33.74, "bloomz-560m": 39.61, "bloomz-7b1": 46.75}}}}))
    return run


def test_card_metadata_parses_validates_and_lists_eval_results(tmp_path):
    run = make_run(tmp_path / "lora_7b1", ["model.name_or_path=bigscience/bloom-7b1"])
    card = ModelCard(model_card(run, "me/bloomz-7b1-lora"))  # raises on a malformed model-index
    data = card.data
    assert data.base_model == "bigscience/bloom-7b1" and data.license == "bigscience-bloom-rail-1.0"
    assert data.datasets == ["google-research-datasets/paws-x", "google/xquad"]  # Hub ids only
    assert data.language == ["en", "zh"] and data.pipeline_tag == "text-generation"
    assert data.library_name == "peft" and "lora" in data.tags
    assert data.model_name == "bloomz-7b1-lora"
    results = {(r.dataset_type, r.dataset_config): r for r in data.eval_results}
    assert set(results) == {("facebook/xnli", "en"), ("facebook/xnli", "fr")}
    en = results[("facebook/xnli", "en")]
    assert (en.task_type, en.dataset_split, en.metric_type, en.metric_value) == \
        ("text-generation", "validation", "accuracy", 42.46)
    # The metadata survives the round trip through the Hub's own structures unchanged.
    meta = data.to_dict()
    assert ModelCardData(**meta).to_dict() == meta
    # Compared with the published models of the SAME size: bloomz-7b1 is published, bloom-7b1 is not.
    assert "| XNLI | 2 | 41.23 | – | 46.75 |" in card.text
    assert "bloom-560m" not in card.text and "bloomz-560m" not in card.text
    assert f"| xnli/en | /data/XNLI-1.0 | xnli.dev.tsv | 12,345 | `{'ab' * 32}` | 2,490 |" in card.text  # data scored
    assert 'AutoPeftModelForCausalLM.from_pretrained("me/bloomz-7b1-lora")' in card.text


def test_card_states_the_real_global_batch_and_tokens_seen(tmp_path):
    card = model_card(make_run(tmp_path / "lora_560m", processes=4))
    assert "| global batch | 4096 packed rows = 8 per device x 128 accumulation x 4 process(es) |" in card
    assert "| rows seen | 7,168,000 |" in card  # 1750 steps x 4096
    assert "| tokens seen | about 1,000,000 " in card  # 2.5 epochs x 400,000 train tokens
    assert "| XNLI | 2 | 41.23 | 33.74 | 39.61 |" in card
    assert "bloomz-560m for comparison: global batch 1024 x 2048 tokens, 1750 steps" in card


def _adapter_run(tmp_path, adapter):
    """A run whose final/ holds a real LoRA adapter of the tiny model (nonzero B), its tokenizer and a pickle."""
    run = make_run(tmp_path / "run")
    shutil.copytree(adapter, run / "final", dirs_exist_ok=True)
    torch.save({"args": 1}, run / "final" / "training_args.bin")  # what Trainer.save_model leaves: never uploaded
    return run


def _tree_hash(folder):
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


class Recorder:
    """Stands in for the Hub at HfApi's network methods and keeps what it was sent."""

    def __init__(self, monkeypatch):
        self.repos, self.files = [], {}
        monkeypatch.setattr(HfApi, "create_repo", self.create_repo)
        monkeypatch.setattr(HfApi, "create_commit", self.create_commit)

    def create_repo(self, repo_id, **kwargs):
        self.repos.append((repo_id, kwargs))
        return f"https://huggingface.co/{repo_id}"

    def create_commit(self, repo_id, operations, **kwargs):
        for op in operations:
            with op.as_file() as f:
                self.files[op.path_in_repo] = f.read()


@pytest.mark.parametrize("merged", [False, True])
def test_push_uploads_exactly_the_expected_files(tmp_path, tiny_adapter_dir, monkeypatch, capsys, merged):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = _adapter_run(tmp_path, tiny_adapter_dir)
    before = _tree_hash(run)
    hub = Recorder(monkeypatch)
    assert cli.main(["push", str(run), "--repo-id", "me/tiny-lora"] + (["--merged"] if merged else [])) == 0
    weights = ({"model.safetensors", "config.json", "generation_config.json"} if merged
               else {"adapter_model.safetensors", "adapter_config.json"})
    assert set(hub.files) == weights | {"tokenizer.json", "tokenizer_config.json", "recipe.resolved.yaml",
                                        "datasheet.json", "README.md"}
    assert hub.repos == [("me/tiny-lora", {"private": True, "exist_ok": True, "repo_type": "model"})]
    if not merged:
        assert hub.files["adapter_model.safetensors"] == (run / "final" / "adapter_model.safetensors").read_bytes()
    card = ModelCard(hub.files["README.md"].decode())
    assert card.data.library_name == ("transformers" if merged else "peft")
    assert _tree_hash(run) == before  # a push writes nothing into the run directory
    assert not any(TOKEN.encode() in content for content in hub.files.values())
    assert not any(TOKEN.encode() in p.read_bytes() for p in run.rglob("*") if p.is_file())
    assert TOKEN not in capsys.readouterr().out


def _hub_error(status):
    http = importlib.import_module(HfHubHTTPError.__mro__[1].__module__)  # the Hub client's HTTP library
    request = http.Request("POST", "https://huggingface.co/api/repos/create")
    return HfHubHTTPError(f"{status} Client Error", response=http.Response(status, request=request))


def _connection_drop():
    http = importlib.import_module(HfHubHTTPError.__mro__[1].__module__)
    return http.ConnectError("[Errno 104] Connection reset by peer")


FAILURES = {
    "no token": ("me/tiny", None, "no Hugging Face token"),
    "invalid repo id": ("me/not a valid/name", None, "invalid Hub repo id"),
    "offline": ("me/tiny", "offline", "offline mode is on"),
    "no permission": ("me/tiny", lambda: _hub_error(403), "no permission"),
    "network drop": ("me/tiny", _connection_drop, "connection to the Hub failed"),
    "socket reset": ("me/tiny", lambda: ConnectionResetError(104, "Connection reset by peer"),
                     "connection to the Hub failed"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_failed_push_is_one_line_and_leaves_the_run_byte_identical(case, tmp_path, tiny_adapter_dir, monkeypatch,
                                                                   capsys):
    import huggingface_hub.constants as constants

    repo_id, failure, message = FAILURES[case]
    run = _adapter_run(tmp_path, tiny_adapter_dir)
    before = _tree_hash(run)
    if case == "no token":
        for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    else:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    if failure == "offline":
        assert constants.HF_HUB_OFFLINE  # tests/conftest.py: the real client refuses to go online
    elif failure is not None:
        monkeypatch.setattr(HfApi, "create_repo", lambda self, *a, **k: "https://huggingface.co/me/tiny")

        def fail(self, *args, **kwargs):
            raise failure()

        monkeypatch.setattr(HfApi, "create_commit" if case != "no permission" else "create_repo", fail)
    with pytest.raises(BloomzTuneError, match=message) as err:
        push(run, repo_id)
    assert "\n" not in str(err.value) and TOKEN not in str(err.value)
    assert cli.main(["push", str(run), "--repo-id", repo_id]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: ") and stderr.count("\n") == 1 and "Traceback" not in stderr
    assert _tree_hash(run) == before


def test_push_refuses_a_final_folder_that_is_not_whole(tmp_path, tiny_adapter_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = _adapter_run(tmp_path, tiny_adapter_dir)
    weights = run / "final" / "adapter_model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[:-100])
    with pytest.raises(BloomzTuneError, match="not a whole safetensors file"):
        push(run, "me/tiny")
    weights.rename(run / "final" / "adapter_model.bin")
    with pytest.raises(BloomzTuneError, match="no safetensors weights .only pickled adapter_model.bin"):
        push(run, "me/tiny")
    (run / "final" / "adapter_model.bin").rename(weights)
    weights.write_bytes(content)
    (run / "final" / "tokenizer.json").unlink()
    (run / "final" / "tokenizer_config.json").unlink()
    with pytest.raises(BloomzTuneError, match="has no tokenizer"):
        push(run, "me/tiny")
    with pytest.raises(BloomzTuneError, match="not a run directory"):
        push(tmp_path, "me/tiny")


def test_dry_run_shows_the_card_without_network_or_token(tmp_path, tiny_adapter_dir, monkeypatch, capsys):
    import huggingface_hub.constants as constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    run = _adapter_run(tmp_path, tiny_adapter_dir)
    assert cli.main(["share", str(run), "--repo-id", "me/tiny", "--dry-run"]) == 0  # `share` is push's alias
    out = capsys.readouterr().out
    assert out.startswith("---\n") and "would upload to me/tiny: README.md, adapter_config.json" in out
    assert "training_args.bin" not in out
