"""The held-out evaluation tasks of BLOOMZ: where each dataset lives, which split and languages, our prompts.

One table (``TASKS``) names every dataset: a moved dataset is one edit here. The same table says what a
training mixture may not contain (``held_out_task``; docs/bloomz.md §1.3). Splits and language sets follow
the BLOOMZ evaluation (t-zero ``evaluation/run_eval.py`` as run for the paper): validation for XNLI, XCOPA,
XStoryCloze, StoryCloze, SuperGLUE and WinoGrande, ANLI dev_r1..dev_r3, XWinograd test. The default languages
of each task are the ones the paper averages over (so the mean of medians is comparable to the published one).

A dataset reference is a Hub id (read through ``datasets.load_dataset(path, config, split=...)``) or a local
folder holding the authors' release files or a snapshot of the Hub repository (``releases`` lists the layouts
and detects them). StoryCloze is not freely downloadable: it needs a local folder (``--data-dir
storycloze=DIR``) holding the 2016 validation CSV from the StoryCloze website or the same rows as parquet/JSON.

What each kind of task means (its columns, prompts, row normalisation, contamination text, card name) is in
``kinds``; this table names the datasets and says which kind each is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.tasks.kinds import KINDS, Prompt, TaskKind
from bloomz_tune.tasks.releases import file_record, hub_rows, local_data


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation dataset: where it lives, its split, its languages and how its rows read."""

    name: str  # the key users type: --tasks xnli
    title: str  # as papers print it
    kind: str  # its kind (``kinds.KINDS``): nli3, nli2, copa, story, winograd
    path: str | None  # Hub id; None when only a manual folder works
    split: str
    configs: dict[str, str | None]  # language -> dataset config name (None: the default config)
    default_languages: tuple[str, ...]
    manual: str | None = None  # how to get the data when it is not on the Hub
    label_map: dict = field(default_factory=dict)  # dataset label -> canonical answer index
    aliases: tuple[str, ...] = ()  # other Hub ids / folder names of the same data; "id:config" for one config
    shared_repo: bool = False  # the repository holds other datasets too: only this task's configs are held out
    documented_rows: dict = field(default_factory=dict)  # split -> rows (or {language: rows}) its authors document
    release_names: tuple[str, ...] = ()  # folder and file names its releases and archives ship under
    revision: str | None = None  # Hub revision read (None: main); --data-revision TASK=REV reads another

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.configs)

    @property
    def task_kind(self) -> TaskKind:
        return KINDS[self.kind]

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns its rows must carry (its kind's)."""
        return KINDS[self.kind].columns


XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
XSTORY_LANGS = ("ar", "en", "es", "eu", "hi", "id", "my", "ru", "sw", "te", "zh")
XWINO_LANGS = ("en", "fr", "jp", "pt", "ru", "zh")
STORY_MANUAL = ("StoryCloze is distributed by its authors on request (https://cs.rochester.edu/nlp/rocstories/): "
                "put the files in a folder and pass --data-dir {name}=FOLDER")

TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    # XNLI labels: 0 entailment, 1 neutral, 2 contradiction (canonical order).
    TaskSpec("xnli", "XNLI", "nli3", "facebook/xnli", "validation", {lang: lang for lang in XNLI_LANGS},
             XNLI_LANGS, documented_rows={"validation": 2490, "test": 5010},
             release_names=("XNLI-1.0", "XNLI-MT-1.0", "xnli.dev.tsv")),
    TaskSpec("xcopa", "XCOPA", "copa", "cambridgeltl/xcopa", "validation", {lang: lang for lang in XCOPA_LANGS},
             XCOPA_LANGS, documented_rows={"validation": 100, "test": 500}, release_names=("xcopa",)),
    # The paper's 10 XStoryCloze languages leave English out (it is StoryCloze); ask for it with --languages en.
    TaskSpec("xstorycloze", "XStoryCloze", "story", "juletxara/xstory_cloze", "eval",
             {lang: lang for lang in XSTORY_LANGS}, tuple(x for x in XSTORY_LANGS if x != "en"),
             manual=STORY_MANUAL, documented_rows={"eval": 1511, "train": 360},
             release_names=("xstorycloze", "xstorycloze.zip", "spring2016.val.en.tsv.split_20_80_train.tsv")),
    TaskSpec("xwinograd", "XWinograd", "winograd", "Muennighoff/xwinograd", "test",
             {lang: lang for lang in XWINO_LANGS}, XWINO_LANGS, aliases=("yandex-research/crosslingual_winograd",),
             documented_rows={"test": {"en": 2325, "fr": 83, "jp": 959, "pt": 263, "ru": 315, "zh": 504}},
             release_names=("crosslingual_winograd",)),
    # ANLI's three rounds are three datasets in the paper's tables; --tasks anli runs all three.
    *[TaskSpec(f"anli_r{r}", f"ANLI R{r}", "nli3", "facebook/anli", f"dev_r{r}", {"en": None}, ("en",),
               documented_rows={f"dev_r{r}": 1200 if r == 3 else 1000}, release_names=("anli_v1.0", "anli_v1.0.zip"))
      for r in (1, 2, 3)],
    # SuperGLUE CB labels: 0 entailment, 1 contradiction, 2 neutral.
    TaskSpec("cb", "CB", "nli3", "aps/super_glue", "validation", {"en": "cb"}, ("en",),
             label_map={0: 0, 1: 2, 2: 1}, aliases=("super_glue",), shared_repo=True,
             documented_rows={"validation": 56, "train": 250, "test": 250}, release_names=("CB", "CB.zip")),
    # SuperGLUE's RTE is GLUE's RTE.
    TaskSpec("rte", "RTE", "nli2", "aps/super_glue", "validation", {"en": "rte"}, ("en",),
             aliases=("super_glue", "nyu-mll/glue:rte", "glue:rte"), shared_repo=True,
             documented_rows={"validation": 277, "train": 2490, "test": 3000}, release_names=("RTE", "RTE.zip")),
    TaskSpec("copa", "COPA", "copa", "aps/super_glue", "validation", {"en": "copa"}, ("en",),
             aliases=("super_glue",), shared_repo=True,
             documented_rows={"validation": 100, "train": 400, "test": 500}, release_names=("COPA", "COPA.zip")),
    TaskSpec("winogrande", "WinoGrande", "winograd", "allenai/winogrande", "validation", {"en": "winogrande_xl"},
             ("en",), documented_rows={"validation": 1267},
             release_names=("winogrande_1.1", "winogrande_1.1.zip")),
    TaskSpec("storycloze", "StoryCloze", "story", None, "validation", {"en": "2016"}, ("en",),
             manual=STORY_MANUAL, aliases=("LSDSem/story_cloze",), documented_rows={"validation": 1871, "test": 1871},
             release_names=("cloze_test_val__spring2016 - cloze_test_ALL_val.csv",
                            "cloze_test_test__spring2016 - cloze_test_ALL_test.csv")),
]}

# The four multilingual tasks that the BLOOMZ paper's main figure reports.
MULTILINGUAL_TASKS = ("xnli", "xcopa", "xstorycloze", "xwinograd")
# Names that stand for several tasks.
TASK_GROUPS = {"all": tuple(TASKS), "anli": ("anli_r1", "anli_r2", "anli_r3")}


def held_out_task(path: str, config: str | None = None, dataset: str | None = None) -> TaskSpec | None:
    """The evaluation task whose data a mixture source reads, if any: matched by Hub id, alias or a local
    folder's name (``path``, or ``dataset``, the Hub id a folder mirrors), and by config where the repository
    also holds other datasets (SuperGLUE's cb, rte and copa are held out, its wic is not)."""
    names = {str(path).rstrip("/").lower(), Path(str(path).rstrip("/")).name.lower()}
    if dataset:
        names |= {dataset.lower(), dataset.lower().split("/")[-1]}
    for task in TASKS.values():
        for ident, configs in _held_out_refs(task):
            if ident in names and (configs is None or (config or "").lower() in configs):
                return task
    return None


def held_out_in_name(name: str) -> TaskSpec | None:
    """The evaluation task a data file's or folder's name shows, if any: a folder or file of the path named as the
    task's releases ship (``release_names``, e.g. SuperGLUE's ``RTE/``, ``XNLI-1.0/``) or as an archive of its
    repository unpacks (``<repo>-main/``, ``<repo>-master/``), or a held-out Hub id's last part as whole words of
    the name (``xnli.dev.tsv``, ``xp3_xnli_en_validation.jsonl``, ``anli_v1.0``), followed by the config where the
    repository also holds other datasets (``super_glue_cb``, not ``super_glue_wic``)."""
    parts = [part for part in re.split(r"[/\\]", str(name)) if part]
    for task in TASKS.values():
        if any(part in release_names(task) for part in parts):
            return task
    text = f" {name_words(name)} "
    for task in TASKS.values():
        for ident, configs in _held_out_refs(task):
            for config in sorted(configs) if configs is not None else [""]:
                if f" {name_words(ident)} {name_words(config)} ".replace("  ", " ") in text:
                    return task
    return None


ARCHIVE_BRANCHES = ("main", "master")  # a GitHub or Hub archive of <repo> unpacks into <repo>-<branch>/


def release_names(task: TaskSpec) -> set[str]:
    """Folder and file names the task's data ships under: its ``release_names`` as shipped, and the archive folders
    of its repositories (``<repo>-main``, ``<repo>-master``; not for a repository shared with other datasets)."""
    names = set(task.release_names)
    if not task.shared_repo:
        repos = {ref.partition(":")[0].split("/")[-1] for ref in ((task.path,) if task.path else ()) + task.aliases}
        names |= {f"{repo}-{branch}" for repo in repos for branch in ARCHIVE_BRANCHES}
    return names


def name_words(text: str) -> str:
    """Lower-case words of ``text`` separated by single spaces (file names split on _ - . / and the like)."""
    return " ".join(w for w in re.split(r"[^0-9a-z]+", text.lower()) if w)


def _held_out_refs(task: TaskSpec) -> list[tuple[str, frozenset[str] | None]]:
    """(name, the configs held out under it or None for all) for the task's Hub id and aliases."""
    own = frozenset(c.lower() for c in task.configs.values() if c) if task.shared_repo else None
    refs = []
    for ref in ((task.path,) if task.path else ()) + task.aliases:
        ident, _, config = ref.lower().partition(":")
        for name in {ident, ident.split("/")[-1]}:
            refs.append((name, frozenset({config}) if config else own))
    return refs


def prompts_for(task: str, language: str, k: int | None = None) -> list[Prompt]:
    """The first ``k`` prompts of ``task`` for ``language`` (its own list if it has one, else English)."""
    spec = TASKS[task]
    family = KINDS[spec.kind].prompts
    prompts = family.get(language, family["en"])
    if k is not None:
        if k < 1 or k > len(prompts):
            raise BloomzTuneError(f"{spec.title} has {len(prompts)} prompts for {language!r}; asked for {k}")
        prompts = prompts[:k]
    return prompts


def resolve_tasks(tasks: list[str] | str | None, languages: list[str] | str | None) -> dict[str, list[str]]:
    """Checked task names and languages -> {task: [languages to run]}.

    ``tasks`` None means the four multilingual tasks; "all" means every task, "anli" its three rounds.
    ``languages`` None means each task's default languages; otherwise each task runs the given languages it
    has, and it is an error when a language belongs to no selected task or a task is left with none.
    """
    tasks = [name for t in (_split(tasks) or MULTILINGUAL_TASKS) for name in TASK_GROUPS.get(t, (t,))]
    problems = [f"unknown task {t!r}; valid tasks: {', '.join(TASKS)} (or {' or '.join(TASK_GROUPS)})"
                for t in tasks if t not in TASKS]
    if problems:
        raise BloomzTuneError("; ".join(problems))
    languages = _split(languages)
    if not languages:
        return {t: list(TASKS[t].default_languages) for t in dict.fromkeys(tasks)}
    valid = sorted({lang for t in tasks for lang in TASKS[t].languages})
    unknown = [lang for lang in languages if lang not in valid]
    if unknown:
        raise BloomzTuneError(f"unknown language(s) {', '.join(unknown)} for tasks {', '.join(tasks)}; "
                              f"valid languages: {', '.join(valid)}")
    plan = {}
    for t in dict.fromkeys(tasks):
        chosen = [lang for lang in languages if lang in TASKS[t].languages]
        if not chosen:
            raise BloomzTuneError(f"task {t} has none of the languages {', '.join(languages)}; "
                                  f"it has: {', '.join(TASKS[t].languages)}")
        plan[t] = chosen
    return plan


def parse_data_dirs(values: list[str]) -> dict[str, str]:
    """``--data-dir`` values (``TASK=FOLDER``, repeated or comma-separated) -> {task: folder}."""
    dirs = {}
    for value in values:
        for item in value.split(","):
            task, sep, folder = item.partition("=")
            if not sep or not task.strip() or not folder.strip():
                raise BloomzTuneError(f"--data-dir expects TASK=FOLDER, got {item!r}")
            dirs[task.strip()] = folder.strip()
    return dirs


def parse_task_values(values: list[str], option: str = "--data-revision", what: str = "REV") -> dict[str, str]:
    """``TASK=VALUE`` options (repeated or comma-separated) -> {task: value}; a group ("anli") stands for its tasks
    and an unknown task fails."""
    out = {}
    for value in values:
        for item in value.split(","):
            task, sep, given = item.partition("=")
            if not sep or not task.strip() or not given.strip():
                raise BloomzTuneError(f"{option} expects TASK={what}, got {item!r}")
            for name in TASK_GROUPS.get(task.strip(), (task.strip(),)):
                if name not in TASKS:
                    raise BloomzTuneError(f"{option}: unknown task {name!r}; valid tasks: {', '.join(TASKS)}")
                out[name] = given.strip()
    return out


def task_data_dirs(data_dirs: dict | None) -> dict[str, str]:
    """{task or group: folder} -> {task: folder}, a group ("anli") standing for its tasks; an unknown task fails."""
    dirs = {name: folder for key, folder in (data_dirs or {}).items()
            for name in (TASK_GROUPS.get(key, (key,)) if key != "all" else (key,))}
    unknown = [t for t in dirs if t not in TASKS]
    if unknown:
        raise BloomzTuneError(f"data folder given for unknown task(s) {', '.join(unknown)}; "
                              f"valid tasks: {', '.join(TASKS)}")
    return dirs


def _split(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v and v.strip()]


# Published median accuracy over prompts (percent), English prompts: docs/bloomz.md §5, from the BLOOMZ paper
# and the xmtf result tables.
PUBLISHED_MODELS = ("bloom-560m", "bloomz-560m")
PUBLISHED = {
    ("xnli", "en"): (34.38, 44.62), ("xnli", "fr"): (33.82, 44.22), ("xnli", "zh"): (35.06, 43.94),
    ("xcopa", "zh"): (51.00, 55.00), ("xstorycloze", "zh"): (49.83, 54.53),
    ("xwinograd", "en"): (50.62, 50.24), ("xwinograd", "fr"): (46.99, 49.40), ("xwinograd", "zh"): (49.21, 54.17),
}
# Mean of medians over the paper's languages (xmtf plotstables), for bloom-560m and the BLOOMZ sizes.
PUBLISHED_MEAN_MODELS = ("bloom-560m", "bloomz-560m", "bloomz-1b1", "bloomz-1b7", "bloomz-3b", "bloomz-7b1",
                         "bloomz")
PUBLISHED_MEAN = {
    "xnli": (33.74, 39.61, 37.54, 43.09, 44.30, 46.75, 52.01),
    "xcopa": (53.00, 51.36, 52.18, 54.27, 57.36, 57.64, 64.36),
    "xstorycloze": (49.75, 52.02, 51.46, 62.63, 70.02, 73.43, 82.68),
    "xwinograd": (49.99, 50.97, 51.11, 51.32, 52.42, 54.95, 63.39),
}


# ---- loading ---------------------------------------------------------------------------------------------------
def load_task_rows(task: str, language: str, data_dir: str | None = None, limit: int | None = None,
                   revision: str | None = None) -> dict:
    """Load one (task, language) and normalise its rows: from ``data_dir`` in any layout ``releases`` knows
    (the authors' release files or a Hub snapshot), else from the Hub at ``revision`` (default: the table's).

    Returns {"rows": [normalised rows], "skipped": unlabelled rows dropped, "source": where it came from,
    "split": the split, "config", "files": for a local folder, each file read (``releases.file_record``: path
    relative to the folder, size, sha256, rows used)}. Raises BloomzTuneError naming the missing folder, config,
    split, column, or the file and line of a corrupt row.
    """
    from itertools import islice

    spec = TASKS[task]
    if revision is not None:
        spec = replace(spec, revision=revision)
    where = data_dir or spec.path
    if where is None:
        raise BloomzTuneError(f"{spec.title} needs a local data folder. " + spec.manual.format(name=task))
    local = local_data(data_dir, spec, language) if data_dir is not None else None
    located = iter(local.rows) if local is not None else hub_rows(spec, language)
    rows, skipped, used = [], 0, [0] * len(local.files if local else [])
    for number, (at, raw) in enumerate(islice(located, limit)):
        missing = [c for c in spec.columns if c not in raw]
        if missing:
            raise BloomzTuneError(f"{at} ({spec.title} {language}, split {spec.split!r}) lacks column(s) "
                                  f"{', '.join(missing)}; it has: {', '.join(raw)}")
        try:
            row = spec.task_kind.normalize(raw, spec.label_map)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise BloomzTuneError(f"{at}: not a valid {spec.title} row ({type(err).__name__}: {err})") from err
        if row is None:
            skipped += 1
        else:
            rows.append(row)
            if local is not None:
                used[local.file_of_row[number]] += 1
    if not rows:
        after = f" after --limit {limit}" if limit is not None else ""
        raise BloomzTuneError(f"{spec.title} {language} ({where}, split {spec.split!r}) has no labelled rows{after}")
    files = [file_record(local.folder, f, n) for f, n in zip(local.files, used)] if local is not None else []
    return {"rows": rows, "skipped": skipped, "source": str(where), "split": spec.split,
            "config": spec.configs[language], "files": files}
