"""Task table, language selection, prompt rendering and dataset loading from local folders in the Hub layout."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.tasks.kinds import PROMPTS
from bloomz_tune.tasks.table import (
    TASKS,
    Prompt,
    held_out_in_name,
    held_out_task,
    load_task_rows,
    prompts_for,
    resolve_tasks,
)

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
DATA_DIRS = {"xnli": "xnli", "xcopa": "xcopa", "xstorycloze": "xstory_cloze", "xwinograd": "xwinograd",
             "anli_r1": "anli", "anli_r2": "anli", "anli_r3": "anli", "cb": "super_glue", "rte": "super_glue",
             "copa": "super_glue", "winogrande": "winogrande", "storycloze": "story_cloze_hub"}


def data_dir(task):
    return str(FIXTURES / DATA_DIRS[task])


def test_default_plan_is_the_papers_language_sets():
    plan = resolve_tasks(None, None)
    assert list(plan) == ["xnli", "xcopa", "xstorycloze", "xwinograd"]
    assert len(plan["xnli"]) == 15 and len(plan["xcopa"]) == 11 and len(plan["xwinograd"]) == 6
    assert len(plan["xstorycloze"]) == 10 and "en" not in plan["xstorycloze"]
    assert resolve_tasks("all", None)["anli_r2"] == ["en"]
    assert list(resolve_tasks("xnli,anli", "en")) == ["xnli", "anli_r1", "anli_r2", "anli_r3"]


def test_languages_apply_to_the_tasks_that_have_them():
    plan = resolve_tasks("xnli,xcopa,xwinograd", "en,fr,zh")
    assert plan == {"xnli": ["en", "fr", "zh"], "xcopa": ["zh"], "xwinograd": ["en", "fr", "zh"]}


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(BloomzTuneError, match=r"unknown task 'xnly'.*xnli, xcopa"):
        resolve_tasks("xnli,xnly", None)


def test_unknown_language_lists_the_valid_ones():
    with pytest.raises(BloomzTuneError, match=r"unknown language\(s\) klingon.*valid languages: .*sw.*zh"):
        resolve_tasks("xnli,xcopa", "en,klingon")


def test_task_left_without_language_is_an_error():
    with pytest.raises(BloomzTuneError, match="task rte has none of the languages fr; it has: en"):
        resolve_tasks("xnli,rte", "fr")


def test_every_task_has_five_prompts_and_choices_for_each_label():
    for name, spec in TASKS.items():
        for language in spec.languages:
            prompts = prompts_for(name, language)
            assert len(prompts) >= 5
            assert len({p.name for p in prompts}) == len(prompts)
    for kind, n in [("nli3", 3), ("nli2", 2), ("copa", 2), ("story", 2), ("winograd", 2)]:
        assert all(len(p.choices) == n for p in PROMPTS[kind]["en"])
    with pytest.raises(BloomzTuneError, match="has 6 prompts"):
        prompts_for("xnli", "en", 7)


def test_rendered_prompts_match_hand_written_text():
    xnli = load_task_rows("xnli", "en", data_dir("xnli"))["rows"][1]
    example = prompts_for("xnli", "en")[0].render(xnli)
    assert example == {"prompt": "Premise: The cat is sleeping on the sofa.\nHypothesis: The sofa is red.\n"
                                 "Does the premise support the hypothesis? Answer yes, maybe or no.",
                       "choices": ["yes", "maybe", "no"], "label": 1}
    copa = load_task_rows("copa", "en", data_dir("copa"))["rows"][1]
    example = prompts_for("copa", "en")[0].render(copa)
    assert example == {"prompt": "I poured water on my sleeping friend so",
                       "choices": ["my friend awoke.", "my friend snored."], "label": 0}
    story = load_task_rows("xstorycloze", "zh", data_dir("xstorycloze"))["rows"][1]
    example = prompts_for("xstorycloze", "zh")[3].render(story)
    assert example["prompt"] == ("Here is the beginning of a short story: 安饿了。她打开冰箱。冰箱是空的。她去了商店。\n"
                                 "It goes on with one of these sentences.\n1. 她飞到了月球。\n2. 她买了面包和奶酪。\n"
                                 "The right one is number")
    assert example["choices"] == ["1", "2"] and example["label"] == 1
    wino = load_task_rows("xwinograd", "en", data_dir("xwinograd"))["rows"][2]
    example = prompts_for("xwinograd", "en")[4].render(wino)
    assert example == {"prompt": "In \"Joan thanked Susan for all the help _ had given.\", the _ most likely refers to",
                       "choices": ["Joan", "Susan"], "label": 1}


def test_no_rendered_prompt_ends_in_whitespace():
    for task, spec in TASKS.items():
        language = spec.default_languages[0] if task not in ("xnli", "xcopa", "xstorycloze") else \
            {"xnli": "fr", "xcopa": "zh", "xstorycloze": "zh"}[task]
        rows = load_task_rows(task, language, data_dir(task))["rows"]
        for prompt in prompts_for(task, language):
            for row in rows:
                example = prompt.render(row)
                assert example["prompt"] == example["prompt"].rstrip() and example["prompt"]
                assert all(c and c == c.strip() for c in example["choices"])
                assert 0 <= example["label"] < len(example["choices"])


def test_label_orders_are_mapped_to_the_canonical_one():
    # SuperGLUE CB stores 0 entailment, 1 contradiction, 2 neutral; XNLI 0 entailment, 1 neutral, 2 contradiction
    cb = [r["label"] for r in load_task_rows("cb", "en", data_dir("cb"))["rows"]]
    xnli = [r["label"] for r in load_task_rows("xnli", "en", data_dir("xnli"))["rows"]]
    assert cb == xnli == [0, 1, 2, 0, 1, 2]
    # StoryCloze's release CSV and XWinograd's "1"/"2" answers become 0-based indices
    assert [r["label"] for r in load_task_rows("storycloze", "en", data_dir("storycloze"))["rows"]] == [0, 1, 0]
    assert [r["label"] for r in load_task_rows("xwinograd", "en", data_dir("xwinograd"))["rows"]] == [0, 1, 1]
    anli = load_task_rows("anli_r3", "en", data_dir("anli_r3"))
    assert anli["split"] == "dev_r3" and [r["label"] for r in anli["rows"]] == [2, 0, 1]


def test_per_language_prompts_take_precedence(monkeypatch):
    french = [Prompt(f"fr{i}", "Prémisse : {premise}\nHypothèse : {hypothesis}\nRéponse :", ("oui", "peut-être", "non"))
              for i in range(5)]
    monkeypatch.setitem(PROMPTS["nli3"], "fr", french)
    assert prompts_for("xnli", "fr") == french
    assert prompts_for("xnli", "en")[0].name == "support"


def test_limit_and_unlabelled_rows(tmp_path):
    assert len(load_task_rows("xnli", "en", data_dir("xnli"), limit=2)["rows"]) == 2
    _write_repo(tmp_path, "rte", "validation", [{"premise": "A.", "hypothesis": "B.", "label": -1, "idx": 0}])
    with pytest.raises(BloomzTuneError, match="RTE en .* has no labelled rows"):
        load_task_rows("rte", "en", str(tmp_path))


def test_missing_column_is_named(tmp_path):
    _write_repo(tmp_path, "rte", "validation", [{"premise": "A.", "label": 0, "idx": 0}])
    with pytest.raises(BloomzTuneError, match=r"lacks column\(s\) hypothesis; it has: premise, label, idx"):
        load_task_rows("rte", "en", str(tmp_path))


def test_missing_split_is_named(tmp_path):
    _write_repo(tmp_path, "rte", "train", [{"premise": "A.", "hypothesis": "B.", "label": 0, "idx": 0}])
    with pytest.raises(BloomzTuneError, match="no split 'validation' for RTE en"):
        load_task_rows("rte", "en", str(tmp_path))


def test_missing_folder_and_manual_dataset(tmp_path):
    with pytest.raises(BloomzTuneError, match="does not exist"):
        load_task_rows("xnli", "en", str(tmp_path / "nowhere"))
    with pytest.raises(BloomzTuneError, match=r"StoryCloze needs a local data folder.*--data-dir storycloze=FOLDER"):
        load_task_rows("storycloze", "en")


def _write_repo(root, config, split, rows):
    (root / config).mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), root / config / f"{split}-00000-of-00001.parquet")
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n  - split: {split}\n"
                                    f"    path: {config}/{split}-*\n---\n", encoding="utf-8")


def test_xstorycloze_release_files_are_read(tmp_path):
    header = ["InputStoryid", "InputSentence1", "InputSentence2", "InputSentence3", "InputSentence4",
              "RandomFifthSentenceQuiz1", "RandomFifthSentenceQuiz2", "AnswerRightEnding"]
    row = ["a1", "汤姆想要一只狗。", "他每天都问父母。", "他们终于同意了。", "他们一起去了收容所。", "他讨厌狗。", "他选了一只小狗。", "2"]
    for lang in ("zh", "es"):
        (tmp_path / f"spring2016.val.{lang}.tsv.split_20_80_eval.tsv").write_text(
            "\t".join(header) + "\n" + ("\t".join(row) + "\n") * 1511, encoding="utf-8")  # the documented count
    (tmp_path / "spring2016.val.zh.tsv.split_20_80_train.tsv").write_text("\t".join(header) + "\n", encoding="utf-8")
    loaded = load_task_rows("xstorycloze", "zh", str(tmp_path))
    assert loaded["rows"] == [{"story": "汤姆想要一只狗。他每天都问父母。他们终于同意了。他们一起去了收容所。",
                               "ending1": "他讨厌狗。", "ending2": "他选了一只小狗。", "label": 1}] * 1511


def test_held_out_match_by_folder_and_config():
    assert held_out_task("/data/xnli").name == "xnli"                       # a local copy, by folder name
    assert held_out_task("data/paws-x", "fr", dataset="facebook/xnli").name == "xnli"
    assert held_out_task("super_glue", "cb").name == "cb"
    assert held_out_task("aps/super_glue", "wic") is None                  # a training task in xP3
    assert held_out_task("nyu-mll/glue", "rte").name == "rte"
    assert held_out_task("nyu-mll/glue", "mrpc") is None
    assert held_out_task("/data/story_cloze", "2016").name == "storycloze"


def test_held_out_match_by_file_name():
    assert held_out_in_name("XNLI-1.0/xnli.dev.tsv").name == "xnli"
    assert held_out_in_name("xp3_xnli_en_validation_GPT-3-style.jsonl").name == "xnli"
    assert held_out_in_name("anli_v1.0/R1/dev.jsonl").name.startswith("anli")
    assert held_out_in_name("xp3_super_glue_cb_None_validation.jsonl").name == "cb"
    assert held_out_in_name("xp3_Muennighoff_xwinograd_en_test.jsonl").name == "xwinograd"
    assert held_out_in_name("xstory_cloze_en.jsonl").name == "xstorycloze"
    assert held_out_in_name("xp3_super_glue_wic_None_train.jsonl") is None      # training tasks of xP3
    assert held_out_in_name("xp3_paws-x_en_train.jsonl") is None
    assert held_out_in_name("copa_translated.jsonl") is None                     # COPA only as SuperGLUE's config
