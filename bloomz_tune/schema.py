"""One schema layer for every YAML file bloomz_tune reads: recipes, mixture specs and prompt template files.

A schema is a dataclass. Each field has a type annotation, a default (or none: the key is required) and a
docstring written on the line after it; the docstrings are what ``bloomz-tune train --help`` and ``mixture
build --help`` print, so the documentation cannot drift from the code. The layer turns parsed YAML into the
dataclass and reports every problem at once, each naming its key::

    lora.r: must be > 0, got 0
    sources[2].templat: unknown key; did you mean 'template_file'?

What a field accepts comes from its type (``bool``, ``int``, ``float``, ``str``, ``Literal[...]`` for a fixed set
of values, ``X | None``, ``list[X]``, ``dict[str, X]``, nested dataclasses) and from its metadata
(``bounded(default, gt=0)``); checks that involve several fields live in the dataclass's ``problems()`` method,
which returns messages that start with the field's key. A ``coerce`` classmethod may rewrite the raw mapping
first (e.g. accept a string where a list is meant). Fields marked ``internal()`` are set by code, never read from
YAML and never written back.

This module imports only the standard library and PyYAML, so validating a recipe never imports torch.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from bloomz_tune.errors import ConfigError

_MISSING = dataclasses.MISSING


# ---- declaring fields ---------------------------------------------------------------------------------------

def bounded(default, *, gt=None, ge=None, lt=None, le=None, factory=None):
    """A field whose number must lie in the given bounds (``gt``: greater than, ``ge``: at least, ...)."""
    metadata = {k: v for k, v in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le)) if v is not None}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def internal(default=None):
    """A field set by code (where a file was read from, ...): never read from YAML, never shown or saved."""
    return dataclasses.field(default=default, metadata={"internal": True}, repr=False, compare=False)


def public_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


@functools.cache
def field_docs(cls) -> dict[str, str]:
    """{field name: docstring}: the string literal written right after each field of ``cls``."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, after in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


# ---- reading files ------------------------------------------------------------------------------------------

def read_yaml(path: str | Path, what: str, loader=yaml.SafeLoader, strict: bool = True) -> Any:
    """Parse a YAML file; a missing path, a folder, bad UTF-8 or bad YAML is a ConfigError naming the file.
    ``strict``: a key written twice in one mapping is an error (else the last counts, as plain YAML has it)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError([f"{what} {str(path)!r} is a folder; give the path of a YAML file"])
    if not path.is_file():
        raise ConfigError([f"{what} {str(path)!r} does not exist"])
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError([f"not UTF-8 text (byte {err.start} cannot be decoded); save it as UTF-8"],
                          source=str(path)) from None
    try:
        return yaml.load(text, Loader=_checked(loader, strict))
    except yaml.YAMLError as err:
        raise ConfigError([f"not valid YAML: {yaml_problem(err)}"], source=str(path)) from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line: where it is and what is wrong."""
    mark, problem = getattr(err, "problem_mark", None), getattr(err, "problem", None)
    if mark is None or not problem:
        return " ".join(str(err).split())
    context = getattr(err, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")


# A YAML file's values once its aliases are expanded: a recipe or template file has hundreds; an alias bomb (each
# level repeating the one before) has billions, which any walk over the value (checks, messages) would expand.
MAX_YAML_VALUES = 1_000_000


def _expanded_size(root) -> int:
    """How many values the node graph holds with every alias expanded (each distinct node counted once per use)."""
    sizes: dict[int, int] = {}
    order, stack = [], [root]
    while stack:  # children before parents, without recursion
        node = stack.pop()
        if id(node) in sizes:
            continue
        sizes[id(node)] = -1
        order.append(node)
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
    for node in reversed(order):
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        sizes[id(node)] = min(1 + sum(max(sizes[id(c)], 1) for c in children), MAX_YAML_VALUES + 1)
    return sizes[id(root)]


@functools.cache
def _checked(loader, strict: bool):
    """``loader`` bounded in alias expansion, and with ``strict`` refusing a key written twice in one mapping."""

    def compose_document(self):
        node = loader.compose_document(self)
        if node is not None and _expanded_size(node) > MAX_YAML_VALUES:
            raise yaml.composer.ComposerError(None, None, f"its aliases expand to more than {MAX_YAML_VALUES:,} "
                                              "values (an alias bomb?); write the values out", node.start_mark)
        return node

    base = _strict(loader) if strict else loader
    return type(f"Checked{base.__name__}", (base,), {"compose_document": compose_document})


@functools.cache
def _strict(loader):
    """``loader`` that refuses a key written twice in one mapping (plain YAML keeps the last one, silently)."""

    def mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {short(repr(key))} appears twice (first on line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(self, node, deep=deep)

    return type(f"Strict{loader.__name__}", (loader,), {"construct_mapping": mapping})


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], value read as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError([f"override {short(repr(text))} is not of the form key=value (e.g. training.max_steps=10)"])
    try:
        value = yaml.load(raw, Loader=_checked(yaml.SafeLoader, False)) if raw != "" else ""
    except yaml.YAMLError as err:
        raise ConfigError([f"override {key}: value {short(repr(raw))} is not valid YAML ({err.problem})"]) from None
    return key.strip().split("."), value


def apply_overrides(raw: dict, overrides, problems: list[str]) -> dict:
    """Set each ``section.key=value`` of ``overrides`` in ``raw`` (in place); bad overrides go to ``problems``."""
    for item in overrides:
        try:
            keys, value = parse_override(item)
        except ConfigError as err:
            problems.extend(err.problems)
            continue
        node = raw
        for k in keys[:-1]:
            if not isinstance(node.get(k), dict):
                node[k] = {}
            node = node[k]
        node[keys[-1]] = value
    return raw


def build(cls, raw: Any, origin: str | None = None, problems: list[str] | None = None, **internal_values):
    """``cls`` from a parsed mapping, checked; raises one ConfigError (naming ``origin``, the file) listing every
    problem. ``internal_values`` set internal fields (see ``internal``)."""
    reader = _Reader(list(problems or []))
    obj = reader.build(cls, raw, "")
    if obj is not None:
        for name, value in internal_values.items():
            setattr(obj, name, value)
        reader.check(obj, "")
    if reader.problems:
        raise ConfigError(reader.problems, source=origin)
    return obj


def load(cls, path: str | Path, what: str, overrides=(), allow_empty: bool = False, **internal_values):
    """Read ``path`` (YAML), apply ``key=value`` overrides, and build ``cls`` from it (see ``build``)."""
    raw = read_yaml(path, what)
    if raw is None and not allow_empty:
        raise ConfigError([f"the file is empty; a {what} needs at least the keys it sets"], source=str(path))
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError([f"the top level must be a mapping of keys, got {_describe(raw)}"], source=str(path))
    problems: list[str] = []
    apply_overrides(raw, overrides, problems)
    return build(cls, raw, str(path), problems, **internal_values)


class _Reader:
    """Turns parsed YAML into schema objects, collecting every problem instead of stopping at the first."""

    def __init__(self, problems: list[str]):
        self.problems = problems

    def build(self, cls, raw: Any, prefix: str):
        """``cls`` from ``raw``, or None when it cannot be made (not a mapping, a required key missing or bad).

        A field with a refused value keeps its default (a list keeps its good items; a list of mappings keeps
        None in place of an item that could not be made, so that the others keep their index), so that the
        checks across fields (``problems()``) still run, on valid values, and every problem is reported in one go.
        """
        if hasattr(cls, "coerce") and isinstance(raw, dict):
            raw = cls.coerce(dict(raw))
        if not isinstance(raw, dict):
            self.problems.append(f"{prefix.rstrip('.') or 'the file'}: expected a mapping, got {_describe(raw)}")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in public_fields(cls)}
        values = {}
        for key, value in raw.items():
            if key not in fields:
                close = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; known keys: {', '.join(fields)}"
                self.problems.append(f"{prefix}{key}: unknown key{hint}")
                continue
            ok, converted = self.convert(hints[key], value, f"{prefix}{key}")
            ok = ok and self.in_bounds(fields[key], converted, f"{prefix}{key}")
            if ok or isinstance(converted, list) or dataclasses.is_dataclass(converted):
                values[key] = converted
        missing = [name for name, f in fields.items()
                   if name not in values and f.default is _MISSING and f.default_factory is _MISSING]
        for name in missing:
            if name not in raw:  # (a refused value has been reported already)
                doc = field_docs(cls).get(name, "").split("\n")[0]
                self.problems.append(f"{prefix}{name}: required" + (f" ({doc})" if doc else ""))
        return None if missing else cls(**values)

    def check(self, obj, prefix: str) -> None:
        """Run the ``problems()`` method of ``obj`` and of every dataclass inside it, prefixing their keys."""
        for f in public_fields(type(obj)):
            value = getattr(obj, f.name)
            if isinstance(value, list):
                items = {f"{f.name}[{i}]": item for i, item in enumerate(value)}
            elif isinstance(value, dict):
                items = {f"{f.name}.{k}": item for k, item in value.items()}
            else:
                items = {f.name: value}
            for key, item in items.items():
                if dataclasses.is_dataclass(item):
                    self.check(item, f"{prefix}{key}.")
        if hasattr(obj, "problems"):
            self.problems.extend(f"{prefix}{p}" for p in obj.problems())

    def in_bounds(self, f: dataclasses.Field, value, where: str) -> bool:
        if value is None or not f.metadata:
            return True
        tests = {"gt": (lambda v, b: v > b, ">"), "ge": (lambda v, b: v >= b, ">="),
                 "lt": (lambda v, b: v < b, "<"), "le": (lambda v, b: v <= b, "<=")}
        failed = [f"{sign} {f.metadata[k]}" for k, (test, sign) in tests.items()
                  if k in f.metadata and not test(value, f.metadata[k])]
        if failed:
            self.problems.append(f"{where}: must be {' and '.join(failed)}, got {value}")
        return not failed

    def convert(self, hint, value, where: str):
        """(ok, value converted to ``hint``); on failure one problem naming ``where`` is recorded."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return True, None
            options = [a for a in args if a is not type(None)]
            if len(options) == 1:  # X | None: report X's own problem
                return self.convert(options[0], value, where)
            for option in options:  # the first member that takes the value silently
                trial = _Reader([])
                ok, converted = trial.convert(option, value, where)
                if ok and not trial.problems:
                    return True, converted
        elif origin is Literal:
            if value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)):
                return True, value
            self.problems.append(f"{where}: {short(repr(value))} is not one of {', '.join(map(str, args))}")
            return False, None
        elif dataclasses.is_dataclass(hint):
            before = len(self.problems)
            built = self.build(hint, {} if value is None else value, where + ".")
            return built is not None and len(self.problems) == before, built
        elif origin is list:
            if isinstance(value, list):  # on failure the good items still come back (see build)
                results = [self.convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
                if dataclasses.is_dataclass(args[0]):  # None where a mapping could not be made: [i] stays i
                    return all(ok for ok, _ in results), [v for _, v in results]
                return all(ok for ok, _ in results), [v for ok, v in results if ok]
        elif origin is dict:
            if isinstance(value, dict):
                results = {str(k): self.convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
                return all(ok for ok, _ in results.values()), {k: v for k, (_, v) in results.items()}
        elif hint is Any:
            return True, value
        elif _scalar_ok(hint, value):
            return True, float(value) if hint is float else value
        self.problems.append(f"{where}: expected {type_name(hint)}, got {_describe(value)}")
        return False, None


def _scalar_ok(hint, value) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads 2e-5 (no dot) as a string
            try:
                float(value)
                return True
            except ValueError:
                return False
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return False


def type_name(hint) -> str:
    """A readable name for a type annotation: "int", "a list of str", "sdpa, flex or stock", ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in args)
    if origin is Literal:
        return ", ".join(map(str, args[:-1])) + f" or {args[-1]}" if len(args) > 1 else str(args[0])
    if origin is list:
        return f"a list of {_inner_name(args[0])}"
    if origin is dict:
        return f"a mapping of {_inner_name(args[0])} to {_inner_name(args[1])}"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    if hint is Any:
        return "any value"
    return getattr(hint, "__name__", str(hint))


def _inner_name(hint) -> str:
    """type_name, in parentheses for a union inside a list or mapping: "a list of (str or int)"."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return f"({type_name(hint)})" if union else type_name(hint)


def _describe(value) -> str:
    return "null" if value is None else f"{type(value).__name__} {short(repr(value))}"


def short(text: str, limit: int = 80) -> str:
    """``text`` as an error message quotes it: at most ``limit`` characters, the cut marked with its length."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


# ---- writing and describing ---------------------------------------------------------------------------------

def to_dict(obj) -> Any:
    """The public fields of a schema object as plain data (internal fields left out)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in public_fields(type(obj))}
    if isinstance(obj, list):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_yaml(obj) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)


def describe(cls, prefix: str = "", width: int = 100) -> str:
    """Every field of ``cls`` (nested ones as ``section.key``): its type, default and docstring, for --help."""
    lines: list[str] = []
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in public_fields(cls):
        hint = hints[f.name]
        inner = _dataclass_in(hint)
        key = f"{prefix}{f.name}"
        container = typing.get_origin(hint)
        if inner is not None and container not in (list, dict):
            optional = " (optional; default: null)" if f.default is None else ""
            lines.append(f"\n[{key}]{optional}\n" + _wrap(docs.get(f.name, ""), width))
            lines.append(describe(inner, key + ".", width))
            continue
        if inner is not None:  # a list of mappings, or a mapping of names to mappings
            if container is list:
                kind, sub = "a list of mappings", f"{key}[]."
            else:
                kind, sub = "a mapping of names to mappings", f"{key}.<name>."
            lines.append(_entry(key, f"{kind}, each with the keys below", f, docs, width))
            lines.append(describe(inner, sub, width))
            continue
        lines.append(_entry(key, type_name(hint), f, docs, width))
    return "\n".join(line for line in lines if line)


def _dataclass_in(hint):
    for candidate in (hint, *typing.get_args(hint)):
        if dataclasses.is_dataclass(candidate):
            return candidate
        for inner in typing.get_args(candidate):
            if dataclasses.is_dataclass(inner):
                return inner
    return None


def _entry(key: str, kind: str, f: dataclasses.Field, docs: dict, width: int) -> str:
    if f.default is not _MISSING:
        default = f"default: {_yaml_value(f.default)}"
    elif f.default_factory is not _MISSING:
        default = f"default: {_yaml_value(f.default_factory())}"
    else:
        default = "required"
    doc = _wrap(docs.get(f.name, ""), width)
    return f"{key}  ({kind}; {default})" + ("\n" + doc if doc else "")


def _yaml_value(value) -> str:
    """A default as it would be written in YAML (true, null, [a, b], 2.0e-05)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _wrap(doc: str, width: int) -> str:
    return textwrap.fill(" ".join(doc.split()), width=width, initial_indent="    ", subsequent_indent="    ",
                         break_on_hyphens=False, break_long_words=False)
