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

Its keys are the fields of ``TemplateFile``, ``TemplateEntry`` and ``Translation`` below (``bloomz-tune mixture
build --help`` lists them); a file is read through the schema layer, every problem at once, naming file and key.
Row columns are the template's variables; ``answer_choices`` is the rendered list of choices.
A template that names a column the dataset lacks is reported before any row is rendered.

promptsource format: a ``templates.yaml`` from promptsource (``!Template`` entries keyed by id, whose ``jinja``
holds ``input ||| target``) is read directly and applied the way xP3's build called promptsource's
``Template.apply`` (docs/bloomz.md §2.2): each substituted value passed through ``string | truncate(2048)``;
``answer_choices`` rendered from the row (None when the template has none); ``|||`` inside row values
protected; a column name's ``-`` read as ``_``; parts stripped, except that code sources keep the newline
between input and target; a render with no target or more than one gives no row. The file is read as
promptsource reads it (an id written twice: the last entry counts). Template names: promptsource keys
templates by id, so two may share a name; the last of them keeps it (the one promptsource returns for that
name) and each earlier one is named ``<name>#<first 8 characters of its id>``.

Try it::

    python -c "from bloomz_tune.mixture.templates import load_templates; \\
        t = load_templates('data_mixtures/templates/sentiment.yaml')[0]; \\
        print(t.render({'text': 'Great film.', 'label': 1}))"
"""

from __future__ import annotations

import dataclasses
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

from bloomz_tune import schema
from bloomz_tune.errors import BloomzTuneError, ConfigError
from bloomz_tune.mixture.sandbox import BoundedSandbox, bounded_filter, bounded_output

SEPARATOR = "|||"
# promptsource's Template.apply(truncate=True), as xP3's build called it, rewrites every "{{ x }}" to
# "{{ x | string | truncate(2048) }}": Jinja's truncate, word boundary, "..." and a leeway of 5 (docs/bloomz.md §2.2).
PROMPTSOURCE_TRUNCATE = 2048
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
    env = BoundedSandbox(
        undefined=jinja2.StrictUndefined if strict else jinja2.Undefined,
        autoescape=False,
        keep_trailing_newline=False,
        finalize=lambda value: "" if value is None else value,  # a null column is missing text, never "None"
    )
    env.globals.update(zip=zip, enumerate=enumerate, len=len)
    env.filters["choice"] = _choice
    env.filters["most_frequent"] = _most_frequent
    env.filters["highlight"] = lambda text: text
    env.filters = {name: bounded_filter(name, f) for name, f in env.filters.items()}
    return env


# What a template or filter can raise on a row's values (besides Jinja's own errors): reported with the row.
RENDER_ERRORS = (IndexError, KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError,
                 RecursionError, TimeoutError)

# Our templates fail on any undefined name; promptsource's are rendered with Jinja's lenient default, as
# promptsource renders them.
_STRICT_ENV = _make_env(strict=True)
_LENIENT_ENV = _make_env(strict=False)


@functools.lru_cache(maxsize=4096)
def _compiled(strict: bool, source: str) -> jinja2.Template:
    """Compile a template source once per process (compiling costs ~100x a render)."""
    return (_STRICT_ENV if strict else _LENIENT_ENV).from_string(source)


@functools.lru_cache(maxsize=4096)
def _globals_of(template: jinja2.Template) -> tuple[dict, frozenset]:
    return dict(template.globals), frozenset(template.globals)


def _render(template: jinja2.Template, variables: dict) -> str:
    """``template.render(**variables)``, less its per-call copy of the template's globals (a ChainMap read key by
    key, 5x the cost of rendering a short prompt: most of a million-row build's rendering); merged once here."""
    from jinja2.runtime import new_context

    base, keys = _globals_of(template)
    context = new_context(template.environment, template.name, template.blocks, {**base, **variables}, True, keys)
    try:
        return template.environment.concat(bounded_output(template.root_render_func(context)))
    except Exception:  # noqa: BLE001 - as Template.render: Jinja rewrites the traceback and raises the error again
        template.environment.handle_exception()


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
    def render(self, row: dict[str, Any], language: str | None = None, row_seed: int = 0,
               strip_connection: bool = True) -> tuple[str, str, list[str]]:
        """Render one row: (inputs, targets, choices). Raises TemplateRenderError naming the cause.
        ``strip_connection=False`` (promptsource templates, for code sources) keeps the whitespace between
        input and target."""
        if not self.promptsource:
            missing = sorted(self._required - row.keys())
            if missing:
                raise TemplateRenderError(f"template {self.name!r} ({self.file}): column(s) "
                                          f"{', '.join(map(repr, missing))} missing from the row")
        try:
            if self.promptsource:
                return self._render_promptsource(row, row_seed, strip_connection)
            return self._render_ours(row, language, row_seed)
        except jinja2.UndefinedError as err:
            raise TemplateRenderError(f"template {self.name!r} ({self.file}): {err.message}") from None
        except jinja2.TemplateError as err:
            raise TemplateRenderError(f"template {self.name!r} ({self.file}): {err}") from None
        except RENDER_ERRORS as err:
            raise TemplateRenderError(f"template {self.name!r} ({self.file}): {type(err).__name__}: {err}") from None

    def _choices_list(self, spec, variables, env) -> list[str]:
        if spec is None:
            return []
        if isinstance(spec, str):
            text = _render(_compiled(env is _STRICT_ENV, spec), variables)
            return [_unescape_pipe(c).strip() for c in text.split(SEPARATOR)]
        return [str(c) for c in spec]

    def _render_ours(self, row, language, row_seed):
        inp, tgt, choices_spec = self._sources(language)
        variables = dict(row)
        variables[_ROW_SEED_VAR] = row_seed
        choices = self._choices_list(choices_spec, variables, _STRICT_ENV)
        variables["answer_choices"] = choices
        inputs = _render(_compiled(True, inp), variables).strip()
        targets = _render(_compiled(True, tgt), variables).strip()
        return inputs, targets, choices

    def _render_promptsource(self, row, row_seed, strip_connection=True):
        # xP3's build renamed columns with "-" (not a Jinja name) to "_" before applying a template.
        # Values nested in lists and dicts are protected from "|||" too (promptsource protects top-level
        # strings only, so a nested "|||" there split the text and the row was dropped).
        variables = _escape_pipe({k.replace("-", "_"): v for k, v in row.items()})
        variables[_ROW_SEED_VAR] = row_seed
        choices = self._choices_list(self.answer_choices, variables, _LENIENT_ENV)
        variables["answer_choices"] = _escape_pipe(choices) if self.answer_choices is not None else None
        source = self.jinja.replace("}}", f"| string | truncate({PROMPTSOURCE_TRUNCATE}) }}}}")
        parts = [_unescape_pipe(p) for p in _render(_compiled(False, source), variables).split(SEPARATOR)]
        if strip_connection:
            parts = [p.strip() for p in parts]
        if len(parts) != 2:
            # no target, or more than one (which xP3's build skipped as a likely template bug): no training row
            return parts[0].strip(), "", choices
        inputs, targets = parts
        if not strip_connection:  # as promptsource: one space of a " ||| " pair goes, the newline stays
            if inputs.endswith(" ") and targets.startswith(" "):
                inputs = inputs[:-1]
            inputs, targets = inputs.lstrip(), targets.rstrip()
        return inputs, targets, choices


# -- our template files: a schema ----------------------------------------------------------------------------

Choices = list[str | int | float] | str | None


def _jinja_problem(text: str | None, key: str) -> list[str]:
    """[] when ``text`` is a non-empty Jinja template without syntax errors, else the one problem."""
    if not isinstance(text, str) or not text.strip():
        return [f"{key}: must be a non-empty Jinja string"]
    try:
        _STRICT_ENV.parse(text)
    except jinja2.TemplateSyntaxError as err:
        return [f"{key}: Jinja syntax error line {err.lineno}: {err.message}"]
    return []


def _choices_problems(choices: Choices, key: str) -> list[str]:
    if isinstance(choices, str):
        return _jinja_problem(choices, key)
    if isinstance(choices, list) and not choices:
        return [f"{key}: must list at least one choice"]
    return []


def _choice_strings(choices: Choices) -> list[str] | str | None:
    return [str(c) for c in choices] if isinstance(choices, list) else choices


@dataclass
class Translation:
    """Another language's wording of a template (xP3mt style); what it leaves out stays as in English."""

    input: str | None = None
    """The prompt in this language (Jinja)."""
    target: str | None = None
    """The answer in this language (Jinja)."""
    answer_choices: Choices = None
    """The answer choices in this language: a list, or a Jinja string whose parts are split on |||."""

    def problems(self) -> list[str]:
        given = {k: v for k, v in (("input", self.input), ("target", self.target)) if v is not None}
        if not given and self.answer_choices is None:
            return ["must give new wording for some of input, target, answer_choices"]
        return ([p for k, v in given.items() for p in _jinja_problem(v, k)]
                + _choices_problems(self.answer_choices, "answer_choices"))


@dataclass
class TemplateEntry:
    """One prompt template of a template file."""

    name: str
    """The template's name, unique in the file; mixture specs select templates by it."""
    input: str
    """The prompt (Jinja over the row's columns, plus ``answer_choices``)."""
    target: str
    """The answer (Jinja, same variables), e.g. ``{{ answer_choices[label] }}``."""
    version: int | str = 1
    """Bump when the wording changes: it is part of the mixture fingerprint, so builds are redone."""
    answer_choices: Choices = None
    """The answer choices a rank-classification evaluation scores: a list, or a Jinja string whose parts are
    split on |||. Leave out for generation tasks."""
    translations: dict[str, Translation] = field(default_factory=dict)
    """Per-language wording used with the spec's ``prompt_language: native``, keyed by language code."""

    def problems(self) -> list[str]:
        out = [] if self.name.strip() else ["name: must not be empty"]
        return (out + _jinja_problem(self.input, "input") + _jinja_problem(self.target, "target")
                + _choices_problems(self.answer_choices, "answer_choices"))

    def prompt_template(self, file: str) -> PromptTemplate:
        translations = {lang: {k: _choice_strings(v) for k, v in schema.to_dict(t).items() if v is not None}
                        for lang, t in self.translations.items()}
        return PromptTemplate(name=self.name, file=file, version=str(self.version), input=self.input,
                              target=self.target, answer_choices=_choice_strings(self.answer_choices),
                              translations=translations)


@dataclass
class TemplateFile:
    """A template file of ours (``data_mixtures/templates/*.yaml``)."""

    templates: list[TemplateEntry]
    """The file's templates, in order."""

    def problems(self) -> list[str]:
        if not self.templates:
            return ["templates: must list at least one template"]
        out, seen = [], set()
        for i, entry in enumerate(self.templates):
            if entry is None:  # could not be read; reported already
                continue
            if entry.name in seen:
                out.append(f"templates[{i}].name: duplicate template name {entry.name!r}")
            seen.add(entry.name)
        return out


def template_file_help() -> str:
    """Every key of our template files with its type, default and meaning (for --help)."""
    return schema.describe(TemplateFile)


# -- promptsource's templates.yaml (an external format, read as it is) ---------------------------------------

class _PromptsourceLoader(yaml.SafeLoader):
    """Safe YAML loader that reads promptsource's ``!Template`` / ``!TemplateMetadata`` tags as mappings."""


def _tagged_mapping(loader, node):
    return loader.construct_mapping(node, deep=True)


_PromptsourceLoader.add_constructor("!Template", _tagged_mapping)
_PromptsourceLoader.add_constructor("!TemplateMetadata", _tagged_mapping)


def _read_promptsource(data: dict, path: str, problems: list[str]) -> list[PromptTemplate]:
    out, ids = [], []
    for tid, entry in data["templates"].items():
        where = f"templates.{tid}"
        if not isinstance(entry, dict) or "jinja" not in entry or "name" not in entry:
            problems.append(f"{where}: a promptsource !Template needs 'name' and 'jinja'")
            continue
        problems.extend(_jinja_problem(entry["jinja"], f"{where}.jinja"))
        choices = entry.get("answer_choices")
        if choices is not None and not isinstance(choices, str):
            problems.append(f"{where}.answer_choices: must be a string with choices separated by |||")
            choices = None
        out.append(PromptTemplate(name=str(entry["name"]), file=path, version=str(entry.get("id", tid)),
                                  jinja=entry["jinja"], answer_choices=choices, promptsource=True))
        ids.append(str(tid))
    return _unique_names(out, ids)


def _unique_names(templates: list[PromptTemplate], ids: list[str]) -> list[PromptTemplate]:
    """Templates of one file sharing a name: the last keeps it (promptsource's ``DatasetTemplates[name]`` gives
    the last), each earlier one becomes ``<name>#<id[:8]>`` (its whole id where 8 characters do not tell it
    apart)."""
    names = [t.name for t in templates]
    out = []
    for i, (t, tid) in enumerate(zip(templates, ids)):
        if t.name in names[i + 1:]:
            short = tid[:8] if sum(x[:8] == tid[:8] for x in ids) == 1 else tid
            t = dataclasses.replace(t, name=f"{t.name}#{short}")
        out.append(t)
    return out


def _is_promptsource(path: str | Path) -> bool:
    """A promptsource file (``!Template`` tags), read as promptsource reads it: an id written twice is not an
    error there, the last entry counts (GEM/xlsum/english in xP3's fork has one)."""
    try:
        return "!Template" in Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):  # read_yaml reports these
        return False


def load_templates(path: str | Path) -> list[PromptTemplate]:
    """Read a template file (ours, or promptsource's ``templates.yaml``); every problem at once, naming the
    file and the key."""
    data = schema.read_yaml(path, "template file", loader=_PromptsourceLoader, strict=not _is_promptsource(path))
    if isinstance(data, dict) and isinstance(data.get("templates"), dict):  # promptsource: keyed by id
        problems: list[str] = []
        templates = _read_promptsource(data, str(path), problems)
        if problems:
            raise ConfigError(problems, str(path))
        return templates
    return [entry.prompt_template(str(path)) for entry in schema.build(TemplateFile, data, str(path)).templates]


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
        except (jinja2.TemplateError, *RENDER_ERRORS) as err:
            raise TemplateRenderError(f"filter {self.expression!r}: {type(err).__name__}: {err}") from None


def check_filter(expression: Any) -> str | None:
    """None when ``expression`` is a valid filter expression, else the problem."""
    if not isinstance(expression, str) or not expression.strip():
        return "must be a Jinja expression over the row's columns, e.g. \"id.startswith('indonesian')\""
    try:
        _STRICT_ENV.compile_expression(expression)
    except jinja2.TemplateSyntaxError as err:
        return f"Jinja syntax error: {err.message}"
    return None
