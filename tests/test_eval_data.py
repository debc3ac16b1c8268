"""Evaluation data from local folders: the authors' release layouts (written by the ``releases`` fixture at the
row counts the authors document, with what sits beside the data) and Hub snapshots give the same rows; bad
folders and corrupt rows are reported by layout, file and line."""

import shutil
from pathlib import Path

import pytest

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.tasks.table import load_task_rows

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
# (task, language, release, Hub snapshot folder)
CASES = [
    ("xnli", "fr", "xnli", "xnli"), ("xnli", "zh", "xnli", "xnli"),
    ("xcopa", "zh", "xcopa", "xcopa"), ("xcopa", "id", "xcopa", "xcopa"),
    ("xstorycloze", "zh", "xstorycloze", "xstory_cloze"), ("xwinograd", "fr", "xwinograd", "xwinograd"),
    ("xwinograd", "fr", "xwinograd_tsv", "xwinograd"),
    ("anli_r1", "en", "anli", "anli"), ("anli_r2", "en", "anli", "anli"),
    ("anli_r3", "en", "anli", "anli"), ("cb", "en", "super_glue", "super_glue"),
    ("rte", "en", "super_glue", "super_glue"), ("copa", "en", "super_glue", "super_glue"),
    ("winogrande", "en", "winogrande", "winogrande"), ("storycloze", "en", "storycloze", "story_cloze_hub"),
]


@pytest.mark.parametrize("task,language,release,hub", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in CASES])
def test_release_and_hub_snapshot_layouts_give_the_same_rows(tmp_path, releases, task, language, release, hub):
    from_release = load_task_rows(task, language, str(releases[release]))
    from_hub = load_task_rows(task, language, str(FIXTURES / hub))
    bare = tmp_path / hub  # the same snapshot without README.md's configs: found by <config>/<split>-* names
    shutil.copytree(FIXTURES / hub, bare)
    (bare / "README.md").unlink()
    if hub == "xwinograd":  # the Hub repository is laid out as the release: a partial copy is counted and refused
        with pytest.raises(BloomzTuneError, match=r"test.jsonl: 2 rows for XWinograd fr .*authors document 83"):
            load_task_rows(task, language, str(bare))
        from_bare = from_hub
    else:
        from_bare = load_task_rows(task, language, str(bare))
    assert from_hub["rows"], task
    # the release holds the documented count; its first rows are the snapshot fixture's rows
    assert from_release["rows"][:len(from_hub["rows"])] == from_hub["rows"] == from_bare["rows"]
    assert from_release["skipped"] == from_hub["skipped"] == 0


def edited_copy(tmp_path, releases, release: str, file: str, edit) -> tuple[Path, Path]:
    """A copy of a release folder with ``file`` rewritten by ``edit(text)``: (folder, the file)."""
    folder = tmp_path / releases[release].name
    shutil.copytree(releases[release], folder)
    path = folder / file
    path.write_bytes(edit(path.read_text(encoding="utf-8")).encode("utf-8"))
    return folder, path


def test_release_labels_are_mapped_like_the_hub_copies(releases):
    def labels(task, release):
        return [r["label"] for r in load_task_rows(task, "en", str(releases[release]))["rows"]]
    assert labels("cb", "super_glue")[:6] == [0, 1, 2, 0, 1, 2]
    assert labels("rte", "super_glue")[:6] == [0, 1, 1] * 2
    assert labels("anli_r2", "anli")[:3] == [1, 2, 0]


def test_only_the_evaluated_split_is_read(tmp_path, releases):
    folder = tmp_path / "xcopa"
    shutil.copytree(releases["xcopa"], folder)
    (folder / "data" / "zh" / "test.zh.jsonl").write_text("{not json\n", encoding="utf-8")
    assert len(load_task_rows("xcopa", "zh", str(folder))["rows"]) == 100
    snapshot = tmp_path / "hub"
    shutil.copytree(FIXTURES / "xcopa", snapshot)
    (snapshot / "zh" / "test-00000-of-00001.parquet").write_bytes(b"corrupt")
    assert len(load_task_rows("xcopa", "zh", str(snapshot))["rows"]) == 3
    evaluated = next((snapshot / "zh").glob("validation-*.parquet"))
    evaluated.write_bytes(b"corrupt")  # the evaluated split's own file: a one-line error naming it
    with pytest.raises(BloomzTuneError, match=rf"{evaluated.name}: not a readable parquet file"):
        load_task_rows("xcopa", "zh", str(snapshot))


def test_corrupt_json_line_names_file_and_line(tmp_path, releases):
    folder = tmp_path / "xcopa"
    shutil.copytree(releases["xcopa"], folder)
    val = folder / "data" / "zh" / "val.zh.jsonl"
    lines = val.read_text(encoding="utf-8").splitlines()
    val.write_text("\n".join([lines[0], lines[1][:-5], lines[2]]) + "\n", encoding="utf-8")
    with pytest.raises(BloomzTuneError, match=rf"{val}:2: not valid JSON"):
        load_task_rows("xcopa", "zh", str(folder))


def test_bad_value_names_file_and_line(tmp_path, releases):
    folder, dev = edited_copy(tmp_path, releases, "anli", "R1/dev.jsonl",
                              lambda t: t.replace('"label": "n"', '"label": "x"', 1))
    with pytest.raises(BloomzTuneError, match=rf"{dev}:2: cannot read this row .*label 'x' is none of e, n, c"):
        load_task_rows("anli_r1", "en", str(folder))

    def short_row(text):
        lines = text.splitlines()
        lines[3] = "\t".join(lines[3].split("\t")[:5])
        return "\n".join(lines) + "\n"
    folder, tsv = edited_copy(tmp_path, releases, "xnli", "xnli.dev.tsv", short_row)
    with pytest.raises(BloomzTuneError, match=rf"{tsv}:4: expected 16 fields"):
        load_task_rows("xnli", "en", str(folder))


def test_a_row_that_does_not_normalise_names_its_place(tmp_path, releases):
    folder, test = edited_copy(tmp_path, releases, "xwinograd", "data/fr/test.jsonl", lambda t: t.replace(
        '"sentence": "Le', '"sentence": null, "x": "Le', 1).replace('"sentence": "Le', '"sentence": "Le', 1))
    with pytest.raises(BloomzTuneError, match=rf"{test}:1: not a valid XWinograd row \(AttributeError"):
        load_task_rows("xwinograd", "fr", str(folder))


def test_unrecognised_folder_lists_the_accepted_layouts_and_what_it_holds(tmp_path):
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "zh").mkdir()
    (tmp_path / "zh" / "dev.zh.csv").write_text("a,b\n", encoding="utf-8")
    with pytest.raises(BloomzTuneError) as err:
        load_task_rows("xcopa", "zh", str(tmp_path))
    message = str(err.value)
    assert "no XCOPA data for zh (split 'validation')" in message
    assert "XCOPA repository (a clone or its archive folder): data/<lang>/val.<lang>.jsonl" in message
    assert "Hub snapshot: README.md" in message
    assert "Found: notes.txt, zh/dev.zh.csv" in message and "name them with --languages" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BloomzTuneError, match=r"StoryCloze release: 'cloze_test_val__spring2016.*Found: no files"):
        load_task_rows("storycloze", "en", str(empty))


def test_winogrande_answers_from_its_labels_file(tmp_path, releases):
    folder, dev = edited_copy(tmp_path, releases, "winogrande", "dev.jsonl", lambda t: t.replace(
        ', "answer": "1"', "").replace(', "answer": "2"', ""))
    assert '"answer"' not in dev.read_text(encoding="utf-8")
    assert [r["label"] for r in load_task_rows("winogrande", "en", str(folder))["rows"]][:3] == [0, 1, 1]
    (folder / "dev-labels.lst").write_text("1\n", encoding="utf-8")
    with pytest.raises(BloomzTuneError, match=rf"{dev}:2: .*dev-labels.lst has only 1 labels"):
        load_task_rows("winogrande", "en", str(folder))


def test_xnli_tsv_keeps_quotes_as_text(tmp_path, releases):
    folder, _ = edited_copy(tmp_path, releases, "xnli", "xnli.dev.tsv", lambda t: t.replace(
        "The cat is sleeping", '"The cat" is sleeping'))
    assert load_task_rows("xnli", "en", str(folder))["rows"][0]["premise"] == '"The cat" is sleeping on the sofa.'


def test_card_without_the_config_lists_its_configs(tmp_path):
    shutil.copytree(FIXTURES / "xnli", tmp_path / "xnli")
    with pytest.raises(BloomzTuneError, match=r"README.md: no config 'de' for XNLI de; its configs: en, fr, zh"):
        load_task_rows("xnli", "de", str(tmp_path / "xnli"))
