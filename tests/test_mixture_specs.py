"""Every mixture spec shipped in data_mixtures/ (recursively) loads and validates, and the three reference
mixtures keep the shape BLOOMZ_FACTS.md asks for."""

from __future__ import annotations

from pathlib import Path

import pytest

from bloomz_tune.mixture import (BLOOMZ_LANGUAGE_WEIGHTS, EVAL_DATASETS, MAX_EXAMPLES_PER_DATASET_PROMPT,
                                 held_out_match, load_mixture_spec, mixture_fingerprint, source_templates)

MIXTURES = Path(__file__).resolve().parents[1] / "data_mixtures"
SPECS = sorted(p for p in MIXTURES.rglob("*.yaml") if "templates" not in p.relative_to(MIXTURES).parts)


def test_specs_found():
    assert {p.name for p in SPECS} >= {"demo.yaml", "xp3_mini.yaml", "xp3.yaml", "xp3_published.yaml"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(MIXTURES)))
def test_spec_validates(path):
    spec = load_mixture_spec(path)
    assert not spec.include_held_out
    assert len(mixture_fingerprint(spec)) == 16
    for src in spec.sources:
        assert held_out_match(src.path, src.name, src.dataset) is None
        assert source_templates(spec, src)
    assert path.read_text().startswith("#"), "each mixture starts with a comment: purpose, size, command"


def test_xp3_mini_shape():
    spec = load_mixture_spec(MIXTURES / "xp3_mini.yaml")
    assert len(spec.sources) >= 12
    assert len({s.task for s in spec.sources}) >= 6
    langs = {s.language for s in spec.sources}
    assert len(langs) >= 8 and {"en", "fr", "es", "zh", "ar", "hi", "vi", "id"} <= langs
    assert all(spec.language_weights[lang] == BLOOMZ_LANGUAGE_WEIGHTS[lang] for lang in langs)


def test_xp3_full_shape():
    spec = load_mixture_spec(MIXTURES / "xp3.yaml")
    assert spec.cap == MAX_EXAMPLES_PER_DATASET_PROMPT == 100_000
    assert spec.language_weights == BLOOMZ_LANGUAGE_WEIGHTS
    assert spec.validation_fraction == 0.05
    assert len({s.task for s in spec.sources}) >= 12 and spec.not_yet_covered
    assert all("validation" not in s.splits for s in spec.sources if s.path != "google/xquad")


def test_published_xp3_reads_data_files_by_language():
    spec = load_mixture_spec(MIXTURES / "xp3_published.yaml")
    assert spec.language_weights == BLOOMZ_LANGUAGE_WEIGHTS
    for s in spec.sources:
        assert s.prompted and s.path == "json"
        assert s.data_files == f"hf://datasets/bigscience/xP3/{s.language}/*.jsonl"


def test_eval_table_ids_are_refused():
    for key, ev in EVAL_DATASETS.items():
        config = ev.configs[0] if ev.configs else "en"
        match = held_out_match(ev.hub_id, config)
        assert match is not None and match.title == ev.title, key
