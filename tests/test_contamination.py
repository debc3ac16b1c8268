"""`bloomz-tune mixture contamination`: evaluation examples that share a 13-token n-gram with training rows.

Small builds from local JSON-lines sources (the imdb fixture as clean data, plus rows written here that hold
evaluation text), evaluation data from the release folders the ``releases`` fixture writes (via --data-dir).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from bloomz_tune import cli
from bloomz_tune.mixture.builds import build_mixture, read_datasheet
from bloomz_tune.mixture.contamination import (
    build_index,
    contamination_report,
    load_eval_sets,
    normalized_tokens,
    scan,
    write_report,
)
from bloomz_tune.mixture.datasheet import CONTAMINATION_HEADING as HEADING
from bloomz_tune.tokens.counts import datasheet_for


def main(argv):
    """`bloomz-tune mixture ARGV`, as the command line runs it (exit code)."""
    return cli.main(["mixture", *argv])


REPO = Path(__file__).resolve().parents[1]
IMDB = REPO / "tests" / "fixtures" / "mixture" / "imdb"
TASKS, LANGUAGES = "xnli,xcopa,xstorycloze", "en,zh"
# The first XNLI en example (10 tokens: shorter than 13, so its whole text is its one gram) and the first
# XStoryCloze en story, as they are in the fixtures.
XNLI_EN = "The cat is sleeping on the sofa. An animal is resting."
STORY = "Tom wanted a dog. He asked his parents every day. They finally agreed. They went to the shelter together."


DIRS: dict[str, str] = {}  # task -> release folder, from the ``releases`` fixture


@pytest.fixture(autouse=True)
def release_dirs(releases):
    DIRS.update({task: str(releases[task]) for task in ("xnli", "xcopa", "xstorycloze")})


def build(tmp: Path, planted: dict[str, list[str]], name: str = "m") -> Path:
    """A mixture of the imdb fixture plus one source per ``planted`` entry: a folder of rows with those texts."""
    (tmp / "t.yaml").write_text(yaml.safe_dump({"templates": [
        {"name": "t", "input": "{{ text }}", "target": "{{ answer_choices[label] }}",
         "answer_choices": ["negative", "positive"]}]}))
    sources = [{"path": str(IMDB), "name": "plain_text", "language": "en", "task": "sentiment",
                "template_file": str(tmp / "t.yaml")}]
    for folder, texts in planted.items():
        (tmp / folder).mkdir()
        (tmp / folder / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in texts))
        sources.append({"path": str(tmp / folder), "language": "en", "task": "chat",
                        "template_file": str(tmp / "t.yaml")})
    spec = tmp / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({"name": name, "seed": 1, "validation_fraction": 0.0, "sources": sources}))
    return build_mixture(spec, tmp / name, progress=False)


def report_of(built: Path, **kw) -> dict:
    return contamination_report(built, TASKS, LANGUAGES, DIRS, progress=False, **kw)["datasets"]


def examples(key: str) -> int:
    return next(len(s.texts) for s in load_eval_sets(TASKS, LANGUAGES, DIRS) if s.key == key)


def test_planted_overlaps_are_found_and_attributed(tmp_path):
    built = build(tmp_path, {
        # the XNLI example with other case and punctuation, inside a prompt of its own
        "forum": ["PREMISE -- the CAT is sleeping, on the sofa!! An animal: is resting? Yes or no", "Nothing here."],
        # the XCOPA zh premise and first choice (each character a token: 17 in a row), twice
        "news": ["新闻：男人打破了他的脚趾。他把锤子掉在脚上了……", "男人打破了他的脚趾，他把锤子掉在脚上了"],
        # the story from its second sentence on, in capitals: 14 tokens in a row
        "stories": [STORY.upper().split(". ", 1)[1]],
    })
    found = report_of(built)
    xnli = found["xnli/en"]  # the whole example by its n-gram; its premise, shared by 3 examples, by the key rule
    assert (xnli["contaminated"], xnli["sources"]) == (3, {str(tmp_path / "forum"): {"examples": 3, "rows": 1}})
    assert xnli["by_rule"] == {"ngram": 1, "key": 3}
    assert xnli["share"] == 3 / examples("xnli/en") and 6 <= xnli["short_examples"] < xnli["examples"]
    copa = found["xcopa/zh"]
    assert (copa["contaminated"], copa["sources"]) == (1, {str(tmp_path / "news"): {"examples": 1, "rows": 2}})
    assert copa["share"] == 1 / examples("xcopa/zh") and copa["by_rule"] == {"ngram": 1, "key": 1}
    story = found["xstorycloze/en"]
    assert story["contaminated"] == 1 and list(story["sources"]) == [str(tmp_path / "stories")]
    assert found["xnli/zh"]["contaminated"] == found["xstorycloze/zh"]["contaminated"] == 0


def test_clean_data_and_short_overlaps_are_not_flagged(tmp_path):
    twelve = " ".join(STORY.replace(".", "").split()[:12])  # 12 tokens of a 29-token example
    xnli_part = XNLI_EN.split(".")[0].rsplit(" ", 1)[0]  # the premise but its last word
    built = build(tmp_path, {"near": [twelve, xnli_part, "男人打破了他的脚", "i coughed"]})
    found = report_of(built)
    assert [d["contaminated"] for d in found.values()] == [0] * len(found)
    assert all(d["sources"] == {} and d["share"] == 0 for d in found.values())
    assert report_of(built, n=12)["xstorycloze/en"]["contaminated"] == 1  # the same rows with 12-grams


def test_key_rule_finds_a_premise_planted_alone(tmp_path):
    premise = XNLI_EN.split(".")[0]  # 7 of the example's 10 tokens: never a 13-gram, nor the whole example
    built = build(tmp_path, {"alone": [f"Some text before. {premise.upper()}! And after it.", "男人打破了他的脚趾"]})
    found = report_of(built)
    assert found["xnli/en"]["by_rule"] == {"ngram": 0, "key": 3}  # the three examples sharing that premise
    assert found["xcopa/zh"]["by_rule"] == {"ngram": 0, "key": 1}  # 9 characters: 9 tokens
    assert found["xstorycloze/en"]["contaminated"] == 0
    (tmp_path / "short").mkdir()
    short = build(tmp_path / "short", {"alone": ["The cat is sleeping"]}, name="s")  # 4 tokens, no key of the set
    assert report_of(short)["xnli/en"]["contaminated"] == 0


def test_report_in_datasheet_and_show(tmp_path, capsys):
    built = build(tmp_path, {"forum": [XNLI_EN.upper()]})
    md_before = (built / "datasheet.md").read_text()
    argv = ["contamination", str(built), "--tasks", TASKS, "--languages", LANGUAGES] + \
        [x for task, folder in DIRS.items() for x in ("--data-dir", f"{task}={folder}")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    share = f"{300 / examples('xnli/en'):.2f}%"
    assert f"| XNLI | en | validation | {examples('xnli/en'):,} | 3 | {share} | 1 | 3 | {tmp_path / 'forum'}: 3 (1) |" \
        in printed
    sheet = read_datasheet(built)
    assert sheet["contamination"]["datasets"]["xnli/en"]["contaminated"] == 3
    assert sheet["contamination"]["ngram"] == 13 and sheet["contamination"]["training_rows"] > 0
    md = (built / "datasheet.md").read_text()
    assert md.startswith(md_before.rstrip("\n")) and md.count(HEADING) == 1
    assert main(argv + ["--ngram", "5"]) == 0  # a second report replaces the first
    md = (built / "datasheet.md").read_text()
    assert md.count(HEADING) == 1 and "5-token n-gram" in md and "13-token" not in md
    sheet = read_datasheet(built)["contamination"]
    assert sheet["ngram"] == 5 and sheet["datasets"]["xnli/en"]["by_rule"]["ngram"] > 1  # shorter grams: more
    capsys.readouterr()
    assert main(["show", str(built)]) == 0
    shown = capsys.readouterr().out
    assert f"{HEADING}\n\nEvaluation examples that share a 5-token n-gram" in shown
    assert f"| XNLI | en | validation | {examples('xnli/en'):,} | {sheet['datasets']['xnli/en']['contaminated']} |" in shown


def test_token_counts_keep_the_report(tmp_path):
    from bloomz_tune.model.tiny import build_tiny_tokenizer

    built = build(tmp_path, {"forum": [XNLI_EN]})
    write_report(built, contamination_report(built, "xnli", "en", DIRS, progress=False))
    datasheet_for(built, build_tiny_tokenizer([XNLI_EN], vocab_size=300))  # rewrites datasheet.md from the JSON
    md = (built / "datasheet.md").read_text()
    assert "input tokens" in md and md.count(HEADING) == 1 and f"{tmp_path / 'forum'}: 3 (1)" in md


def test_hash_scan_equals_plain_ngram_sets():
    """The hashed scan finds exactly the (row, example) pairs a plain Python set of token tuples finds,
    across row boundaries, repeated grams and short examples; and the same with worker processes."""
    from datasets import Dataset

    rng = random.Random(0)
    words = "a b c d e f g h".split()  # few words, so that many 4-grams are shared
    evals = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))) for _ in range(60)]
    rows = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(4200)]
    n = 4
    index, _ = build_index(evals, n)
    train = Dataset.from_dict({"inputs": rows, "targets": ["z"] * len(rows), "source": [f"s{i % 3}" for i in
                                                                                       range(len(rows))]})
    tokens = normalized_tokens(pa.array([r + "\nz" for r in rows])).to_pylist()
    expected = set()
    for e, ev in enumerate(normalized_tokens(pa.array(evals)).to_pylist()):
        grams = {tuple(ev[i:i + n]) for i in range(len(ev) - n + 1)} if len(ev) >= n else {tuple(ev)}
        for r, tok in enumerate(tokens):
            size = len(next(iter(grams)))
            if grams & {tuple(tok[i:i + size]) for i in range(len(tok) - size + 1)}:
                expected.add((r, e))
    assert 100 < len(expected) < 60 * 4200  # some pairs overlap, not all
    for num_proc in (1, 2):
        hits = scan(train, index, num_proc=num_proc, progress=False)
        assert set(zip(hits.column("row").to_pylist(), hits.column("example").to_pylist())) == expected
        assert all(s == f"s{r % 3}" for r, s in zip(hits.column("row").to_pylist(),
                                                    hits.column("source").to_pylist()))


@pytest.mark.parametrize("text, tokens", [
    ("The CAT, isn't here!!", ["the", "cat", "isn", "t", "here"]),
    ("男人打破了脚趾。", ["男", "人", "打", "破", "了", "脚", "趾"]),
    ("  \n...  ", []),
    ("a\u3000b\u00a0c\u2003d", ["a", "b", "c", "d"]),  # Unicode spaces separate tokens too
])
def test_normalisation(text, tokens):
    from bloomz_tune.mixture.contamination import _flat

    flat, offsets = _flat(normalized_tokens(pa.array([text])))
    assert flat.to_pylist() == tokens and list(offsets) == [0, len(tokens)]
