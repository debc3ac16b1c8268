"""Bounded work for untrusted text: a template rendering that spins is stopped by time; an error quotes a short
prefix of a value."""

import pytest

from bloomz_tune.mixture import sandbox
from bloomz_tune.mixture.templates import PromptTemplate, TemplateRenderError
from bloomz_tune.schema import short


def test_a_spinning_template_is_stopped_by_time(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_RENDER_SECONDS", 0.5)
    ok = PromptTemplate(name="t", file="t.yaml", input="{% for i in range(1000) %}{% endfor %}{{ text }}",
                        target="{{ text }}")
    assert ok.render({"text": "hi"})[0] == "hi"  # the control: a short loop renders
    spin = PromptTemplate(name="t", file="t.yaml", target="{{ text }}",
                          input="{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    with pytest.raises(TemplateRenderError, match=r"template 't' \(t.yaml\): TimeoutError: the rendering took more "
                                                  r"than 0.5 s"):
        spin.render({"text": "hi"})
    assert ok.render({"text": "again"})[0] == "again"  # the timer is gone after the error


def test_short_quotes_a_prefix_and_the_length():
    assert short("abc") == "abc"
    assert short("x" * 1000) == "x" * 80 + "... (1,000 characters)"


def test_a_null_value_renders_as_nothing_not_the_word_none():
    t = PromptTemplate(name="t", file="t.yaml", input="Review: {{ text }}", target="{{ label }}")
    inputs, targets, _ = t.render({"text": None, "label": "positive"})
    assert inputs == "Review:" and "None" not in inputs  # the row's other text stays
    inputs, _, _ = t.render({"text": "fine", "label": "positive"})
    assert inputs == "Review: fine"  # the control
