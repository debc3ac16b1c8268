"""training.report_to is checked before a run starts; tensorboard gets the loss and the resolved recipe."""

import pytest
from test_recipe import ROOT

from bloomz_tune import load_recipe, train
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.training.trackers import check_trackers


def _recipe(tmp_path, *overrides):
    return load_recipe(ROOT / "recipes" / "tiny_demo.yaml", [
        f"output_dir={tmp_path / 'run'}", f"data.mixture_cache={tmp_path / 'mixtures'}", "training.max_steps=4",
        "training.logging_steps=2", "eval.sanity=false", *overrides])


def test_unknown_or_missing_tracker_stops_the_run_before_anything_is_written(tmp_path, monkeypatch):
    with pytest.raises(BloomzTuneError, match="unknown tracker 'tensorbord'; transformers knows .*tensorboard"):
        train(_recipe(tmp_path, "training.report_to=[tensorbord]"))
    assert not (tmp_path / "run").exists()
    import transformers.integrations.integration_utils as integrations

    monkeypatch.setattr(integrations, "get_available_reporting_integrations", lambda: [])
    with pytest.raises(BloomzTuneError, match="tensorboard is known to transformers but its package is not installed"):
        check_trackers(["tensorboard"])


def test_push_at_the_end_needs_a_token_at_the_start(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    with pytest.raises(BloomzTuneError, match="no Hugging Face token"):
        train(_recipe(tmp_path, "hub.push_to_hub=true", "hub.repo_id=me/tiny"))
    assert not (tmp_path / "run").exists()


def test_tensorboard_event_files_hold_the_loss_and_the_recipe(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(_recipe(tmp_path, "training.report_to=[tensorboard]"))
    events = sorted((tmp_path / "run" / "checkpoints" / "runs").rglob("events.out.tfevents.*"))
    assert events
    accumulator = EventAccumulator(str(events[0].parent), size_guidance={"tensors": 0})
    accumulator.Reload()
    loss = accumulator.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 4] and all(e.value > 0 for e in loss)  # logging_first_step, then every 2 steps
    recipe_text = accumulator.Tensors("recipe/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "report_to:\n  - tensorboard" in recipe_text and f"output_dir: {tmp_path / 'run'}" in recipe_text
