"""The held-out evaluation tasks of BLOOMZ: where each dataset lives, which split and languages, our prompts.

One table (``TASKS``) names every dataset: a moved dataset is one edit here. The same table says what a
training mixture may not contain (``held_out_task``; docs/bloomz.md §1.3). Splits and language sets follow
the BLOOMZ evaluation (t-zero ``evaluation/run_eval.py`` as run for the paper): validation for XNLI, XCOPA,
XStoryCloze, StoryCloze, SuperGLUE and WinoGrande, ANLI dev_r1..dev_r3, XWinograd test. The default languages
of each task are the ones the paper averages over (so the mean of medians is comparable to the published one).

A dataset reference is a Hub id (read through ``datasets.load_dataset(path, config, split=...)``) or a local
folder holding the authors' release files or a snapshot of the Hub repository (``eval_data`` lists the layouts
and detects them). StoryCloze is not freely downloadable: it needs a local folder (``--data-dir
storycloze=DIR``) holding the 2016 validation CSV from the StoryCloze website or the same rows as parquet/JSON.

Prompts are ours: at least five per dataset, English, applied to every language unless a language has its own
list in ``PROMPTS[kind][language]``. A prompt is a ``str.format`` template over the normalised fields of a row
(see ``normalize_row``) and the choice texts (templates as well); the answer is the index of the right choice.
Rendered prompts never end in whitespace: the scorer puts a single space before each choice, as BLOOMZ did.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.tasks.releases import hub_rows, local_rows


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation dataset: where it lives, its split, its languages and how its rows read."""

    name: str  # the key users type: --tasks xnli
    title: str  # as papers print it
    kind: str  # which prompt family applies: nli3, nli2, copa, story, winograd
    path: str | None  # Hub id; None when only a manual folder works
    split: str
    configs: dict[str, str | None]  # language -> dataset config name (None: the default config)
    default_languages: tuple[str, ...]
    columns: tuple[str, ...]  # the columns normalize_row reads
    manual: str | None = None  # how to get the data when it is not on the Hub
    label_map: dict = field(default_factory=dict)  # dataset label -> canonical answer index
    aliases: tuple[str, ...] = ()  # other Hub ids / folder names of the same data; "id:config" for one config
    shared_repo: bool = False  # the repository holds other datasets too: only this task's configs are held out

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.configs)


XNLI_LANGS = ("ar", "bg", "de", "el", "en", "es", "fr", "hi", "ru", "sw", "th", "tr", "ur", "vi", "zh")
XCOPA_LANGS = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
XSTORY_LANGS = ("ar", "en", "es", "eu", "hi", "id", "my", "ru", "sw", "te", "zh")
XWINO_LANGS = ("en", "fr", "jp", "pt", "ru", "zh")
NLI_COLUMNS = ("premise", "hypothesis", "label")
COPA_COLUMNS = ("premise", "choice1", "choice2", "question", "label")
STORY_COLUMNS = ("input_sentence_1", "input_sentence_2", "input_sentence_3", "input_sentence_4",
                 "sentence_quiz1", "sentence_quiz2", "answer_right_ending")
WINO_COLUMNS = ("sentence", "option1", "option2", "answer")
STORY_MANUAL = ("StoryCloze is distributed by its authors on request (https://cs.rochester.edu/nlp/rocstories/): "
                "put the files in a folder and pass --data-dir {name}=FOLDER")

TASKS: dict[str, TaskSpec] = {t.name: t for t in [
    # XNLI labels: 0 entailment, 1 neutral, 2 contradiction (canonical order).
    TaskSpec("xnli", "XNLI", "nli3", "facebook/xnli", "validation", {lang: lang for lang in XNLI_LANGS},
             XNLI_LANGS, NLI_COLUMNS),
    TaskSpec("xcopa", "XCOPA", "copa", "cambridgeltl/xcopa", "validation", {lang: lang for lang in XCOPA_LANGS},
             XCOPA_LANGS, COPA_COLUMNS),
    # The paper's 10 XStoryCloze languages leave English out (it is StoryCloze); ask for it with --languages en.
    TaskSpec("xstorycloze", "XStoryCloze", "story", "juletxara/xstory_cloze", "eval",
             {lang: lang for lang in XSTORY_LANGS}, tuple(x for x in XSTORY_LANGS if x != "en"), STORY_COLUMNS,
             manual=STORY_MANUAL),
    TaskSpec("xwinograd", "XWinograd", "winograd", "Muennighoff/xwinograd", "test",
             {lang: lang for lang in XWINO_LANGS}, XWINO_LANGS, WINO_COLUMNS),
    # ANLI's three rounds are three datasets in the paper's tables; --tasks anli runs all three.
    *[TaskSpec(f"anli_r{r}", f"ANLI R{r}", "nli3", "facebook/anli", f"dev_r{r}", {"en": None}, ("en",),
               NLI_COLUMNS) for r in (1, 2, 3)],
    # SuperGLUE CB labels: 0 entailment, 1 contradiction, 2 neutral.
    TaskSpec("cb", "CB", "nli3", "aps/super_glue", "validation", {"en": "cb"}, ("en",), NLI_COLUMNS,
             label_map={0: 0, 1: 2, 2: 1}, aliases=("super_glue",), shared_repo=True),
    # SuperGLUE's RTE is GLUE's RTE.
    TaskSpec("rte", "RTE", "nli2", "aps/super_glue", "validation", {"en": "rte"}, ("en",), NLI_COLUMNS,
             aliases=("super_glue", "nyu-mll/glue:rte", "glue:rte"), shared_repo=True),
    TaskSpec("copa", "COPA", "copa", "aps/super_glue", "validation", {"en": "copa"}, ("en",), COPA_COLUMNS,
             aliases=("super_glue",), shared_repo=True),
    TaskSpec("winogrande", "WinoGrande", "winograd", "allenai/winogrande", "validation", {"en": "winogrande_xl"},
             ("en",), WINO_COLUMNS),
    TaskSpec("storycloze", "StoryCloze", "story", None, "validation", {"en": "2016"}, ("en",), STORY_COLUMNS,
             manual=STORY_MANUAL, aliases=("LSDSem/story_cloze",)),
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
    """The evaluation task a data file's or folder's name shows, if any: a held-out Hub id's last part as whole
    words of the name (``xnli.dev.tsv``, ``xp3_xnli_en_validation.jsonl``, ``XNLI-1.0``, ``anli_v1.0``), followed
    by the config where the repository also holds other datasets (``super_glue_cb``, not ``super_glue_wic``)."""
    text = f" {name_words(name)} "
    for task in TASKS.values():
        for ident, configs in _held_out_refs(task):
            for config in sorted(configs) if configs is not None else [""]:
                if f" {name_words(ident)} {name_words(config)} ".replace("  ", " ") in text:
                    return task
    return None


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


def _answer_index(value, n: int) -> int | None:
    """A 0-based label, or a 1-based "1"/"2" answer string, -> index; None when unlabelled or out of range."""
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
        value = int(value) - 1
    if value is None or not 0 <= int(value) < n:
        return None
    return int(value)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() or len(text) == 1 else text


def normalize_row(kind: str, row: dict, label_map: dict | None = None) -> dict | None:
    """A dataset row -> the fields prompts use plus ``label`` (canonical index); None for an unlabelled row.

    nli3: premise, hypothesis; label 0 entailment, 1 neutral, 2 contradiction.
    nli2: premise, hypothesis; label 0 entailment, 1 not entailment.
    copa: premise, premise_open (final period dropped), choice1, choice2 and their lower-cased-first forms
          choice1_lc, choice2_lc, question ("cause"/"effect"), connective ("because"/"so"), asks (a question).
    story: story (the four sentences), ending1, ending2.
    winograd: sentence (with its "_" blank), option1, option2.
    """
    label_map = label_map or {}
    if kind in ("nli3", "nli2"):
        label = row["label"]
        label = label_map.get(label, label)
        label = _answer_index(label, 3 if kind == "nli3" else 2)
        fields = {"premise": row["premise"].strip(), "hypothesis": row["hypothesis"].strip()}
    elif kind == "copa":
        label = _answer_index(row["label"], 2)
        premise = row["premise"].strip()
        cause = row["question"].strip() == "cause"
        fields = {
            "premise": premise, "premise_open": premise[:-1] if premise[-1:] in ".。" else premise,
            "choice1": row["choice1"].strip(), "choice2": row["choice2"].strip(),
            "choice1_lc": _lower_first(row["choice1"].strip()), "choice2_lc": _lower_first(row["choice2"].strip()),
            "question": "cause" if cause else "effect", "connective": "because" if cause else "so",
            "asks": "What was the cause of this?" if cause else "What happened as a result?",
        }
    elif kind == "story":
        label = _answer_index(str(row["answer_right_ending"]), 2)
        story = ""
        for i in range(1, 5):  # no space after a full-width stop (Chinese, Japanese)
            sentence = row[f"input_sentence_{i}"].strip()
            story += sentence if not story or story[-1] in "。！？" else " " + sentence
        fields = {"story": story, "ending1": row["sentence_quiz1"].strip(), "ending2": row["sentence_quiz2"].strip()}
    elif kind == "winograd":
        label = _answer_index(str(row["answer"]), 2)
        fields = {"sentence": row["sentence"].strip(), "option1": row["option1"].strip(),
                  "option2": row["option2"].strip()}
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    if label is None:
        return None
    fields["label"] = label
    return fields


@dataclass(frozen=True)
class Prompt:
    """A prompt: ``template`` and each of ``choices`` are ``str.format`` templates over a normalised row."""

    name: str
    template: str
    choices: tuple[str, ...]

    def render(self, fields: dict) -> dict:
        """-> {prompt, choices, label}: the example that ``rank_classify`` scores."""
        return {"prompt": self.template.format(**fields).rstrip(),
                "choices": [c.format(**fields).strip() for c in self.choices], "label": fields["label"]}


_NLI = [
    ("support", "Premise: {premise}\nHypothesis: {hypothesis}\nDoes the premise support the hypothesis? "
                "Answer yes, maybe or no.", ("yes", "maybe", "no"), ("yes", "no")),
    ("true_false", "{premise}\nJudging only from the text above, is this statement true, false, or impossible to "
                   "tell? {hypothesis}", ("True", "Impossible to tell", "False"), ("True", "False")),
    ("claim", "Read the passage, then judge the claim.\nPassage: {premise}\nClaim: {hypothesis}\nThe claim is",
     ("correct", "undetermined", "incorrect"), ("correct", "incorrect")),
    ("suppose", "Suppose this is true: \"{premise}\" Is the following then also true: \"{hypothesis}\"?",
     ("Yes", "Perhaps", "No"), ("Yes", "No")),
    ("relation", "Sentence A: {premise}\nSentence B: {hypothesis}\nThe relation of B to A is",
     ("entailment", "neutral", "contradiction"), ("entailment", "not entailment")),
    ("follows", "{premise}\nQuestion: does it follow that \"{hypothesis}\"?", ("It does", "Cannot say", "It does not"),
     ("It does", "It does not")),
]

PROMPTS: dict[str, dict[str, list[Prompt]]] = {
    "nli3": {"en": [Prompt(name, text, three) for name, text, three, _ in _NLI]},
    "nli2": {"en": [Prompt(name, text, two) for name, text, _, two in _NLI]},
    "copa": {"en": [
        Prompt("connective", "{premise_open} {connective}", ("{choice1_lc}", "{choice2_lc}")),
        Prompt("likelier", "Premise: {premise}\nWhich is the more likely {question}?\nOption 1: {choice1}\n"
                           "Option 2: {choice2}\nAnswer:", ("{choice1}", "{choice2}")),
        Prompt("asks_list", "{premise} {asks}\n- {choice1}\n- {choice2}", ("{choice1}", "{choice2}")),
        Prompt("letters", "Situation: {premise}\nPick the more plausible {question} of this situation.\n"
                          "A: {choice1}\nB: {choice2}\nThe more plausible one is", ("A", "B")),
        Prompt("quoted", "\"{premise}\" Which of these is the likelier {question}: \"{choice1}\" or "
                         "\"{choice2}\"?", ("{choice1}", "{choice2}")),
    ]},
    "story": {"en": [
        Prompt("continue", "{story}", ("{ending1}", "{ending2}")),
        Prompt("sensible_end", "Story: {story}\nWhat is the most sensible way for this story to end?\n"
                               "- {ending1}\n- {ending2}\nEnding:", ("{ending1}", "{ending2}")),
        Prompt("finishes", "{story}\nWhich sentence finishes the story best: \"{ending1}\" or \"{ending2}\"?",
               ("{ending1}", "{ending2}")),
        Prompt("numbered", "Here is the beginning of a short story: {story}\nIt goes on with one of these "
                           "sentences.\n1. {ending1}\n2. {ending2}\nThe right one is number", ("1", "2")),
        Prompt("last_sentence", "Read four sentences of a story and choose its last sentence.\n{story}\n"
                                "Option 1: {ending1}\nOption 2: {ending2}\nLast sentence:",
               ("{ending1}", "{ending2}")),
    ]},
    "winograd": {"en": [
        Prompt("stands_for", "{sentence}\nIn the sentence above, what does the _ stand for?\n- {option1}\n"
                             "- {option2}", ("{option1}", "{option2}")),
        Prompt("fill_blank", "Fill in the blank: {sentence}\nOption 1: {option1}\nOption 2: {option2}\n"
                             "The blank is", ("{option1}", "{option2}")),
        Prompt("makes_sense", "{sentence}\nThe _ could be \"{option1}\" or \"{option2}\". Which one makes sense?",
               ("{option1}", "{option2}")),
        Prompt("underscore", "Sentence: {sentence}\nWhich belongs where the underscore is, {option1} or "
                             "{option2}?\nAnswer:", ("{option1}", "{option2}")),
        Prompt("refers", "In \"{sentence}\", the _ most likely refers to", ("{option1}", "{option2}")),
    ]},
}


def prompts_for(task: str, language: str, k: int | None = None) -> list[Prompt]:
    """The first ``k`` prompts of ``task`` for ``language`` (its own list if it has one, else English)."""
    spec = TASKS[task]
    family = PROMPTS[spec.kind]
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
def load_task_rows(task: str, language: str, data_dir: str | None = None, limit: int | None = None) -> dict:
    """Load one (task, language) and normalise its rows: from ``data_dir`` in any layout ``eval_data`` knows
    (the authors' release files or a Hub snapshot), else from the Hub.

    Returns {"rows": [normalised rows], "skipped": unlabelled rows dropped, "source": where it came from,
    "split": the split}. Raises BloomzTuneError naming the missing folder, config, split, column, or the file and
    line of a corrupt row.
    """
    from itertools import islice

    spec = TASKS[task]
    where = data_dir or spec.path
    if where is None:
        raise BloomzTuneError(f"{spec.title} needs a local data folder. " + spec.manual.format(name=task))
    located = local_rows(data_dir, spec, language) if data_dir is not None else hub_rows(spec, language)
    rows, skipped = [], 0
    for at, raw in islice(located, limit):
        missing = [c for c in spec.columns if c not in raw]
        if missing:
            raise BloomzTuneError(f"{at} ({spec.title} {language}, split {spec.split!r}) lacks column(s) "
                                  f"{', '.join(missing)}; it has: {', '.join(raw)}")
        try:
            row = normalize_row(spec.kind, raw, spec.label_map)
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            raise BloomzTuneError(f"{at}: not a valid {spec.title} row ({type(err).__name__}: {err})") from err
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    if not rows:
        after = f" after --limit {limit}" if limit is not None else ""
        raise BloomzTuneError(f"{spec.title} {language} ({where}, split {spec.split!r}) has no labelled rows{after}")
    return {"rows": rows, "skipped": skipped, "source": str(where), "split": spec.split,
            "config": spec.configs[language]}
