"""Prompt templates: our format, promptsource's format, the sandbox, and bad template files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bloomz_tune.errors import ConfigError
from bloomz_tune.mixture.templates import RowFilter, TemplateRenderError, load_templates

REPO = Path(__file__).resolve().parents[1]
PROMPTSOURCE = REPO / "tests" / "fixtures" / "mixture" / "promptsource" / "promptsource" / "templates" / "ag_news" \
    / "templates.yaml"
TEMPLATE_DIR = REPO / "data_mixtures" / "templates"


def by_name(path):
    return {t.name: t for t in load_templates(path)}


def test_our_template_renders_inputs_targets_choices():
    t = by_name(TEMPLATE_DIR / "sentiment.yaml")["review_then_question"]
    inputs, targets, choices = t.render({"text": "Loved it.", "label": 1})
    assert inputs == "Loved it.\nDid the writer like it or not? Answer positive or negative."
    assert (targets, choices) == ("positive", ["negative", "positive"])
    assert t.variables() == {"text", "label"}
    # per-language wording (xP3mt) when asked for, English otherwise
    fr = t.render({"text": "Superbe.", "label": 0}, language="fr")
    assert fr[1] == "négatif" and "L'auteur" in fr[0]
    assert t.render({"text": "Superbe.", "label": 0}, language="de")[1] == "negative"


def test_missing_column_is_named():
    t = by_name(TEMPLATE_DIR / "sentiment.yaml")["review_then_question"]
    with pytest.raises(TemplateRenderError, match=r"review_then_question.*'label' missing from the row"):
        t.render({"text": "no label here"})


def test_sandbox_blocks_unsafe_attributes(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("templates:\n  - {name: evil, input: \"{{ text.__class__.__mro__[1].__subclasses__() }}\", "
                 "target: x}\n")
    with pytest.raises(TemplateRenderError, match="evil"):
        load_templates(f)[0].render({"text": "a"})


def test_promptsource_file_applied_like_promptsource():
    ts = by_name(PROMPTSOURCE)
    assert set(ts) == {"section_question", "no_target", "choices_from_row"}
    section = ts["section_question"]
    assert section.promptsource and section.variables() == {"text", "label"}
    inputs, targets, choices = section.render({"text": "Goal in the last minute.", "label": 1})
    assert inputs == "Which section of a newspaper would print this?\nGoal in the last minute."
    assert (targets, choices) == ("Sports", ["World", "Sports", "Business", "Science"])
    # "|||" inside a row value is not taken for the separator
    inputs, targets, _ = section.render({"text": "a ||| b", "label": 0})
    assert inputs.endswith("a ||| b") and targets == "World"
    # each substituted value goes through `string | truncate(2048)` as xP3's build applied promptsource: cut at a
    # word boundary before 2045 characters plus "...", left whole within the leeway of 5
    prefix = "Which section of a newspaper would print this?\n"
    assert section.render({"text": "abcd " * 500, "label": 0})[0] == prefix + "abcd " * 408 + "abcd..."
    assert section.render({"text": "y" * 2053, "label": 0})[0] == prefix + "y" * 2053
    assert section.render({"text": "y" * 2054, "label": 0})[0] == prefix + "y" * 2045 + "..."
    # a template without a target yields an empty target (the row is dropped and counted by the builder)
    assert ts["no_target"].render({"text": "t", "label": 0})[1] == ""
    # answer choices may come from the row
    inputs, targets, choices = ts["choices_from_row"].render({"text": "t", "label": 1, "topics": ["a", "b"]})
    assert choices == ["a", "b"] and targets == "b" and inputs.endswith("Pick one: a, b")


def test_choice_filter_is_reproducible_per_row(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("templates:\n  - {name: pick, input: \"{{ ['p', 'q', 'r', 's'] | choice }} {{ text }}\", target: x}\n")
    t = load_templates(f)[0]
    first = [t.render({"text": "a"}, row_seed=s)[0] for s in range(20)]
    assert first == [t.render({"text": "a"}, row_seed=s)[0] for s in range(20)]
    assert len({x.split()[0] for x in first}) > 1


def test_bad_template_file_reports_everything(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(
        "templates:\n"
        "  - {name: a, input: '{{ text ', target: '{{ label }}'}\n"
        "  - {name: a, input: '{{ text }}', target: '', colour: red}\n"
        "  - {input: '{{ text }}', target: x}\n"
        "  - {name: c, input: '{{ text }}', target: x, answer_choices: {a: 1}}\n")
    with pytest.raises(ConfigError) as err:
        load_templates(f)
    problems = "\n".join(err.value.problems)
    for expected in ("templates[0].input: Jinja syntax error", "templates[1].name: duplicate template name 'a'",
                     "templates[1].target: must be a non-empty Jinja string", "templates[1].colour: unknown key",
                     "templates[2].name: required", "templates[3].answer_choices: expected a list"):
        assert expected in problems
    f.write_text("templates: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_templates(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_templates(tmp_path / "missing.yaml")


def test_row_filter():
    keep = RowFilter("id.startswith('indonesian') and label != 0")
    assert keep.variables() == {"id", "label"}
    assert keep({"id": "indonesian-3", "label": 1}) and not keep({"id": "arabic-1", "label": 1})


@pytest.mark.parametrize("path", sorted(TEMPLATE_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_template_file_loads(path):
    templates = load_templates(path)
    assert len(templates) >= 2
    for t in templates:
        assert t.variables(), f"{t.name} reads no column"
