"""Mixture builds on fixture rows in the real schemas of public datasets, loaded from local folders through
the same load_dataset code path as Hub ids (HF_HUB_OFFLINE=1, set in conftest)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from bloomz_tune import cli
from bloomz_tune.errors import BloomzTuneError, ConfigError
from bloomz_tune.mixture import build as mixture_build
from bloomz_tune.mixture.builds import (
    build_mixture,
    load_built_mixture,
    load_mixture_spec,
    mixture_fingerprint,
    prepare_mixture,
    read_datasheet,
)
from bloomz_tune.tokens.counts import build_and_count, datasheet_for


def main(argv):
    """`bloomz-tune mixture ARGV`, as the command line runs it (exit code)."""
    return cli.main(["mixture", *argv])


REPO = Path(__file__).resolve().parents[1]
FIX = REPO / "tests" / "fixtures" / "mixture"
TEMPLATES = REPO / "data_mixtures" / "templates"


def write_spec(tmp_path: Path, sources: list[dict], name: str = "t", **top) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "seed": 7, "validation_fraction": 0.0, **top, "sources": sources},
                                   allow_unicode=True), encoding="utf-8")
    return path


def src(path, language, task, template_file, **kw) -> dict:
    return {"path": str(path), "language": language, "task": task, "template_file": str(template_file), **kw}


def real_schema_sources() -> list[dict]:
    return [
        src(FIX / "xquad", "ar", "multilingual_qa", TEMPLATES / "squad.yaml", name="xquad.ar", splits=["validation"],
            dataset="google/xquad", templates=["answer_from_passage", "question_first"]),
        src(FIX / "xquad", "zh", "multilingual_qa", TEMPLATES / "squad.yaml", name="xquad.zh", splits=["validation"],
            dataset="google/xquad", templates=["answer_from_passage"]),
        src(FIX / "paws-x", "fr", "paraphrase", TEMPLATES / "paws.yaml", name="fr",
            dataset="google-research-datasets/paws-x"),
        src(FIX / "imdb", "en", "sentiment", TEMPLATES / "sentiment.yaml", name="plain_text",
            dataset="stanfordnlp/imdb", templates=["question_then_review"]),
        src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml", dataset="fancyzhx/ag_news",
            templates=["which_section"]),
        src(FIX / "tydiqa", "id", "multilingual_qa", TEMPLATES / "squad.yaml", name="secondary_task",
            dataset="google-research-datasets/tydiqa", templates=["question_first"],
            filter="id.startswith('indonesian')"),
    ]


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("real")
    spec = write_spec(tmp, real_schema_sources(), name="real")
    return build_mixture(spec, tmp / "out")


def rows(dsd) -> list[dict]:
    return [r for split in ("train", "validation") for r in dsd[split]]


def test_renders_every_real_schema(real_build):
    all_rows = rows(load_built_mixture(real_build))
    by_source = Counter(r["source"] for r in all_rows)
    assert by_source == {
        "google/xquad/xquad.ar": 6,            # 3 rows x 2 templates
        "google/xquad/xquad.zh": 3,
        "google-research-datasets/paws-x/fr": 4 + 4 + 2,  # generate_paraphrase renders only label-1 pairs
        "stanfordnlp/imdb/plain_text": 5,      # 6 rows, one exact duplicate dropped
        "fancyzhx/ag_news": 6,
        "google-research-datasets/tydiqa/secondary_task": 2,  # the filter keeps the Indonesian rows
    }
    ar = [r for r in all_rows if r["source"] == "google/xquad/xquad.ar" and r["template"] == "question_first"]
    assert any(r["targets"] == "القاهرة" and "ما هي عاصمة مصر؟" in r["inputs"] for r in ar)
    news = [r for r in all_rows if r["task"] == "topic_classification"]
    assert all(r["choices"] == ["world", "sports", "business", "science"] for r in news)
    assert {r["targets"] for r in news if "striker" in r["inputs"]} == {"sports"}
    assert {r["language"] for r in all_rows} == {"ar", "zh", "fr", "en", "id"}
    assert all(r["choices"] == [] for r in all_rows if r["task"] == "multilingual_qa")
    sheet = read_datasheet(real_build)
    assert sheet["processing"]["dropped_empty"] == 2       # generate_paraphrase on the two non-paraphrase pairs
    assert sheet["processing"]["deduplicated"] == 1
    assert sheet["processing"]["filtered_out"] == {"google-research-datasets/tydiqa/secondary_task [train]": 2}
    md = (real_build / "datasheet.md").read_text()
    assert "| stanfordnlp/imdb/plain_text | train | question_then_review | 6 | 0 | 0 | 1 | 5 | 0 |" in md


def test_cap_per_template_and_split(tmp_path):
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml",
                                     cap=2)], cap=100)
    out = build_mixture(spec, tmp_path / "out")
    counts = Counter(r["template"] for r in rows(load_built_mixture(out)))
    assert counts == {"which_section": 2, "topic_first": 2, "headline_about": 2}
    assert read_datasheet(out)["processing"]["capped"] == 3 * (6 - 2)


def test_a_skipped_source_is_left_out_and_listed(tmp_path, capsys):
    ag = src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml", cap=2)
    gone = src("owner/script-only", "en", "topic_classification", TEMPLATES / "ag_news.yaml",
               skip="only a loading script on main", label="gone")
    out = build_mixture(write_spec(tmp_path, [ag, gone]), tmp_path / "out")
    assert {r["source"] for r in rows(load_built_mixture(out))} == {str(FIX / "ag_news")}
    sheet = read_datasheet(out)
    assert "gone: only a loading script on main" in sheet["not_yet_covered"] and not sheet["warnings"]
    assert "source 'gone' left out: only a loading script on main" in capsys.readouterr().out
    with pytest.raises(BloomzTuneError, match="could not load"):  # control: without skip, the build stops
        build_mixture(write_spec(tmp_path, [ag, {**gone, "skip": None}], name="u"), tmp_path / "u")


def _many_rows(folder: Path, language: str, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "train.jsonl").open("w") as f:
        for i in range(n):
            f.write(json.dumps({"text": f"{language} review number {i}", "label": i % 2}) + "\n")
    return folder


def test_language_sampling_follows_weights(tmp_path):
    sources = [src(_many_rows(tmp_path / lang, lang, n), lang, "sentiment", TEMPLATES / "sentiment.yaml",
                   templates=["question_then_review"])
               for lang, n in (("en", 600), ("fr", 200), ("zh", 100))]
    spec = write_spec(tmp_path, sources, language_weights={"en": 0.5, "fr": 0.3, "zh": 0.2}, total_examples=1000,
                      validation_fraction=0.1)
    out = build_mixture(spec, tmp_path / "out")
    dsd = load_built_mixture(out)
    shares = Counter(dsd["train"]["language"])
    total = sum(shares.values())
    assert total == 1000
    for lang, w in (("en", 0.5), ("fr", 0.3), ("zh", 0.2)):
        assert abs(shares[lang] / total - w) < 0.01
    # zh (about 90 unique train rows) is upsampled by repetition, en is subsampled without repetition
    zh = [r for r in dsd["train"]["inputs"] if "zh review" in r]
    en = [r for r in dsd["train"]["inputs"] if "en review" in r]
    assert len(set(zh)) < len(zh) and len(set(en)) == len(en)
    # validation rows are never repeated, and no validation example appears in train
    assert len(set(dsd["validation"]["inputs"])) == len(dsd["validation"])
    assert not set(dsd["validation"]["inputs"]) & set(dsd["train"]["inputs"])
    sampling = read_datasheet(out)["language_sampling"]
    assert sampling["zh"]["target"] == 200 and sampling["zh"]["available"] < 100


def test_source_weight_resamples(tmp_path):
    folder = _many_rows(tmp_path / "en", "en", 50)
    base = dict(templates=["question_then_review"])
    spec = write_spec(tmp_path, [src(folder, "en", "sentiment", TEMPLATES / "sentiment.yaml", weight=2.0, **base)])
    assert len(load_built_mixture(build_mixture(spec, tmp_path / "out"))["train"]) == 100


def test_dedupe_toggle(tmp_path):
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": "same words", "label": 1}) + "\n" for _ in range(5)))
    s = src(folder, "en", "sentiment", TEMPLATES / "sentiment.yaml", templates=["question_then_review"])
    on = build_mixture(write_spec(tmp_path, [s], name="on"), tmp_path / "on")
    off = build_mixture(write_spec(tmp_path, [s], name="off", dedupe=False), tmp_path / "off")
    assert len(load_built_mixture(on)["train"]) == 1
    assert read_datasheet(on)["processing"]["deduplicated"] == 4
    assert len(load_built_mixture(off)["train"]) == 5


def test_held_out_refused_unless_xp3all(tmp_path):
    held = src(FIX / "xnli", "en", "nli", TEMPLATES / "paws.yaml", name="en")
    by_id = src(FIX / "paws-x", "fr", "nli", TEMPLATES / "paws.yaml", name="fr", dataset="facebook/xnli")
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(write_spec(tmp_path, [held, by_id]))
    text = str(err.value)
    assert "sources[0]" in text and "sources[1]" in text and "XNLI" in text and "include_held_out" in text
    super_glue = {"path": "aps/super_glue", "name": "cb", "language": "en", "task": "nli",
                  "template_file": str(TEMPLATES / "paws.yaml")}
    wic = dict(super_glue, name="wic")
    with pytest.raises(ConfigError, match=r"evaluation dataset CB \(aps/super_glue\)"):
        load_mixture_spec(write_spec(tmp_path, [super_glue]))
    load_mixture_spec(write_spec(tmp_path, [wic]))      # super_glue/wic is a training task in xP3
    ok = load_mixture_spec(write_spec(tmp_path, [held], include_held_out=True))
    assert ok.include_held_out


def test_deterministic_and_fingerprint(tmp_path):
    sources = real_schema_sources()
    a = write_spec(tmp_path, sources, name="a", validation_fraction=0.3)
    (tmp_path / "b").mkdir()
    b = write_spec(tmp_path / "b", sources, name="a", validation_fraction=0.3, seed=8)
    fa, fa2, fb = (mixture_fingerprint(load_mixture_spec(p)) for p in (a, a, b))
    assert fa == fa2 and fa != fb
    one = load_built_mixture(build_mixture(a, tmp_path / "one"))
    two = load_built_mixture(build_mixture(a, tmp_path / "two", num_proc=2))
    for split in ("train", "validation"):
        assert one[split].to_dict() == two[split].to_dict()


def test_parallel_rendering_matches_serial(tmp_path, monkeypatch):
    folder = _many_rows(tmp_path / "en", "en", 300)
    spec = write_spec(tmp_path, [src(folder, "en", "sentiment", TEMPLATES / "sentiment.yaml")], validation_fraction=0.2)
    serial = load_built_mixture(build_mixture(spec, tmp_path / "serial"))
    monkeypatch.setattr(mixture_build, "ROWS_PER_PROCESS", 10)
    parallel = load_built_mixture(build_mixture(spec, tmp_path / "parallel", num_proc=2))
    for split in ("train", "validation"):
        assert serial[split].to_dict() == parallel[split].to_dict()


def test_template_version_changes_fingerprint(tmp_path):
    tfile = tmp_path / "sentiment.yaml"
    tfile.write_text((TEMPLATES / "sentiment.yaml").read_text())
    spec = write_spec(tmp_path, [src(FIX / "imdb", "en", "sentiment", tfile, name="plain_text")])
    before = mixture_fingerprint(load_mixture_spec(spec))
    tfile.write_text(tfile.read_text().replace("version: 1", "version: 2", 1))
    assert mixture_fingerprint(load_mixture_spec(spec)) != before


def test_fingerprint_follows_local_data_files_not_the_tokenizer(tmp_path):
    data = tmp_path / "xp3" / "en"
    data.mkdir(parents=True)
    shutil.copy(FIX / "xP3" / "en" / next(p.name for p in (FIX / "xP3" / "en").glob("*.jsonl")), data / "a.jsonl")
    source = {"path": "json", "data_files": str(tmp_path / "xp3" / "*" / "*.jsonl"), "language": "en",
              "task": "xp3", "prompted": True}
    before = mixture_fingerprint(load_mixture_spec(write_spec(tmp_path, [source])))
    assert mixture_fingerprint(load_mixture_spec(write_spec(tmp_path, [source], tokenizer="some/tokenizer"))) == before
    (data / "a.jsonl").write_text((data / "a.jsonl").read_text() + '{"inputs": "x", "targets": "y"}\n')
    assert mixture_fingerprint(load_mixture_spec(write_spec(tmp_path, [source]))) != before


def test_prepare_reuses_then_rebuilds_on_change(tmp_path):
    s = src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml")
    spec = write_spec(tmp_path, [s])
    first = prepare_mixture(spec, tmp_path / "cache")
    assert prepare_mixture(spec, tmp_path / "cache") == first
    write_spec(tmp_path, [dict(s, cap=1)])
    second = prepare_mixture(spec, tmp_path / "cache")
    assert second != first and len(load_built_mixture(second)["train"]) == 3


def test_streaming_source_respects_cap(tmp_path):
    folder = _many_rows(tmp_path / "en", "en", 500)
    spec = write_spec(tmp_path, [src(folder, "en", "sentiment", TEMPLATES / "sentiment.yaml", streaming=True,
                                     cap=40, templates=["question_then_review", "star_mood"])])
    dsd = load_built_mixture(build_mixture(spec, tmp_path / "out"))
    assert Counter(dsd["train"]["template"]) == {"question_then_review": 40, "star_mood": 40}


def test_published_xp3_files_by_language(tmp_path):
    sources = [{"path": "json", "data_files": str(FIX / "xP3" / lang / "*.jsonl"), "dataset": "bigscience/xP3",
                "label": f"bigscience/xP3/{lang}", "language": lang, "task": "xp3", "prompted": True}
               for lang in ("en", "zh")]
    spec = write_spec(tmp_path, sources, language_weights={"en": 0.5, "zh": 0.5})
    dsd = load_built_mixture(build_mixture(spec, tmp_path / "out"))
    assert Counter(dsd["train"]["language"]) == {"en": 2, "zh": 2}     # 2 unique en rows after dedupe
    assert set(dsd["train"]["template"]) == {"published"}
    assert "体育" in dsd["train"]["targets"]


# -- bad input --------------------------------------------------------------------------------------------------

def test_every_spec_problem_reported_at_once(tmp_path):
    spec = write_spec(tmp_path, [
        src(FIX / "imdb", "xx", "sentiment", TEMPLATES / "sentiment.yaml", weight=0),
        src(FIX / "imdb", "en", "sentiment", TEMPLATES / "sentiment.yaml", cap=-3),
        src(FIX / "imdb", "en", "sentiment", TEMPLATES / "sentiment.yaml", templates=["nope"], label="x"),
        {"path": str(FIX / "imdb"), "language": "en"},
    ], validation_fraction=1.5, colour="blue")
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(spec)
    problems = "\n".join(err.value.problems)
    for expected in ("sources[0].language: unknown language code 'xx'", "sources[0].weight: must be > 0",
                     "sources[1].cap: must be > 0", "sources[2].templates: no template named 'nope'",
                     "sources[3].task: required",
                     "validation_fraction: must be < 1", "colour: unknown key"):
        assert expected in problems
    assert str(spec) in str(err.value)


def test_malformed_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources: [\n  - {path: a\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_mixture_spec(bad)
    assert main(["build", str(bad), "--output", str(tmp_path / "o"), "--cache", str(tmp_path / "cache")]) == 2
    assert not (tmp_path / "o").exists()


def test_missing_column_names_source_template_column(tmp_path):
    tfile = tmp_path / "tpl.yaml"
    tfile.write_text("templates:\n  - {name: uses_body, input: '{{ body }}', target: '{{ label }}'}\n")
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", tfile)])
    with pytest.raises(ConfigError) as err:
        build_mixture(spec, tmp_path / "out")
    assert "fancyzhx" not in str(err.value)
    assert "uses_body" in str(err.value) and "'body'" in str(err.value) and "ag_news" in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.building-*"))


def test_row_level_render_error_names_row(tmp_path):
    tfile = tmp_path / "tpl.yaml"
    tfile.write_text("templates:\n  - {name: bad_index, input: '{{ text }}', target: '{{ answer_choices[label] }}',"
                     " answer_choices: [only_one]}\n")
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", tfile)])
    with pytest.raises(BloomzTuneError, match=r"ag_news', split 'train', row 0: template 'bad_index'.*no element 2"):
        build_mixture(spec, tmp_path / "out")


def test_zero_row_source_warns_and_empty_mixture_fails(tmp_path):
    empty_tpl = tmp_path / "tpl.yaml"
    empty_tpl.write_text("templates:\n  - {name: blank, input: '{{ text }}', target: '{% if false %}x{% endif %}'}\n")
    ok = src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml", templates=["which_section"])
    blank = src(FIX / "imdb", "en", "sentiment", empty_tpl, name="plain_text")
    with pytest.warns(UserWarning, match="yielded zero rows"):
        out = build_mixture(write_spec(tmp_path, [ok, blank], name="some"), tmp_path / "some")
    sheet = read_datasheet(out)
    assert sheet["warnings"] and sheet["processing"]["dropped_empty"] == 6
    with pytest.raises(BloomzTuneError, match="is empty"), pytest.warns(UserWarning):
        build_mixture(write_spec(tmp_path, [blank], name="none"), tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_unloadable_source_names_it(tmp_path):
    spec = write_spec(tmp_path, [src(tmp_path / "nowhere-on-disk-or-hub", "en", "sentiment",
                                     TEMPLATES / "sentiment.yaml", label="my_source")])
    with pytest.raises(BloomzTuneError, match=r"source 'my_source': could not load.*local folder"):
        build_mixture(spec, tmp_path / "out")


def test_cli_build_and_show(tmp_path, capsys):
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml")])
    build = ["build", str(spec), "--output", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert main(build) == 0
    assert main(["show", str(tmp_path / "out")]) == 0
    shown = capsys.readouterr().out
    assert "# Mixture datasheet: t" in shown and "### topic_classification" in shown and "choices:" in shown
    assert main(build) == 2      # will not overwrite
    assert main(["show", str(tmp_path)]) == 2


def test_native_prompt_wording_and_token_counts(tmp_path, tiny_tokenizer):
    s = src(FIX / "imdb", "fr", "sentiment", TEMPLATES / "sentiment.yaml", name="plain_text",
            templates=["review_then_question"])
    out = build_and_count(write_spec(tmp_path, [s], prompt_language="native"), tmp_path / "out",
                          tokenizer=tiny_tokenizer)
    train = load_built_mixture(out)["train"]
    assert set(train["targets"]) == {"positif", "négatif"} and all("L'auteur" in x for x in train["inputs"])
    assert all(r == ["négatif", "positif"] for r in train["choices"])
    assert "tokens" not in read_datasheet(out)          # the build itself does not depend on a tokenizer
    sheet = datasheet_for(out, tiny_tokenizer)
    expected = sum(len(tiny_tokenizer(x, add_special_tokens=False)["input_ids"]) for x in train["inputs"])
    assert sheet["tokens"]["train"]["input"] == expected
    assert sheet["tokens"]["train"]["target"] == sum(
        len(tiny_tokenizer(" " + t, add_special_tokens=False)["input_ids"]) + 1 for t in train["targets"])
    assert "input tokens" in (out / "datasheet.md").read_text()


# -- the cache and token counts ---------------------------------------------------------------------------------

def test_cli_output_build_is_reused_by_training(tmp_path, capsys):
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml")])
    out, cache = tmp_path / "out", tmp_path / "cache"
    assert main(["build", str(spec), "--output", str(out), "--cache", str(cache)]) == 0
    pointer = cache / f"t-{read_datasheet(out)['fingerprint']}.json"
    assert json.loads(pointer.read_text())["path"] == str(out.resolve())
    capsys.readouterr()
    assert prepare_mixture(spec, cache) == out.resolve()
    assert f"mixture t: reusing finished build {out.resolve()}" in capsys.readouterr().out
    # a stale pointer (the folder gone) is ignored: the spec is built into the cache instead
    shutil.rmtree(out)
    rebuilt = prepare_mixture(spec, cache)
    assert rebuilt == cache / pointer.stem and "reusing" not in capsys.readouterr().out


def test_cli_build_without_output_goes_to_the_cache(tmp_path, capsys):
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml")])
    cache = tmp_path / "cache"
    assert main(["build", str(spec), "--cache", str(cache)]) == 0
    built = cache / f"t-{mixture_fingerprint(load_mixture_spec(spec))}"
    assert load_built_mixture(built) and not list(cache.glob("*.json"))
    capsys.readouterr()
    assert main(["build", str(spec), "--cache", str(cache)]) == 0      # already built: reused, not rebuilt
    assert "reusing finished build" in capsys.readouterr().out
    assert prepare_mixture(spec, cache) == built


def test_pointer_to_another_fingerprint_is_ignored(tmp_path):
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml")])
    other = build_mixture(write_spec(tmp_path, [src(FIX / "imdb", "en", "sentiment", TEMPLATES / "sentiment.yaml")],
                                     name="other"), tmp_path / "other")
    cache = tmp_path / "cache"
    cache.mkdir()
    fingerprint = mixture_fingerprint(load_mixture_spec(spec))
    (cache / f"t-{fingerprint}.json").write_text(json.dumps({"path": str(other)}))
    assert prepare_mixture(spec, cache) == cache / f"t-{fingerprint}"


def test_token_counts_beside_the_build_one_file_per_tokenizer(tmp_path, tiny_tokenizer):
    from bloomz_tune.model.tiny import build_tiny_tokenizer

    other_tokenizer = build_tiny_tokenizer(["Sports news: the match ended in a draw."] * 20, vocab_size=300)
    s = src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml")
    spec = write_spec(tmp_path, [s], validation_fraction=0.3)
    cache = tmp_path / "cache"
    first = build_and_count(spec, cache=cache, tokenizer=tiny_tokenizer)
    assert build_and_count(spec, cache=cache, tokenizer=other_tokenizer) == first       # the tokenizer is no identity
    files = sorted((first / "tokens").glob("*.json"))
    assert len(files) == 2 and not list((first / "tokens").glob(".*"))
    counts = json.loads(next(f for f in files if f.name.startswith("tiny_bloom")).read_text())
    dsd = load_built_mixture(first)
    for split in ("train", "validation"):
        rows = dsd[split]
        expected_in = sum(len(tiny_tokenizer(x, add_special_tokens=False)["input_ids"]) for x in rows["inputs"])
        expected_tg = sum(len(tiny_tokenizer(" " + t, add_special_tokens=False)["input_ids"]) + 1
                          for t in rows["targets"])
        assert counts["splits"][split] == {"rows": len(rows), "input_tokens": expected_in,
                                           "target_tokens": expected_tg}
        by_template = {k: v[split]["rows"] for k, v in counts["by_template"].items() if split in v}
        assert by_template == dict(Counter(f"{r['source']} :: {r['template']}" for r in rows))
    assert counts["by_language"]["en"]["train"] == counts["splits"]["train"]
    sheet = datasheet_for(first, tiny_tokenizer)           # read back, not recounted
    assert sheet["tokens"]["train"]["input"] == counts["splits"]["train"]["input_tokens"]
    assert sheet["by_task"]["topic_classification"]["target_tokens"] == sum(
        c["target_tokens"] for c in counts["splits"].values())
    md = (first / "datasheet.md").read_text()
    assert "input tokens" in md and "tokens/" in md


def test_cli_tokenizer_option_counts_tokens(tmp_path, tiny_model_dir):
    spec = write_spec(tmp_path, [src(FIX / "ag_news", "en", "topic_classification", TEMPLATES / "ag_news.yaml")])
    out = tmp_path / "out"
    assert main(["build", str(spec), "--output", str(out), "--cache", str(tmp_path / "c"),
                 "--tokenizer", str(tiny_model_dir)]) == 0
    assert [f.name.split("-")[0] for f in (out / "tokens").glob("*.json")] == [Path(tiny_model_dir).name]
    assert f"with {tiny_model_dir}" in (out / "datasheet.md").read_text()


def test_held_out_files_refused_by_name(tmp_path):
    """xP3all-style files of an evaluation dataset are refused by their names, through `path: json` and in a
    local folder, unless the spec includes held-out data."""
    data = tmp_path / "xp3all_en"
    data.mkdir()
    row = '{"inputs": "Is it raining?", "targets": "yes"}\n'
    (data / "xp3_paws-x_en_train_task.jsonl").write_text(row, encoding="utf-8")
    (data / "xp3_xnli_en_validation_GPT-3-style.jsonl").write_text(row, encoding="utf-8")
    (data / "xp3_super_glue_wic_None_train_same_sense.jsonl").write_text(row, encoding="utf-8")
    by_glob = {"path": "json", "data_files": str(data / "*.jsonl"), "language": "en", "task": "xp3",
               "prompted": True}
    by_folder = {"path": str(data), "language": "en", "task": "xp3", "prompted": True, "label": "folder"}
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(write_spec(tmp_path, [by_glob, by_folder]))
    text = str(err.value)
    assert "sources[0]: json reads xp3_xnli_en_validation_GPT-3-style.jsonl, a file of the held-out evaluation " \
           "dataset XNLI" in text
    assert "sources[1]: folder reads xp3_xnli_en_validation_GPT-3-style.jsonl" in text
    (data / "xp3_xnli_en_validation_GPT-3-style.jsonl").unlink()
    load_mixture_spec(write_spec(tmp_path, [by_glob, by_folder]))     # paws-x and super_glue/wic are training data
    held = {"path": "json", "data_files": {"train": [str(data / "*.jsonl"), "hf://datasets/x/xP3all/en/xcopa_zh.jsonl"]},
            "language": "en", "task": "xp3", "prompted": True}
    with pytest.raises(ConfigError, match=r"reads hf://datasets/x/xP3all/en/xcopa_zh.jsonl, a file of .* XCOPA"):
        load_mixture_spec(write_spec(tmp_path, [held]))
    assert load_mixture_spec(write_spec(tmp_path, [held], include_held_out=True)).include_held_out
