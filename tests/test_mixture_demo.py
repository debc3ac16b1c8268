"""The bundled offline demo mixture builds, has the promised shape, and is reused from the cache."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bloomz_tune.mixture.builds import (
    COLUMNS,
    DATASHEET_JSON,
    build_mixture,
    load_built_mixture,
    load_mixture_spec,
    prepare_mixture,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "data_mixtures" / "demo.yaml"


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory):
    return prepare_mixture(DEMO, tmp_path_factory.mktemp("cache"))


def test_demo_shape(demo_build):
    dsd = load_built_mixture(demo_build)
    assert set(dsd) == {"train", "validation"}
    train, val = dsd["train"], dsd["validation"]
    assert train.column_names == COLUMNS and val.column_names == COLUMNS
    assert 1500 <= len(train) + len(val) <= 4000
    assert len(val) >= 150
    assert {"en", "fr", "es", "zh"} <= set(train["language"])
    assert {"sentiment", "topic_classification", "translation", "extractive_qa"} <= set(train["task"])
    for split in (train, val):
        for row in split:
            assert row["inputs"] and row["targets"]
            if row["task"] in ("sentiment", "topic_classification"):
                assert len(row["choices"]) >= 2 and row["targets"] in row["choices"]
            else:
                assert row["choices"] == []
    # several templates per task
    for task in ("sentiment", "topic_classification", "translation", "extractive_qa"):
        assert len({t for t, k in zip(train["template"], train["task"]) if k == task}) >= 2


def test_demo_validation_examples_are_unseen(demo_build):
    """Validation holds whole source examples: no sentence of a validation row appears in any train row."""
    dsd = load_built_mixture(demo_build)
    train_text = "\n".join(dsd["train"]["inputs"])
    sentiment_val = [r for r in dsd["validation"] if r["task"] == "sentiment"]
    assert len(sentiment_val) >= 30
    for row in sentiment_val:
        sentence = re.search(r"(Review: |feels: |^)(.+?[.。])", row["inputs"]).group(2)
        assert sentence not in train_text


def test_demo_reused_and_datasheet(demo_build, tmp_path):
    sheet = json.loads((demo_build / DATASHEET_JSON).read_text())
    assert demo_build.name == f"demo-{sheet['fingerprint']}"
    assert (demo_build / "datasheet.md").read_text().startswith("# Mixture datasheet: demo")
    assert (demo_build / "distribution.png").stat().st_size > 1000
    marker = demo_build / "dataset" / "train" / "dataset_info.json"
    before = marker.stat().st_mtime_ns
    assert prepare_mixture(DEMO, demo_build.parent) == demo_build      # same fingerprint: not rebuilt
    assert marker.stat().st_mtime_ns == before
    assert prepare_mixture(demo_build, tmp_path) == demo_build         # a built dir is used as it is


def test_demo_deterministic(demo_build, tmp_path):
    again = build_mixture(load_mixture_spec(DEMO), tmp_path / "again")
    a, b = load_built_mixture(demo_build), load_built_mixture(again)
    for split in ("train", "validation"):
        assert a[split].to_dict() == b[split].to_dict()
