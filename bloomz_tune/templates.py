"""Prompt templates: our own Jinja2 template files, and promptsource-format files read as they are.

A template turns one dataset row into ``inputs`` (the prompt), ``targets`` (the answer) and, for
classification tasks, ``choices`` (the answer choices a rank-classification evaluation scores). Templates
are rendered in a Jinja2 sandbox, so a template file cannot run arbitrary code.

Our format (``data_mixtures/templates/*.yaml``)::

    templates:
      - name: review_sentiment          # unique in the file
        version: 1                      # bump when the wording changes (part of the mixture fingerprint)
        input: "Review: {{ text }}\\nIs this review positive or negative?"
        target: "{{ answer_choices[label] }}"
        answer_choices: [negative, positive]   # a list, or a Jinja string whose parts are split on |||
        translations:                   # optional per-language wording (xP3mt style)
          fr: {input: "...", answer_choices: [négatif, positif]}

Row columns are the template's variables; ``answer_choices`` is the rendered list of choices.
A template that names a column the dataset lacks is reported before any row is rendered.

promptsource format: a ``templates.yaml`` from promptsource (``!Template`` entries whose ``jinja`` holds
``input ||| target``) is read directly and applied the way promptsource applies it (each substituted
value truncated to 4000 characters, ``|||`` inside row values protected, parts stripped).

Try it::

    python -c "from bloomz_tune.templates import load_templates; \\
        t = load_templates('data_mixtures/templates/sentiment.yaml')[0]; \\
        print(t.render({'text': 'Great film.', 'label': 1}))"
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import yaml
from jinja2.sandbox import SandboxedEnvironment

from bloomz_tune.errors import BloomzTuneError, ConfigError

SEPARATOR = "|||"
# promptsource protects "|||" inside row values with this marker before splitting, then puts it back.
_PIPE_ESCAPE = "3ed2dface8203c4c9dfb1a5dc58e41e0||"
_ROW_SEED_VAR = "_bloomz_tune_row_seed"
_BUILTIN_NAMES = {"answer_choices", _ROW_SEED_VAR, "zip", "enumerate", "range", "len"}


@jinja2.pass_context
def _choice(context, seq):
    """A random element, reproducible for a given row (promptsource's ``choice`` filter, seeded per row)."""
    seq = list(seq)
    rng = random.Random(context.get(_ROW_SEED_VAR, 0))
    return seq[rng.randrange(len(seq))] if seq else ""


def _most_frequent(seq):
    counts: dict[Any, int] = {}
    for item in seq:
        counts[item] = counts.get(item, 0) + 1
    best = max(counts.values(), default=0)
    return [item for item, n in counts.items() if n == best]


def _make_env(strict: bool) -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.globals.update(zip=zip, enumerate=enumerate, len=len)
    env.filters["choice"] = _choice
    env.filters["most_frequent"] = _most_frequent
    env.filters["highlight"] = lambda text: text
    return env


# Our templates fail on any undefined name; promptsource's are rendered with Jinja's lenient default, as
# promptsource renders them.
_STRICT_ENV = _make_env(strict=True)
_LENIENT_ENV = _make_env(strict=False)


@functools.lru_cache(maxsize=4096)
def _compiled(strict: bool, source: str) -> jinja2.Template:
    """Compile a template source once per process (compiling costs ~100x a render)."""
    return (_STRICT_ENV if strict else _LENIENT_ENV).from_string(source)


@functools.lru_cache(maxsize=256)
def _compiled_expression(source: str):
    return _STRICT_ENV.compile_expression(source)


def _escape_pipe(value):
    if isinstance(value, str):
        return value.replace(SEPARATOR, _PIPE_ESCAPE)
    if isinstance(value, dict):
        return {k: _escape_pipe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_escape_pipe(v) for v in value]
    return value


def _unescape_pipe(text: str) -> str:
    return text.replace(_PIPE_ESCAPE, SEPARATOR)


class TemplateRenderError(BloomzTuneError):
    """A row could not be rendered (names the template, the row and the cause)."""


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt: how a row becomes (inputs, targets, choices).

    ``input``/``target`` are Jinja sources (our format); ``jinja`` is promptsource's single
    ``input ||| target`` source (promptsource format). ``answer_choices`` is a list of strings, a Jinja
    string split on ``|||``, or None. ``translations`` maps a language code to overrides of
    ``input``/``target``/``answer_choices``.
    """

    name: str
    file: str
    version: str = "1"
    input: str | None = None
    target: str | None = None
    jinja: str | None = None
    answer_choices: list[str] | str | None = None
    translations: dict[str, dict[str, Any]] = field(default_factory=dict)
    promptsource: bool = False

    # -- identity ---------------------------------------------------------------------------------------
    def digest(self) -> str:
        """A short hash of everything that decides the rendered text (used in mixture fingerprints)."""
        payload = repr((self.name, self.version, self.input, self.target, self.jinja, self.answer_choices,
                        sorted((k, sorted(v.items())) for k, v in self.translations.items()),
                        self.promptsource))
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]

    def _sources(self, language: str | None) -> tuple[str | None, str | None, Any]:
        over = self.translations.get(language or "", {})
        return (over.get("input", self.input), over.get("target", self.target),
                over.get("answer_choices", self.answer_choices))

    def variables(self) -> set[str]:
        """Row columns the template reads (top-level names), over every wording."""
        names: set[str] = set()
        wordings = [None, *self.translations]
        for lang in wordings:
            inp, tgt, choices = self._sources(lang)
            texts = [self.jinja] if self.promptsource else [inp, tgt]
            if isinstance(choices, str):
                texts.append(choices)
            for text in texts:
                if text:
                    env = _LENIENT_ENV if self.promptsource else _STRICT_ENV
                    names |= jinja2.meta.find_undeclared_variables(env.parse(text))
        return names - _BUILTIN_NAMES

    @functools.cached_property
    def _required(self) -> frozenset[str]:
        return frozenset(self.variables())

    def has_choices(self) -> bool:
        return self.answer_choices is not None

    # -- rendering --------------------------------------------------------------------------------------
    def render(self, row: dict[str, Any], language: str | None = None, row_seed: int = 0
               ) -> tuple[str, str, list[str]]:
        """Render one row: (inputs, targets, choices). Raises TemplateRenderError naming the cause."""
        if not self.promptsource:
            missing = sorted(self._required - row.keys())
            if missing:
                raise TemplateRenderError(f"template {self.name!r} ({self.file}): column(s) "
                                          f"{', '.join(map(repr, missing))} missing from the row")
        try:
            if self.promptsource:
                return self._render_promptsource(row, row_seed)
            return self._render_ours(row, language, row_seed)
        except jinja2.UndefinedError as err:
            raise TemplateRenderError(f"template {self.name!r} ({self.file}): {err.message}") from None
        except jinja2.TemplateError as err:
            raise TemplateRenderError(f"template {self.name!r} ({self.file}): {err}") from None
        except (IndexError, KeyError, TypeError) as err:
            raise TemplateRenderError(f"template {self.name!r} ({self.file}): {type(err).__name__}: {err}") from None

    def _choices_list(self, spec, variables, env) -> list[str]:
        if spec is None:
            return []
        if isinstance(spec, str):
            text = _compiled(env is _STRICT_ENV, spec).render(**variables)
            return [_unescape_pipe(c).strip() for c in text.split(SEPARATOR)]
        return [str(c) for c in spec]

    def _render_ours(self, row, language, row_seed):
        inp, tgt, choices_spec = self._sources(language)
        variables = dict(row)
        variables[_ROW_SEED_VAR] = row_seed
        choices = self._choices_list(choices_spec, variables, _STRICT_ENV)
        variables["answer_choices"] = choices
        inputs = _compiled(True, inp).render(**variables).strip()
        targets = _compiled(True, tgt).render(**variables).strip()
        return inputs, targets, choices

    def _render_promptsource(self, row, row_seed):
        variables = _escape_pipe(dict(row))
        variables[_ROW_SEED_VAR] = row_seed
        choices = self._choices_list(self.answer_choices, variables, _LENIENT_ENV)
        if self.answer_choices is not None:
            variables["answer_choices"] = _escape_pipe(choices)
        source = self.jinja.replace("}}", "| string | truncate(4000) }}")
        parts = [_unescape_pipe(p).strip()
                 for p in _compiled(False, source).render(**variables).split(SEPARATOR)]
        if len(parts) != 2:
            # promptsource templates without a target (or with extra parts) yield no training row.
            return (parts[0] if parts else ""), "", choices
        return parts[0], parts[1], choices


# -- reading template files -------------------------------------------------------------------------------

class _PromptsourceLoader(yaml.SafeLoader):
    """Safe YAML loader that reads promptsource's ``!Template`` / ``!TemplateMetadata`` tags as mappings."""


def _tagged_mapping(loader, node):
    return loader.construct_mapping(node, deep=True)


_PromptsourceLoader.add_constructor("!Template", _tagged_mapping)
_PromptsourceLoader.add_constructor("!TemplateMetadata", _tagged_mapping)


def _check_jinja(text: Any, where: str, problems: list[str]) -> None:
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}: must be a non-empty Jinja string")
        return
    try:
        _STRICT_ENV.parse(text)
    except jinja2.TemplateSyntaxError as err:
        problems.append(f"{where}: Jinja syntax error line {err.lineno}: {err.message}")


def _parse_choices(value: Any, where: str, problems: list[str]):
    if value is None:
        return None
    if isinstance(value, str):
        _check_jinja(value, where, problems)
        return value
    if isinstance(value, list) and value and all(isinstance(c, (str, int, float)) for c in value):
        return [str(c) for c in value]
    problems.append(f"{where}: must be a list of strings or a Jinja string with choices separated by |||")
    return None


def _read_ours(data: dict, path: str, problems: list[str]) -> list[PromptTemplate]:
    entries = data.get("templates")
    if not isinstance(entries, list) or not entries:
        problems.append("templates: must be a non-empty list")
        return []
    out, seen = [], set()
    allowed = {"name", "version", "input", "target", "answer_choices", "translations"}
    for i, entry in enumerate(entries):
        where = f"templates[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        for key in sorted(set(entry) - allowed):
            problems.append(f"{where}.{key}: unknown key (allowed: {', '.join(sorted(allowed))})")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            problems.append(f"{where}.name: required, a non-empty string")
            continue
        if name in seen:
            problems.append(f"{where}.name: duplicate template name {name!r}")
        seen.add(name)
        _check_jinja(entry.get("input"), f"{where}.input", problems)
        _check_jinja(entry.get("target"), f"{where}.target", problems)
        choices = _parse_choices(entry.get("answer_choices"), f"{where}.answer_choices", problems)
        translations = entry.get("translations") or {}
        if not isinstance(translations, dict):
            problems.append(f"{where}.translations: must map a language code to overrides")
            translations = {}
        for lang, over in translations.items():
            twhere = f"{where}.translations.{lang}"
            if not isinstance(over, dict) or not over or set(over) - {"input", "target", "answer_choices"}:
                problems.append(f"{twhere}: must map some of input/target/answer_choices to new wording")
                continue
            for key in ("input", "target"):
                if key in over:
                    _check_jinja(over[key], f"{twhere}.{key}", problems)
            if "answer_choices" in over:
                over = dict(over, answer_choices=_parse_choices(over["answer_choices"],
                                                                 f"{twhere}.answer_choices", problems))
            translations[lang] = over
        out.append(PromptTemplate(name=name, file=path, version=str(entry.get("version", 1)),
                                  input=entry.get("input"), target=entry.get("target"),
                                  answer_choices=choices, translations=dict(translations)))
    return out


def _read_promptsource(data: dict, path: str, problems: list[str]) -> list[PromptTemplate]:
    entries = data.get("templates")
    if not isinstance(entries, dict) or not entries:
        problems.append("templates: must map template ids to !Template entries")
        return []
    out = []
    for tid, entry in entries.items():
        where = f"templates.{tid}"
        if not isinstance(entry, dict) or "jinja" not in entry or "name" not in entry:
            problems.append(f"{where}: a promptsource !Template needs 'name' and 'jinja'")
            continue
        _check_jinja(entry["jinja"], f"{where}.jinja", problems)
        choices = entry.get("answer_choices")
        if choices is not None and not isinstance(choices, str):
            problems.append(f"{where}.answer_choices: must be a string with choices separated by |||")
            choices = None
        out.append(PromptTemplate(name=str(entry["name"]), file=path, version=str(entry.get("id", tid)),
                                  jinja=entry["jinja"], answer_choices=choices, promptsource=True))
    names = [t.name for t in out]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"templates: duplicate template name {name!r}")
    return out


def load_templates(path: str | Path) -> list[PromptTemplate]:
    """Read a template file (our format or promptsource's ``templates.yaml``); all problems at once."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError([f"template file not found: {path}"], str(path))
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_PromptsourceLoader)
    except yaml.YAMLError as err:
        raise ConfigError([f"malformed YAML: {err}"], str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(["the file must be a YAML mapping with a 'templates' key"], str(path))
    problems: list[str] = []
    is_promptsource = "!Template" in text or isinstance(data.get("templates"), dict)
    templates = (_read_promptsource if is_promptsource else _read_ours)(data, str(path), problems)
    if problems:
        raise ConfigError(problems, str(path))
    return templates


def select_templates(templates: list[PromptTemplate], names: list[str] | None) -> list[PromptTemplate]:
    """The named templates, in the order given (all of them when ``names`` is None)."""
    if names is None:
        return list(templates)
    by_name = {t.name: t for t in templates}
    return [by_name[n] for n in names]


# -- row filters ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RowFilter:
    """A Jinja expression over a row's columns (e.g. ``id.startswith('indonesian')``); rows where it is false
    are left out. Evaluated in the same sandbox as the templates."""

    expression: str

    def variables(self) -> set[str]:
        return jinja2.meta.find_undeclared_variables(_STRICT_ENV.parse("{{ " + self.expression + " }}")) - _BUILTIN_NAMES

    def __call__(self, row: dict[str, Any]) -> bool:
        try:
            return bool(_compiled_expression(self.expression)(**row))
        except jinja2.TemplateError as err:
            raise TemplateRenderError(f"filter {self.expression!r}: {err}") from None


def check_filter(expression: Any) -> str | None:
    """None when ``expression`` is a valid filter expression, else the problem."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a Jinja expression over the row's columns, e.g. \"id.startswith('indonesian')\""
    try:
        _STRICT_ENV.compile_expression(expression)
    except jinja2.TemplateSyntaxError as err:
        return f"Jinja syntax error: {err.message}"
    return None
