"""Each release read exactly as its authors ship it: the exact files of a (task, language, split), counted against
the rows the authors document, on release folders written in the real shape (``releases`` fixture: XCOPA's
data-gmt/ translations and CRLF lines, XStoryCloze's train files, archive folder names, READMEs, dataset.tsv)."""

import hashlib
import shutil
from pathlib import Path

import pytest

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.tasks.releases import XWINOGRAD_TSV_ROWS
from bloomz_tune.tasks.table import TASKS, load_task_rows

REPO = Path(__file__).resolve().parents[1]

# (task, language, release): every release layout, with languages that sit beside others in the same folder
LAYOUTS = [("xcopa", lang, "xcopa") for lang in ("zh", "id", "it", "qu")] + [
    ("xnli", lang, "xnli") for lang in ("en", "fr", "zh")] + [
    ("cb", "en", "super_glue"), ("rte", "en", "super_glue"), ("copa", "en", "super_glue"),
    ("anli_r1", "en", "anli"), ("anli_r2", "en", "anli"), ("anli_r3", "en", "anli"),
    ("winogrande", "en", "winogrande"), ("storycloze", "en", "storycloze")] + [
    ("xwinograd", lang, "xwinograd") for lang in ("en", "fr", "jp", "pt", "ru", "zh")] + [
    ("xwinograd", lang, "xwinograd_tsv") for lang in ("en", "fr", "jp", "pt", "ru", "zh")] + [
    ("xstorycloze", lang, "xstorycloze") for lang in ("ar", "en", "es", "eu", "hi", "id", "my", "ru", "sw", "te", "zh")]


def documented(task: str, language: str, release: str) -> int:
    counts = XWINOGRAD_TSV_ROWS if release == "xwinograd_tsv" else TASKS[task].documented_rows
    value = counts[TASKS[task].split]
    return value[language] if isinstance(value, dict) else value


@pytest.mark.parametrize("task,language,release", LAYOUTS, ids=[f"{t}-{lang}-{r}" for t, lang, r in LAYOUTS])
def test_each_layout_reads_the_documented_rows_from_one_file(releases, task, language, release):
    loaded = load_task_rows(task, language, str(releases[release]))
    assert len(loaded["rows"]) == documented(task, language, release)
    [file] = loaded["files"]
    path = releases[release] / file["path"]
    assert file["rows"] == len(loaded["rows"]) and file["size"] == path.stat().st_size
    assert file["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_xcopa_clone_never_reads_its_machine_translations(tmp_path, releases):
    clone = releases["xcopa"]
    assert (clone / "data-gmt" / "it" / "val.it.jsonl").is_file()  # beside the data, same names
    for folder in (clone, clone / "data", clone.parent):  # the clone, its data/ folder, the folder it unpacked into
        loaded = load_task_rows("xcopa", "it", str(folder))
        assert [f["path"] for f in loaded["files"]] == [str((clone / "data/it/val.it.jsonl").relative_to(folder))]
        assert not any("translated" in r["premise"] for r in loaded["rows"])
    with pytest.raises(BloomzTuneError, match=r"data-gmt/ holds English machine translations of XCOPA"):
        load_task_rows("xcopa", "it", str(clone / "data-gmt"))
    both = tmp_path / "downloads"  # two copies of the release side by side: refused, naming both
    shutil.copytree(clone, both / "xcopa-master")
    shutil.copytree(clone / "data", both / "xcopa" / "data")
    with pytest.raises(BloomzTuneError, match=r"two candidate files for XCOPA it .*xcopa-master/data/it/val.it.jsonl"
                                              r", xcopa/data/it/val.it.jsonl|two candidate .*xcopa/data/it/val.it.jsonl"
                                              r", xcopa-master/data/it/val.it.jsonl"):
        load_task_rows("xcopa", "it", str(both))


def test_a_count_other_than_the_documented_one_names_the_file(tmp_path, releases):
    folder = tmp_path / "xcopa-master"
    shutil.copytree(releases["xcopa"], folder)
    val = folder / "data" / "zh" / "val.zh.jsonl"
    val.write_bytes(b"".join(val.read_bytes().splitlines(keepends=True)[:-1]))
    with pytest.raises(BloomzTuneError, match=rf"{val}: 99 rows for XCOPA zh \(split 'validation'\), but its authors "
                                              r"document 100"):
        load_task_rows("xcopa", "zh", str(folder))
    assert len(load_task_rows("xcopa", "id", str(folder))["rows"]) == 100  # control: the untouched language


def test_xstorycloze_gives_each_language_its_own_eval_file_only(releases):
    folder = releases["xstorycloze"]
    assert len(list(folder.glob("*_train.tsv"))) == 11 and len(list(folder.glob("*_eval.tsv"))) == 11
    for language in ("en", "zh", "my"):
        loaded = load_task_rows("xstorycloze", language, str(folder))
        assert [f["path"] for f in loaded["files"]] == [f"spring2016.val.{language}.tsv.split_20_80_eval.tsv"]
        assert len(loaded["rows"]) == 1511
    with pytest.raises(BloomzTuneError, match=r"holds the XStoryCloze release, not StoryCloze's.*--tasks xstorycloze"):
        load_task_rows("storycloze", "en", str(folder))
    assert len(load_task_rows("storycloze", "en", str(releases["storycloze"]))["rows"]) == 1871


def test_xwinograd_dataset_tsv_equals_the_hub_repackaging_row_for_row(releases):
    for language in ("en", "fr", "jp", "pt", "ru"):
        tsv = load_task_rows("xwinograd", language, str(releases["xwinograd_tsv"]))["rows"]
        hub = load_task_rows("xwinograd", language, str(releases["xwinograd"]))["rows"]
        assert tsv == hub and len(tsv) == XWINOGRAD_TSV_ROWS["test"][language]
    tsv = load_task_rows("xwinograd", "zh", str(releases["xwinograd_tsv"]))["rows"]
    hub = load_task_rows("xwinograd", "zh", str(releases["xwinograd"]))["rows"]
    assert (len(tsv), len(hub)) == (16, 504) and tsv == hub[:16]  # the Hub copy adds 488 zh rows


def test_a_folder_with_both_xwinograd_layouts_is_refused(tmp_path, releases):
    folder = tmp_path / "both"
    shutil.copytree(releases["xwinograd"], folder)
    shutil.copy(releases["xwinograd_tsv"] / "dataset.tsv", folder / "dataset.tsv")
    with pytest.raises(BloomzTuneError, match=r"two candidate files for XWinograd fr .*data/fr/test.jsonl, dataset.tsv"):
        load_task_rows("xwinograd", "fr", str(folder))


def test_every_release_and_archive_name_is_refused_in_a_training_mixture(tmp_path, releases):
    """Each held-out task's folder and file names as its releases and archives ship them, and the release folders
    of the ``releases`` fixture themselves, are refused as training sources; ``include_held_out`` accepts them."""
    import yaml

    from bloomz_tune.errors import ConfigError
    from bloomz_tune.mixture.spec import load_mixture_spec
    from bloomz_tune.tasks.table import release_names

    template = str(REPO / "data_mixtures" / "templates" / "paws.yaml")
    cases = []  # (task, source)
    for task in TASKS.values():
        names = release_names(task)
        assert names, task.name
        for name in sorted(names):
            folder = tmp_path / "names" / str(len(cases))
            if name.endswith((".zip", ".tsv", ".csv", ".jsonl")):  # a file: read through data_files
                folder.mkdir(parents=True)
                (folder / name).write_text("{}\n")
                cases.append((task, {"path": "json", "data_files": str(folder / name)}))
            else:  # a folder holding a training file
                (folder / name).mkdir(parents=True)
                (folder / name / "train.jsonl").write_text("{}\n")
                cases.append((task, {"path": str(folder / name)}))
    shipped = {"rte": releases["super_glue"] / "RTE", "cb": releases["super_glue"] / "CB",
               "copa": releases["super_glue"] / "COPA", "xcopa": releases["xcopa"],
               "xnli": releases["xnli"].parent / "XNLI-MT-1.0", "xwinograd": releases["xwinograd_tsv"],
               "xstorycloze": releases["xstorycloze"], "winogrande": releases["winogrande"],
               "anli_r1": releases["anli"], "storycloze": releases["storycloze"]}
    cases += [(TASKS[name], {"path": str(folder)}) for name, folder in shipped.items()]
    assert {"RTE", "CB", "COPA", "XNLI-1.0", "XNLI-MT-1.0", "xcopa-master", "xcopa-main"} <= {
        Path(s.get("data_files") or s["path"]).name for _, s in cases}
    sources = [{**src, "language": "en", "task": "nli", "template_file": template, "label": f"s{i}"}
               for i, (_, src) in enumerate(cases)]
    spec = tmp_path / "held_out.yaml"
    spec.write_text(yaml.safe_dump({"name": "held_out", "sources": sources}), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_mixture_spec(spec)
    for i, (task, src) in enumerate(cases):
        problem = [p for p in err.value.problems if p.startswith(f"sources[{i}]: s{i} ")]
        assert len(problem) == 1 and "held-out evaluation dataset" in problem[0], (task.name, src)
    assert len(err.value.problems) == len(cases)
    spec.write_text(yaml.safe_dump({"name": "held_out", "include_held_out": True, "sources": sources}))
    assert len(load_mixture_spec(spec).sources) == len(cases)
    control = tmp_path / "control" / "paws-x-main"  # a training dataset's archive: not held out
    control.mkdir(parents=True)
    (control / "train.jsonl").write_text("{}\n")
    spec.write_text(yaml.safe_dump({"name": "ok", "sources": [{**sources[0], "path": str(control)}]}))
    assert len(load_mixture_spec(spec).sources) == 1
