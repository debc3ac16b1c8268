"""The run's budget: global batch = rows per device x accumulation x processes, recorded in run.json and the
model card; a run that would repeat its mixture too often is refused, naming the key that allows it."""

import json

import pytest
from datasets import Dataset
from test_recipe import ROOT

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.hub.share import model_card
from bloomz_tune.recipe import load_recipe, recipe_from_dict, save_recipe
from bloomz_tune.storage import write_json
from bloomz_tune.training.budget import check_budget, global_batch, plan_run, run_budget


def test_global_batch_counts_processes():
    recipe = load_recipe(ROOT / "recipes" / "lora_560m.yaml")
    assert global_batch(recipe.training, 1) == 1024
    assert global_batch(recipe.training, 8) == 8192
    budget = run_budget(recipe, train_rows=100_000, train_tokens=100_000 * 2000, processes=4)
    assert budget["global_batch"] == 4096 and budget["steps"] == 1750
    assert budget["tokens_per_step"] == 4096 * 2000
    assert budget["epochs_over_mixture"] == pytest.approx(1750 * 4096 / 100_000, abs=1e-3)


def test_epochs_from_num_train_epochs_when_no_max_steps():
    recipe = recipe_from_dict({"training": {"max_steps": -1, "num_train_epochs": 2.0,
                                            "per_device_train_batch_size": 4}})
    budget = run_budget(recipe, train_rows=10, train_tokens=500, processes=1)
    assert budget["steps"] == 5 and budget["epochs_over_mixture"] == 2.0


def test_too_many_epochs_are_refused_unless_allowed():
    recipe = load_recipe(ROOT / "recipes" / "lora_560m.yaml")
    budget = run_budget(recipe, train_rows=43_000, train_tokens=43_000 * 2000, processes=1)
    with pytest.raises(BloomzTuneError, match=r"41\.7 epochs over the mixture's 43,000 training rows, more than "
                                              r"training.max_epochs_over_mixture=4"):
        check_budget(budget, recipe.training.max_epochs_over_mixture)
    check_budget(budget, 50)
    check_budget(budget, None)
    assert load_recipe(ROOT / "recipes" / "lora_560m.yaml",
                       ["training.max_epochs_over_mixture=null"]).training.max_epochs_over_mixture is None


def test_plan_run_writes_nothing_and_the_card_reads_run_json(tmp_path):
    recipe = recipe_from_dict({"output_dir": str(tmp_path), "training": {
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 3, "max_steps": 4}})
    rows = Dataset.from_dict({"input_ids": [[1, 2, 3]] * 30, "length": [3] * 30})
    budget = plan_run(recipe, rows)
    assert not any(tmp_path.iterdir())  # the run writes run.json once every check has passed
    write_json(tmp_path / "run.json", budget)
    assert budget["global_batch"] == 6 and budget["epochs_over_mixture"] == 0.8 and budget["tokens"] == 72
    with pytest.raises(BloomzTuneError, match="max_epochs_over_mixture"):
        plan_run(recipe, rows.select(range(4)))  # 24 rows a run over 4: 6 epochs

    save_recipe(recipe, tmp_path / "recipe.resolved.yaml")
    card = model_card(tmp_path)
    assert "| global batch | 6 rows (one sample each, padded) = 2 per device x 3 accumulation x 1 process(es) |" in card
    assert "| planned | 18 tokens per step, 0.80 epochs over the mixture |" in card


def test_training_run_records_its_budget_and_refuses_an_overrun(tmp_path):
    from bloomz_tune.finetune import run

    common = [f"data.mixture_cache={tmp_path / 'mixtures'}", f"data.mixture={ROOT / 'data_mixtures' / 'demo.yaml'}",
              "training.max_steps=2", "eval.sanity=false"]
    run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml", [f"output_dir={tmp_path / 'run'}", *common]))
    budget = json.loads((tmp_path / "run" / "run.json").read_text())
    assert (budget["processes"], budget["global_batch"], budget["steps"]) == (1, 16, 2)
    assert json.loads((tmp_path / "run" / "final" / "run.json").read_text()) == budget
    card = (tmp_path / "run" / "final" / "README.md").read_text()
    assert "| global batch | 16 rows (one sample each, padded) = 16 per device x 1 accumulation x 1 process(es) |" in card
    with pytest.raises(BloomzTuneError, match="training.max_epochs_over_mixture=0.001"):
        run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml", [f"output_dir={tmp_path / 'run2'}", *common,
                                                               "training.max_epochs_over_mixture=0.001"]))
    assert not (tmp_path / "run2" / "checkpoints").exists()
