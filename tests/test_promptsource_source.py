"""Sources that take their prompts from a promptsource checkout (``template_file: promptsource``): how a source
finds its dataset's templates.yaml, the errors when it cannot, and a build over the fixture checkout
(tests/fixtures/mixture/promptsource, in promptsource's layout) giving exactly the expected rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from bloomz_tune.errors import ConfigError
from bloomz_tune.mixture.builds import build_mixture, load_built_mixture, load_mixture_spec, read_datasheet
from bloomz_tune.mixture.promptsource import available, prompt_file, templates_root
from bloomz_tune.mixture.spec import source_templates
from bloomz_tune.mixture.templates import load_templates

FIX = Path(__file__).resolve().parent / "fixtures" / "mixture"
CHECKOUT = FIX / "promptsource"
DATA = FIX / "promptsource_data"
ROOT = CHECKOUT / "promptsource" / "templates"


def write_spec(tmp_path: Path, sources: list[dict], **top) -> Path:
    path = tmp_path / "ps.yaml"
    body = {"name": "ps", "seed": 7, "validation_fraction": 0.0, "promptsource": str(CHECKOUT), **top,
            "sources": sources}
    path.write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return path


def ps_source(path, language, task, **kw) -> dict:
    return {"path": str(path), "language": language, "task": task, "template_file": "promptsource", **kw}


FIXTURE_SOURCES = [
    ps_source(FIX / "ag_news", "en", "topic_classification", dataset="fancyzhx/ag_news",
              templates=["section_question", "no_target"]),
    ps_source(DATA / "glue", "en", "paraphrase", name="mrpc", dataset="nyu-mll/glue"),
    ps_source(FIX / "paws-x", "fr", "paraphrase", name="fr", dataset="google-research-datasets/paws-x",
              promptsource_prompts="paws-x/en"),
    ps_source(DATA / "github-jupyter-text-code-pairs", "code", "program_synthesis",
              dataset="codeparrot/github-jupyter-text-code-pairs"),
    ps_source(DATA / "web_questions", "en", "closed_book_qa", dataset="web_questions"),
]


# -- finding a dataset's templates ---------------------------------------------------------------------------

def test_layout_resolution():
    assert templates_root(CHECKOUT) == ROOT and templates_root(ROOT) == ROOT
    assert available(ROOT) == ["ag_news", "codeparrot/github-jupyter-text-code-pairs", "glue/mrpc", "glue/qqp",
                               "paws-x/en", "web_questions"]
    # subset folder; org/name nested; the Hub's org/name falls back to promptsource's old id; a dataset whose
    # prompts are not split by subset gives them to every config
    assert prompt_file(ROOT, "glue", "mrpc") == ROOT / "glue" / "mrpc" / "templates.yaml"
    assert prompt_file(ROOT, "nyu-mll/glue", "qqp") == ROOT / "glue" / "qqp" / "templates.yaml"
    assert prompt_file(ROOT, "codeparrot/github-jupyter-text-code-pairs", None).parent.name == \
        "github-jupyter-text-code-pairs"
    assert prompt_file(ROOT, "fancyzhx/ag_news", "default") == ROOT / "ag_news" / "templates.yaml"
    assert prompt_file(ROOT, "google-research-datasets/paws-x", "fr", "paws-x/en").parent.name == "en"


def test_missing_templates_name_the_nearest():
    with pytest.raises(ConfigError) as err:
        prompt_file(ROOT, "glue", "mrcp")
    (problem,) = err.value.problems
    assert "no promptsource templates for dataset 'glue' subset 'mrcp'" in problem
    assert "glue/mrcp/templates.yaml" in problem and "nearest: glue/mrpc" in problem
    with pytest.raises(ConfigError, match=r"folder 'paws-x/de'.*nearest: paws-x/en"):
        prompt_file(ROOT, "paws-x", "de", "paws-x/de")
    with pytest.raises(ConfigError, match="is not a promptsource checkout"):
        templates_root(FIX / "ag_news")


def test_spec_problems_are_one_line_each(tmp_path):
    bad = [ps_source(DATA / "glue", "en", "paraphrase", name="mrcp", dataset="glue"),
           ps_source(DATA / "glue", "en", "paraphrase", name="mrpc", dataset="glue", templates=["equivalnet"]),
           ps_source(DATA / "glue", "en", "paraphrase", name="qqp", dataset="glue", label="q",
                     templates=["same_meaning"])]
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(write_spec(tmp_path, bad))
    problems = err.value.problems
    assert len(problems) == 3 and all("\n" not in p for p in problems)
    assert problems[0].startswith("sources[0].template_file: no promptsource templates for dataset 'glue' subset "
                                  "'mrcp'") and "nearest: glue/mrpc" in problems[0]
    assert problems[1].startswith("sources[1].templates: no template named 'equivalnet'")
    assert problems[1].endswith("(did you mean: equivalent)")
    assert problems[2].endswith("(it has: duplicate_or_not)")
    # no checkout given, or one that is not a checkout: said once, not once per source
    for top, expected in (({"promptsource": None}, "promptsource: no promptsource checkout given"),
                          ({"promptsource": str(FIX / "ag_news")}, "is not a promptsource checkout"),
                          ({"promptsource": str(tmp_path / "nowhere")}, "is not a folder")):
        with pytest.raises(ConfigError) as err:
            load_mixture_spec(write_spec(tmp_path, FIXTURE_SOURCES[:2], **top))
        assert len(err.value.problems) == 1 and expected in err.value.problems[0]
    with pytest.raises(ConfigError, match="promptsource_prompts: only with `template_file: promptsource`"):
        load_mixture_spec(write_spec(tmp_path, [{**FIXTURE_SOURCES[2], "template_file": str(
            ROOT / "paws-x" / "en" / "templates.yaml")}]))


def test_relative_checkout_and_duplicate_names(tmp_path):
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    (spec_dir / "ps").symlink_to(CHECKOUT)
    spec = load_mixture_spec(write_spec(spec_dir, FIXTURE_SOURCES[1:2], promptsource="ps"))
    names = [t.name for t in source_templates(spec, spec.sources[0])]
    # two templates named same_meaning: the last keeps the name, the earlier one gets its id's first 8 characters
    assert names == ["equivalent", "same_meaning#b2b2b2b2", "same_meaning", "generate_paraphrase", "two_targets"]


def test_file_read_as_promptsource_reads_it():
    # an id written twice (as GEM/xlsum/english has in xP3's fork): the last entry counts, in the first's place
    ts = load_templates(ROOT / "web_questions" / "templates.yaml")
    assert [t.name for t in ts] == ["potential_correct_answer", "short_general_knowledge_q", "most_common_answer"]
    assert ts[1].jinja.startswith("Answer the question:")


# -- rendering as xP3's build applied promptsource -------------------------------------------------------------

def test_render_points():
    mrpc = {t.name: t for t in load_templates(ROOT / "glue" / "mrpc" / "templates.yaml")}
    row = {"sentence1": "a", "sentence2": "b", "label": 1, "idx": 0}
    assert mrpc["two_targets"].render(row)[1] == ""            # more than one target: no row
    assert mrpc["generate_paraphrase"].render({**row, "label": 0})[:2] == ("", "")   # renders nothing
    code = {t.name: t for t in load_templates(ROOT / "codeparrot" / "github-jupyter-text-code-pairs"
                                              / "templates.yaml")}
    r = {"markdown": "Plot it", "code": "df.plot()"}
    assert code["markdown_code"].render(r)[:2] == ("Plot it", "df.plot()")
    assert code["markdown_code"].render(r, strip_connection=False)[:2] == ("Plot it\n", "df.plot()")
    # " ||| ": one of the two spaces goes (from the input), as promptsource does
    assert code["code_for"].render(r, strip_connection=False)[:2] == ("Code for: Plot it", " df.plot()")
    (t,) = [t for t in load_templates(ROOT / "ag_news" / "templates.yaml") if t.name == "section_question"]
    # a column named with "-" is read as "_" (xP3's build renamed them); answer_choices is None without choices
    renamed = t.__class__(name="x", file="-", jinja="{{ target_lang }} {{ answer_choices }} ||| {{ text }}",
                          promptsource=True)
    assert renamed.render({"target-lang": "fr", "text": "t"})[:2] == ("fr None", "t")


# -- a build over the fixture checkout ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def fixture_build(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ps")
    return build_mixture(write_spec(tmp, FIXTURE_SOURCES), tmp / "out")


def test_build_gives_exactly_the_expected_rows(fixture_build):
    dsd = load_built_mixture(fixture_build)
    got = Counter((r["source"], r["template"], r["inputs"], r["targets"]) for r in dsd["train"])
    assert len(dsd["validation"]) == 0
    pairs = [("The cat sat on the mat.", "On the mat sat the cat.", 1),
             ("He left at noon.", "He arrived at midnight.", 0),
             ("Pipes ||| are fine.", "The pipes ||| are fine.", 1)]     # "|||" in the data is not the separator
    news = [("Stocks rallied as the bank cut rates.", "Business"), ("The striker scored twice in the derby.", "Sports"),
            ("Astronomers found a new comet.", "Science"), ("Leaders met for peace talks in Geneva.", "World"),
            ("The chip maker reported higher profits.", "Business"), ("The keeper saved a late penalty.", "Sports")]
    expected = Counter()
    for s1, s2, label in pairs:
        g = "nyu-mll/glue/mrpc"  # the default label: dataset/name
        expected[(g, "equivalent", f"Do the following two sentences mean the same thing?\n{s1}\n{s2}",
                  ["no", "yes"][label])] += 1
        expected[(g, "same_meaning", f'Does "{s1}" say the same as "{s2}"?', ["no", "yes"][label])] += 1
        if label:
            expected[(g, "generate_paraphrase", f"Paraphrase this: {s1}", s2)] += 1
    for text, section in news:
        expected[("fancyzhx/ag_news", "section_question",
                  f"Which section of a newspaper would print this?\n{text}", section)] += 1
    code = [("Load the data", 'df = pd.read_csv("data.csv")'), ("Plot it", "df.plot()")]
    for md, body in code:
        src = "codeparrot/github-jupyter-text-code-pairs"
        expected[(src, "markdown_code", f"{md}\n", body)] += 1       # code keeps the newline before the target
        expected[(src, "code_for", f"Code for: {md}", f" {body}")] += 1
    for q, first, common in (("what is the capital of france?", "Paris", "Paris"),
                             ("what did x play?", "Lute", "Lute")):
        expected[("web_questions", "short_general_knowledge_q", f"Answer the question: {q}", first)] += 1
        expected[("web_questions", "most_common_answer", q, common)] += 1
    fixed = {k: v for k, v in got.items() if k[1] not in ("same_meaning#b2b2b2b2", "potential_correct_answer")
             and k[0] != "google-research-datasets/paws-x/fr"}
    assert fixed == dict(expected)

    # templates with `choice`: one of the options, reproducibly per row
    chosen = [k for k in got if k[1] == "same_meaning#b2b2b2b2"]
    assert len(chosen) == 3 and all(k[2].split("\n")[0] in ("Same meaning?", "Paraphrase?") for k in chosen)
    answers = {k[2]: k[3] for k in got if k[1] == "potential_correct_answer"}
    assert answers["Give me a possible correct answer to the following question: what is the capital of france?"] \
        == "Paris"
    assert answers["Give me a possible correct answer to the following question: what did x play?"] in ("Lute", "Harp")
    # paws-x fr with the English prompts of paws-x/en
    fr = [k for k in got if k[0] == "google-research-datasets/paws-x/fr"]
    assert len(fr) == 4 and all(k[1] == "task_description-no-label" and k[3] in ("Yes", "No") for k in fr)
    assert all(k[2].startswith("Sentence 1: ") and k[2].endswith("Yes or No?") for k in fr)


def test_dropped_rows_are_counted_in_the_datasheet(fixture_build):
    sheet = read_datasheet(fixture_build)
    dropped = {(p["source"], p["template"]): p["dropped_empty"] for p in sheet["parts"]}
    assert dropped[("fancyzhx/ag_news", "no_target")] == 6                # no target at all
    assert dropped[("nyu-mll/glue/mrpc", "two_targets")] == 3             # more than one target
    assert dropped[("nyu-mll/glue/mrpc", "generate_paraphrase")] == 1     # renders nothing for label 0
    assert sheet["processing"]["dropped_empty"] == 10
    assert "10 dropped (empty input, or not exactly one target)" in (fixture_build / "datasheet.md").read_text()
