"""Every mixture spec shipped in data_mixtures/ (recursively) loads and validates, the three reference mixtures
keep the shape docs/bloomz.md §1 describes, the held-out table refuses every evaluation task, and --help
documents every key."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bloomz_tune import cli
from bloomz_tune.errors import ConfigError
from bloomz_tune.mixture.builds import MixtureSpec, load_mixture_spec, mixture_fingerprint
from bloomz_tune.mixture.languages import BLOOMZ_LANGUAGE_WEIGHTS
from bloomz_tune.mixture.promptsource import candidates
from bloomz_tune.mixture.spec import MAX_EXAMPLES_PER_DATASET_PROMPT, SourceSpec, source_templates
from bloomz_tune.mixture.templates import TemplateEntry, TemplateFile, Translation
from bloomz_tune.schema import field_docs, public_fields
from bloomz_tune.tasks.table import TASKS, held_out_task


def main(argv):
    """`bloomz-tune mixture ARGV`, as the command line runs it (exit code)."""
    return cli.main(["mixture", *argv])


MIXTURES = Path(__file__).resolve().parents[1] / "data_mixtures"
SPECS = sorted(p for p in MIXTURES.rglob("*.yaml") if "templates" not in p.relative_to(MIXTURES).parts)


def test_specs_found():
    assert {p.name for p in SPECS} >= {"demo.yaml", "xp3_mini.yaml", "xp3.yaml", "xp3_published.yaml"}


# The datasets of xP3 by the names promptsource files them under (xmtf's dataset lists, docs/bloomz.md §1.2).
XP3_PROMPT_DATASETS = """
    xquad mlqa khalidalt/tydiqa-primary khalidalt/tydiqa-goldp adversarial_qa duorc ropes squad_v2 super_glue
    quoref clue kilt_tasks trivia_qa web_questions wiki_qa ai2_arc cos_e cosmos_qa dream openbookqa qasc quail
    quarel quartz race sciq social_i_qa wiki_hop wiqa piqa glue paws paws-x amazon_polarity app_reviews imdb
    rotten_tomatoes yelp_review_full ag_news dbpedia_14 trec common_gen wiki_bio cnn_dailymail gigaword
    multi_news samsum xsum GEM/xlsum GEM/wiki_lingua facebook/flores Helsinki-NLP/tatoeba_mt pasinit/xlwic
    Muennighoff/mbpp great_code neural_code_search codeparrot/codecomplex
    codeparrot/github-jupyter-text-code-pairs codeparrot/apps codeparrot/xlcost-text-to-code teven/code_contests
    teven/code_docstring_corpus Fraser/python-state-changes
""".split()


def promptsource_skeleton(spec_path: Path, root: Path) -> list[str]:
    """A checkout in promptsource's layout with one template for each folder a spec's promptsource sources ask
    for, each folder the first candidate that names one of xP3's datasets; the ``promptsource=`` override."""
    raw = yaml.safe_load(spec_path.read_text())
    if "promptsource" not in raw:
        return []
    for src in raw["sources"]:
        tried = [src["promptsource_prompts"]] if src.get("promptsource_prompts") else candidates(
            src.get("dataset") or src["path"], src.get("name"))
        folder = next((c for c in tried if any(c == d or c.startswith(d + "/") for d in XP3_PROMPT_DATASETS)), None)
        assert folder, f"{spec_path.name}: {src['path']} {src.get('name')} is not one of xP3's datasets"
        (root / "promptsource" / "templates" / folder).mkdir(parents=True, exist_ok=True)
        (root / "promptsource" / "templates" / folder / "templates.yaml").write_text(
            "templates:\n  x1: !Template\n    id: x1\n    name: t\n    jinja: '{{ a }} ||| {{ b }}'\n")
    return [f"promptsource={root}"]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.relative_to(MIXTURES)))
def test_spec_validates(path, tmp_path):
    spec = load_mixture_spec(path, promptsource_skeleton(path, tmp_path))
    assert not spec.include_held_out
    assert len(mixture_fingerprint(spec)) == 16
    for src in spec.sources:
        assert held_out_task(src.path, src.name, src.dataset) is None
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


def test_xp3_promptsource_covers_xp3s_clusters(tmp_path):
    path = MIXTURES / "xp3_promptsource.yaml"
    spec = load_mixture_spec(path, promptsource_skeleton(path, tmp_path))
    assert spec.cap == 100_000 and spec.language_weights == BLOOMZ_LANGUAGE_WEIGHTS
    assert all(s.template_file == "promptsource" and s.templates is None for s in spec.sources)
    assert {s.language for s in spec.sources} == set(BLOOMZ_LANGUAGE_WEIGHTS)
    # every dataset group of docs/bloomz.md §1.2 has sources
    assert {s.task for s in spec.sources} >= {
        "multilingual_qa", "extractive_qa", "closed_book_qa", "multiple_choice_qa", "paraphrase", "sentiment",
        "topic_classification", "structure_to_text", "summarization", "translation", "word_sense", "program_synthesis"}
    names = {s.dataset or s.path for s in spec.sources}
    assert {"google/xquad", "facebook/mlqa", "GEM/xlsum", "facebook/flores", "pasinit/xlwic", "Muennighoff/mbpp"} <= names
    # every source read is named owner/name; the ones left out say why
    assert all("/" in s.path for s in spec.sources if not s.skip)
    skipped = {s.path for s in spec.sources if s.skip}
    assert {"khalidalt/tydiqa-primary", "Helsinki-NLP/tatoeba_mt"} <= skipped and "rajpurkar/squad_v2" not in skipped


def test_published_xp3_reads_data_files_by_language():
    spec = load_mixture_spec(MIXTURES / "xp3_published.yaml")
    assert spec.language_weights == BLOOMZ_LANGUAGE_WEIGHTS
    for s in spec.sources:
        assert s.prompted and s.path == "json"
        assert s.data_files == f"hf://datasets/bigscience/xP3/{s.language}/xp3_*.jsonl"
        # the per-dataset files, never the merged file beside them (the same rows twice)
        pattern = s.data_files.removeprefix(f"hf://datasets/bigscience/xP3/{s.language}/")
        assert fnmatch.fnmatchcase("xp3_ag_news_None_train_classify_question_first.jsonl", pattern)
        assert not fnmatch.fnmatchcase(f"merged_{s.language}.jsonl", pattern)


def _held_out_references():
    """(task, path, config) for every evaluation task: its Hub id with each config, and each alias."""
    for task in TASKS.values():
        configs = [c for c in task.configs.values() if c] or [None]
        for config in configs if task.path else []:
            yield task, task.path, config
        for alias in task.aliases:
            ident, _, config = alias.partition(":")
            yield task, ident, config or configs[0]


def test_every_evaluation_task_is_refused_in_a_training_mixture(tmp_path):
    refs = list(_held_out_references())
    assert {task.name for task, _, _ in refs} == set(TASKS)
    template = str(MIXTURES / "templates" / "paws.yaml")
    sources = [{"path": path, "name": config, "language": "en", "task": "nli", "template_file": template,
                "label": f"s{i}"} for i, (_, path, config) in enumerate(refs)]
    spec = tmp_path / "held_out.yaml"
    spec.write_text(yaml.safe_dump({"name": "held_out", "sources": sources}), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(spec)
    for i, (task, path, config) in enumerate(refs):
        found = held_out_task(path, config)      # the first task reading that data (ANLI: its first round)
        assert found is not None and (found.path, found.aliases) == (task.path, task.aliases), (task.name, path)
        assert any(p.startswith(f"sources[{i}]: s{i} is the held-out evaluation dataset {found.title} ")
                   for p in err.value.problems), (task.name, path)
    bare = [i for i, (_, path, _) in enumerate(refs) if "/" not in path]  # aliases such as super_glue
    assert len(err.value.problems) == len(refs) + len(bare)
    assert all(any(p.startswith(f"sources[{i}].path: ") and "no longer resolves" in p for p in err.value.problems)
               for i in bare)
    sources = [s for i, s in enumerate(sources) if i not in bare]
    spec.write_text(yaml.safe_dump({"name": "held_out", "include_held_out": True, "sources": sources}))
    assert len(load_mixture_spec(spec).sources) == len(refs) - len(bare)


def test_unknown_source_key_suggests_the_near_one(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"name": "s", "sources": [
        "not a mapping",
        {"path": "a", "language": "en", "task": "t", "templat": "x", "template_file": "t.yaml"}]}))
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(spec)
    problems = err.value.problems
    assert "sources[0]: expected a mapping, got str 'not a mapping'" in problems
    assert "sources[1].templat: unknown key; did you mean 'sources[1].templates'?" in problems
    assert any(p.startswith("sources[1].template_file: template file") for p in problems)   # index kept


def test_build_help_lists_every_key_with_its_docstring(capsys):
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    text = capsys.readouterr().out
    keys = {m.group(1) for m in re.finditer(r"^(\S+)  \(", text, flags=re.M)}
    for cls, prefix in ((MixtureSpec, ""), (SourceSpec, "sources[]."), (TemplateFile, ""),
                        (TemplateEntry, "templates[]."), (Translation, "templates[].translations.<name>.")):
        docs = field_docs(cls)
        for f in public_fields(cls):
            assert docs.get(f.name), f"{cls.__name__}.{f.name} has no docstring"
            assert prefix + f.name in keys, f"{prefix}{f.name} is missing from mixture build --help"
            assert " ".join(docs[f.name].split())[:40] in " ".join(text.split())


def test_checking_a_spec_never_imports_torch():
    code = ("import sys; from bloomz_tune.mixture.builds import load_mixture_spec; "
            f"load_mixture_spec({str(MIXTURES / 'xp3.yaml')!r}); import bloomz_tune.tasks.table; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=MIXTURES.parent)
    assert done.returncode == 0, done.stderr
