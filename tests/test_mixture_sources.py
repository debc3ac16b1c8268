"""Mixture sources in the published release layouts (``format``): xP3 / xP3all, xP3x, the Aya collection and the
Aya dataset, read from fixture files written in each exact layout (tests/fixtures/mixture/releases)."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bloomz_tune.errors import BloomzTuneError, ConfigError
from bloomz_tune.mixture.builds import build_mixture, load_built_mixture, load_mixture_spec
from bloomz_tune.mixture.sources import our_language, release_codes, xp3_name_parts
from bloomz_tune.mixture.spec import spec_help

REPO = Path(__file__).resolve().parents[1]
REL = REPO / "tests" / "fixtures" / "mixture" / "releases"


def write_spec(tmp_path: Path, sources: list[dict], **top) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "seed": 7, "validation_fraction": 0.0, **top, "sources": sources},
                                   allow_unicode=True), encoding="utf-8")
    return path


def release(fmt: str, folder: str | Path, language: str, **kw) -> dict:
    return {"path": str(REL / folder), "format": fmt, "language": language, "task": fmt, **kw}


def build(tmp_path: Path, sources: list[dict], **top) -> list[dict]:
    dsd = load_built_mixture(build_mixture(write_spec(tmp_path, sources, **top), tmp_path / "out"))
    return sorted((dict(r) for split in dsd for r in dsd[split]), key=lambda r: (r["source"], r["inputs"]))


def table(rows: list[dict]) -> Counter:
    return Counter((r["language"], r["source"], r["template"]) for r in rows)


# -- rows, languages, sources and templates, per format ---------------------------------------------------------

def test_xp3_by_language_names_rows_by_file(tmp_path):
    rows = build(tmp_path, [release("xp3", "xP3", "en", splits="all"), release("xp3", "xP3", "sw", splits="all")])
    assert table(rows) == {("en", "ag_news", "classify_question_first"): 3, ("en", "paws_labeled_final", "Meaning"): 2,
                           ("sw", "GEM_xlsum_swahili", "article_summary_sw"): 1}
    assert "not read" not in {r["targets"] for r in rows}           # merged_en.jsonl repeats the per-prompt files
    assert {r["targets"] for r in rows if r["source"] == "ag_news"} == {"Business", "Sports", "Sci/Tech"}


def test_xp3_splits_select_files(tmp_path):
    rows = build(tmp_path, [release("xp3", "xP3", "en")])             # splits default to train
    assert set(table(rows)) == {("en", "ag_news", "classify_question_first")}


def test_xp3_file_names_split_into_dataset_split_prompt():
    assert xp3_name_parts(Path("xp3_ag_news_None_train_classify_question_first.jsonl")) == (
        "ag_news", "train", "classify_question_first")
    assert xp3_name_parts(Path("xp3_super_glue_wsc.fixed_validation_GPT_3_Style.jsonl")) == (
        "super_glue_wsc.fixed", "validation", "GPT_3_Style")
    assert xp3_name_parts(Path("xp3_Muennighoff_mbpp_sanitized_test_function_solution.jsonl")) == (
        "Muennighoff_mbpp_sanitized", "test", "function_solution")


def test_xp3x_rows_named_by_their_fields(tmp_path):
    rows = build(tmp_path, [release("xp3x", "xP3x", "fr", splits="all", held_out="skip"),
                            release("xp3x", "xP3x", "yo", splits="all")])
    assert table(rows) == {("fr", "paws-x/fr", "Concatenation"): 2,
                           ("fr", "facebook/flores/eng_Latn-fra_Latn", "translate"): 1,
                           ("yo", "facebook/flores/eng_Latn-yor_Latn", "translate"): 1}
    assert "Vrai" not in {r["targets"] for r in rows}                # the XNLI rows were left out


def test_aya_collection_rows_by_language_and_script(tmp_path):
    rows = build(tmp_path, [release("aya_collection", "aya_collection", "fr"),
                            release("aya_collection", "aya_collection", "yo")])
    assert table(rows) == {("fr", "Xcsqa-inst", "template_1"): 1, ("fr", "Xcsqa-inst", "template_2"): 1,
                           ("yo", "Xcsqa-inst", "template_1"): 1}
    assert {r["targets"] for r in rows} == {"eau", "café", "omi"}


def test_aya_dataset_rows_by_language_code(tmp_path):
    rows = build(tmp_path, [release("aya_dataset", "aya_dataset", "fr", dataset="CohereForAI/aya_dataset"),
                            release("aya_dataset", "aya_dataset", "ar", dataset="CohereForAI/aya_dataset")])
    assert table(rows) == {("fr", "CohereForAI/aya_dataset", "original-annotations"): 1,
                           ("fr", "CohereForAI/aya_dataset", "re-annotations"): 1,
                           ("ar", "CohereForAI/aya_dataset", "original-annotations"): 1}
    assert "Bamako." not in {r["targets"] for r in rows}             # the test split is not read by default


def test_release_filter_reads_release_columns(tmp_path):
    rows = build(tmp_path, [release("aya_collection", "aya_collection", "fr", filter="template_id == 2")])
    assert [r["targets"] for r in rows] == ["café"]


def test_language_codes_map_to_ours():
    assert our_language("fra_Latn") == "fr" and our_language("fra") == "fr" and our_language("zho_Hant") == "zh"
    assert our_language("kin_Latn") == "rw" and our_language("nso") == "nso" and our_language("python") == "code"
    assert our_language("deu_Latn") is None and our_language("arb_Latn") is None   # script counts when given
    assert release_codes("deu_Latn") == {"deu_latn"}


# -- languages outside BLOOM's ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, folder, language", [("xp3x", "xP3x", "deu_Latn"),
                                                   ("aya_collection", "aya_collection", "deu_Latn"),
                                                   ("aya_dataset", "aya_dataset", "deu")])
def test_non_bloom_language_refused_then_read_with_opt_in(tmp_path, fmt, folder, language):
    source = release(fmt, folder, language, label="german")
    with pytest.raises(ConfigError, match=rf"source 'german' asks for '{language}', which is not one of BLOOM"):
        load_mixture_spec(write_spec(tmp_path, [source]))
    rows = build(tmp_path, [{**source, "allow_non_bloom_languages": True}],
                 language_weights={language: 1.0})
    assert {r["language"] for r in rows} == {language} and rows
    assert {r["targets"] for r in rows} <= {"Ja", "Wasser", "Wien."}


# -- held-out evaluation data inside a release ---------------------------------------------------------------------

def test_xp3all_evaluation_files_refused_at_spec_check(tmp_path):
    with pytest.raises(ConfigError, match=r"source 't1': en/xp3_(xnli|super_glue_wsc).* holds the held-out "
                                          r"evaluation dataset (XNLI|SuperGLUE WSC)"):
        load_mixture_spec(write_spec(tmp_path, [release("xp3", "xP3all", "en", splits="all", label="t1")]))
    assert load_mixture_spec(write_spec(tmp_path, [release("xp3", "xP3all", "en", splits="all")],
                                        include_held_out=True))


def test_xp3all_evaluation_files_skipped_or_included(tmp_path):
    skipped = build(tmp_path / "a", [release("xp3", "xP3all", "en", splits="all", held_out="skip")])
    assert {r["source"] for r in skipped} == {"ag_news", "paws_labeled_final"}
    included = build(tmp_path / "b", [release("xp3", "xP3all", "en", splits="all")], include_held_out=True)
    assert {r["source"] for r in included} == {"ag_news", "paws_labeled_final", "xnli_en", "super_glue_wsc.fixed"}


@pytest.mark.parametrize("fmt, folder, words", [
    ("xp3x", "xP3x", r"xP3x/data/fra_Latn/xp3_xnli_fr_validation_GPT_3_style.jsonl \(xnli/fr\) holds the held-out "
                     r"evaluation dataset XNLI"),
    ("aya_collection", "aya_collection", r"translated_xnli/train-00000-of-00001.parquet \(Xnli-translated/xnli\) "
                                         r"holds the held-out evaluation dataset XNLI")])
def test_held_out_rows_refused_at_build(tmp_path, fmt, folder, words):
    with pytest.raises(BloomzTuneError, match=words):
        build(tmp_path, [release(fmt, folder, "fr", splits="all")])
    assert build(tmp_path / "ok", [release(fmt, folder, "fr", splits="all")], include_held_out=True)


def test_path_json_source_with_held_out_file_names_still_refused(tmp_path):
    source = {"path": "json", "data_files": str(REL / "xP3all" / "en" / "*.jsonl"), "language": "en",
              "task": "xp3", "prompted": True}
    with pytest.raises(ConfigError, match=r"reads xp3_xnli_en_validation_GPT_3_style.jsonl, a file of .* XNLI"):
        load_mixture_spec(write_spec(tmp_path, [source]))


# -- bad input ---------------------------------------------------------------------------------------------------

def test_corrupt_line_named_with_file_and_line(tmp_path):
    folder = tmp_path / "xP3"
    shutil.copytree(REL / "xP3", folder)
    bad = folder / "en" / "xp3_ag_news_None_train_classify_question_first.jsonl"
    lines = bad.read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([lines[0], lines[1][:25], lines[2]]) + "\n", encoding="utf-8")
    source = {"path": str(folder), "format": "xp3", "language": "en", "task": "xp3"}
    with pytest.raises(BloomzTuneError, match=rf"{bad}:2: not valid JSON"):
        build(tmp_path, [source])


def test_release_keys_checked_with_the_spec(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(write_spec(tmp_path, [
            release("xp3", "xP3", "en", template_file="t.yaml", streaming=True),
            release("xp3", "xP3", "yo"),                                        # no yo folder
            release("aya_dataset", "nowhere", "fr"),
            release("xp3x", "xP3x", "fr", format="xp4")]))
    text = str(err.value)
    assert "sources[0].template_file: a `format: xp3` source takes no `template_file`" in text
    assert "sources[0].streaming: a `format: xp3` source reads local files" in text
    assert f"sources[1].path: {REL / 'xP3' / 'yo'} holds no xp3_*.jsonl files" in text
    assert "sources[2]" not in text                                # not downloaded yet: the build says so
    assert "sources[3].format" in text
    with pytest.raises(BloomzTuneError, match=rf"source 'gone': {REL / 'nowhere'} is not a folder; .*hf download"):
        build(tmp_path, [release("aya_dataset", "nowhere", "fr", label="gone")])


def test_help_shows_the_release_keys():
    text = spec_help()
    assert "sources[].format  (datasets, xp3, xp3x, aya_collection or aya_dataset; default: datasets)" in text
    assert "sources[].allow_non_bloom_languages  (bool; default: false)" in text
    assert "sources[].held_out  (refuse or skip; default: refuse)" in text
