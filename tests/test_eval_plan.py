"""eval --dry-run: memory per device and the device map, from a config alone, as accelerate would place it."""

import json

import pytest

from bloomz_tune import cli, plan_evaluation
from bloomz_tune.errors import BloomzTuneError


def test_plan_places_every_weight_once_and_matches_the_loaded_split(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    whole = plan_evaluation(tiny_model_dir, dtype="float32", device="cpu")
    assert list(whole["devices"]) == ["cpu"] and whole["fits"] is None  # no limit given: nothing to compare
    assert whole["devices"]["cpu"]["weights"] == whole["model_bytes"] > 0
    split = plan_evaluation(tiny_model_dir, dtype="float32", device_map="auto", max_memory={"cpu": "400KB"})
    assert sum(d["weights"] for d in split["devices"].values()) == whole["model_bytes"]
    assert "disk" in split["devices"]  # 400 KB of CPU memory cannot hold the tiny model
    loaded = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype="float32", device_map="auto",
                                                  max_memory={"cpu": "400KB"}, offload_folder=str(tiny_model_dir))
    assert {k: str(v) for k, v in loaded.hf_device_map.items()} == split["device_map"]


def test_dry_run_command_prints_the_plan_and_refuses_what_does_not_fit(tiny_model_dir, capsys):
    assert cli.main(["eval", str(tiny_model_dir), "--dry-run", "--dtype", "float32", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "weights in float32" in out and "cpu" in out and "no memory limit to compare with" in out
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert f"{config['n_layer']}" and "(whole model)" in out
    assert cli.main(["eval", str(tiny_model_dir), "--dry-run", "--device-map", "auto", "--max-memory", "cpu=1KB",
                     "--batch-size", "64"]) == 2
    assert "would not fit" in capsys.readouterr().err


def test_public_shapes_plan_offline():
    plan = plan_evaluation("bigscience/bloom-560m", dtype="bfloat16", device="cpu")
    assert round(plan["model_bytes"] / 2**20) == round(559_214_592 * 2 / 2**20)  # bloom-560m's parameters in bf16


def test_bad_device_map_is_one_line():
    with pytest.raises(BloomzTuneError, match="--device-map"):
        plan_evaluation("bigscience/bloom-560m", device_map="everywhere")


def test_a_plan_within_its_limits_fits(tiny_model_dir):
    plan = plan_evaluation(tiny_model_dir, dtype="float32", device_map="auto", max_memory={"cpu": "8GiB"},
                           batch_size=2, max_length=64)
    assert plan["fits"] is True and list(plan["devices"]) == ["cpu"]
