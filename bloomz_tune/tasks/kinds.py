"""What each kind of held-out task means, in one object per kind: the columns its rows carry, how a row becomes
the fields our prompts use, the prompts themselves, the text columns that contamination compares (and the key
columns it matches whole, for examples too short for its n-grams), and the task name a model card gives it.
Adding a kind of task is one ``TaskKind`` here.

Kinds: ``nli3`` (premise, hypothesis; label 0 entailment, 1 neutral, 2 contradiction), ``nli2`` (label 0
entailment, 1 not entailment), ``copa`` (premise, two choices, cause or effect), ``story`` (four sentences, two
endings), ``winograd`` (a sentence with a blank, two options).

Prompts are ours: at least five per kind, English, applied to every language unless a language has its own list
in ``TaskKind.prompts[language]``. A prompt is a ``str.format`` template over the normalised fields of a row and
the choice texts (templates as well); the answer is the index of the right choice. Rendered prompts never end in
whitespace: the scorer puts a single space before each choice, as BLOOMZ did.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


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


def _nli(n: int):
    def normalize(row: dict, label_map: dict) -> tuple[dict, int | None]:
        label = row["label"]
        label = _answer_index(label_map.get(label, label), n)
        return {"premise": row["premise"].strip(), "hypothesis": row["hypothesis"].strip()}, label
    return normalize


def _copa(row: dict, label_map: dict) -> tuple[dict, int | None]:
    premise = row["premise"].strip()
    cause = row["question"].strip() == "cause"
    return {
        "premise": premise, "premise_open": premise[:-1] if premise[-1:] in ".。" else premise,
        "choice1": row["choice1"].strip(), "choice2": row["choice2"].strip(),
        "choice1_lc": _lower_first(row["choice1"].strip()), "choice2_lc": _lower_first(row["choice2"].strip()),
        "question": "cause" if cause else "effect", "connective": "because" if cause else "so",
        "asks": "What was the cause of this?" if cause else "What happened as a result?",
    }, _answer_index(row["label"], 2)


def _story(row: dict, label_map: dict) -> tuple[dict, int | None]:
    story = ""
    for i in range(1, 5):  # no space after a full-width stop (Chinese, Japanese)
        sentence = row[f"input_sentence_{i}"].strip()
        story += sentence if not story or story[-1] in "。！？" else " " + sentence
    fields = {"story": story, "ending1": row["sentence_quiz1"].strip(), "ending2": row["sentence_quiz2"].strip()}
    return fields, _answer_index(str(row["answer_right_ending"]), 2)


def _winograd(row: dict, label_map: dict) -> tuple[dict, int | None]:
    fields = {"sentence": row["sentence"].strip(), "option1": row["option1"].strip(), "option2": row["option2"].strip()}
    return fields, _answer_index(str(row["answer"]), 2)


@dataclass(frozen=True)
class TaskKind:
    """One kind of held-out task (see the module docstring)."""

    name: str
    columns: tuple[str, ...]  # the columns a row must carry (``normalize`` reads them)
    text_columns: tuple[str, ...]  # the example's own text, which contamination compares with training rows
    key_columns: tuple[str, ...]  # its distinguishing part (the first text columns), matched whole by contamination
    card_name: str  # the task name a model card's results give it
    normalize_fields: Callable[[dict, dict], tuple[dict, int | None]]
    prompts: dict[str, list[Prompt]]  # language -> prompts ("en" applies to every language without its own)

    def normalize(self, row: dict, label_map: dict | None = None) -> dict | None:
        """A dataset row -> the fields prompts use plus ``label`` (canonical index); None for an unlabelled row."""
        fields, label = self.normalize_fields(row, label_map or {})
        if label is None:
            return None
        return {**fields, "label": label}


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

NLI = ("premise", "hypothesis")
STORY = ("input_sentence_1", "input_sentence_2", "input_sentence_3", "input_sentence_4", "sentence_quiz1",
         "sentence_quiz2")
KINDS: dict[str, TaskKind] = {k.name: k for k in [
    TaskKind("nli3", (*NLI, "label"), NLI, ("premise",), "Natural language inference", _nli(3),
             {"en": [Prompt(name, text, three) for name, text, three, _ in _NLI]}),
    TaskKind("nli2", (*NLI, "label"), NLI, ("premise",), "Natural language inference", _nli(2),
             {"en": [Prompt(name, text, two) for name, text, _, two in _NLI]}),
    TaskKind("copa", ("premise", "choice1", "choice2", "question", "label"), ("premise", "choice1", "choice2"),
             ("premise",), "Sentence completion", _copa, {"en": [
        Prompt("connective", "{premise_open} {connective}", ("{choice1_lc}", "{choice2_lc}")),
        Prompt("likelier", "Premise: {premise}\nWhich is the more likely {question}?\nOption 1: {choice1}\n"
                           "Option 2: {choice2}\nAnswer:", ("{choice1}", "{choice2}")),
        Prompt("asks_list", "{premise} {asks}\n- {choice1}\n- {choice2}", ("{choice1}", "{choice2}")),
        Prompt("letters", "Situation: {premise}\nPick the more plausible {question} of this situation.\n"
                          "A: {choice1}\nB: {choice2}\nThe more plausible one is", ("A", "B")),
        Prompt("quoted", "\"{premise}\" Which of these is the likelier {question}: \"{choice1}\" or "
                         "\"{choice2}\"?", ("{choice1}", "{choice2}")),
    ]}),
    TaskKind("story", (*STORY, "answer_right_ending"), STORY, STORY[:4], "Sentence completion", _story, {"en": [
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
    ]}),
    TaskKind("winograd", ("sentence", "option1", "option2", "answer"), ("sentence", "option1", "option2"),
             ("sentence",), "Coreference resolution", _winograd, {"en": [
        Prompt("stands_for", "{sentence}\nIn the sentence above, what does the _ stand for?\n- {option1}\n"
                             "- {option2}", ("{option1}", "{option2}")),
        Prompt("fill_blank", "Fill in the blank: {sentence}\nOption 1: {option1}\nOption 2: {option2}\n"
                             "The blank is", ("{option1}", "{option2}")),
        Prompt("makes_sense", "{sentence}\nThe _ could be \"{option1}\" or \"{option2}\". Which one makes sense?",
               ("{option1}", "{option2}")),
        Prompt("underscore", "Sentence: {sentence}\nWhich belongs where the underscore is, {option1} or "
                             "{option2}?\nAnswer:", ("{option1}", "{option2}")),
        Prompt("refers", "In \"{sentence}\", the _ most likely refers to", ("{option1}", "{option2}")),
    ]}),
]}
PROMPTS = {name: kind.prompts for name, kind in KINDS.items()}  # the same lists, by kind


