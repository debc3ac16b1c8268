"""`bloomz-tune eval` end to end on the tiny BLOOM and fixture datasets; adapters; bad input leaves no results."""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from bloomz_tune.cli import evaluate as main
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation.scoring import loglikelihoods, rank_classify
from bloomz_tune.model.loading import load_for_eval
from bloomz_tune.tasks.table import load_task_rows, prompts_for

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
DATA = [f"xnli={FIXTURES / 'xnli'},xwinograd={FIXTURES / 'xwinograd'}", f"copa={FIXTURES / 'super_glue'}"]


def _args(model, out, *extra):
    args = [str(model), "--tasks", "xnli,xwinograd,copa", "--languages", "en,zh", "--limit", "3", "--prompts", "2",
            "--output", str(out), "--device", "cpu", "--dtype", "float32", "--batch-size", "4"]
    for d in DATA:
        args += ["--data-dir", d]
    return args + list(extra)


def test_cli_writes_results_that_match_direct_scoring(tiny_model_dir, tiny_model, tiny_tokenizer, tmp_path):
    out = tmp_path / "eval"
    assert main(_args(tiny_model_dir, out)) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert {t: list(r["languages"]) for t, r in results["tasks"].items()} == {
        "xnli": ["en", "zh"], "xwinograd": ["en", "zh"], "copa": ["en"]}
    for task, language, folder in [("xnli", "zh", "xnli"), ("copa", "en", "super_glue")]:
        rows = load_task_rows(task, language, str(FIXTURES / folder), limit=3)["rows"]
        entry = results["tasks"][task]["languages"][language]
        accuracies = []
        for prompt in prompts_for(task, language, 2):
            examples = [prompt.render(r) for r in rows]
            want = rank_classify(tiny_model, tiny_tokenizer, examples, progress=False, share_prompts=False)
            assert entry["prompts"][prompt.name] == {"accuracy": want["accuracy"], "correct": want["correct"],
                                                     "total": 3}
            accuracies.append(want["accuracy"])
        assert entry["median"] == pytest.approx(sum(accuracies) / 2) and entry["max"] == max(accuracies)
    assert results["datasets"]["xnli/en"]["split"] == "validation"
    assert results["settings"]["scoring"] == "packed"  # the CLI's scores above equal one row per request's
    [scored] = results["datasets"]["xnli/zh"]["files"]  # the file scored: path in the data folder, size, hash, rows
    path = FIXTURES / "xnli" / scored["path"]
    assert scored["path"] == "zh/validation-00000-of-00001.parquet" and scored["rows"] == 3
    assert (scored["size"], scored["sha256"]) == (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
    assert results["datasets"]["copa/en"]["files"][0]["path"] == "copa/validation-00000-of-00001.parquet"
    assert len(results["generation"]) == 6
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| XNLI | en | 3 |" in markdown and "| 34.38 | 44.62 |" in markdown  # published bloom(z)-560m
    assert "## Generation sanity check" in markdown and "Translate to English" in markdown
    assert f"| xnli/zh | {FIXTURES / 'xnli'} | zh/validation-00000-of-00001.parquet | {scored['size']:,} | " \
           f"`{scored['sha256']}` | 3 |" in markdown
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["accuracy.png", "results.json", "results.md"]


@pytest.mark.parametrize("extra, message", [
    (["--languages", "en,xx"], r"unknown language\(s\) xx"),
    (["--tasks", "xnli,superglue"], r"unknown task 'superglue'; valid tasks: xnli, xcopa"),
    (["--limit", "0"], "limit must be a positive number"),
    (["--prompts", "9"], "has 6 prompts"),
    (["--data-dir", "xnli"], "--data-dir expects TASK=FOLDER"),
    (["--data-dir", "xnli=/does/not/exist"], "data folder for xnli does not exist"),
])
def test_bad_input_fails_before_writing(tiny_model_dir, tmp_path, extra, message):
    out = tmp_path / "eval"
    with pytest.raises(BloomzTuneError, match=message):
        main(_args(tiny_model_dir, out, *extra))
    assert not out.exists() or not any(out.iterdir())


def test_folder_that_is_neither_model_nor_adapter(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(BloomzTuneError, match="neither a model folder .* nor a LoRA adapter folder"):
        load_for_eval(str(tmp_path))


def _save_adapter(model, folder):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["query_key_value"],
                                                  init_lora_weights=False))
    peft_model.save_pretrained(folder)
    return peft_model.eval()


def test_adapter_folder_loads_on_its_base_model(tiny_model_dir, tiny_model, tiny_tokenizer, tmp_path):
    requests = [("The movie was great. Sentiment:", "positive"), ("这部电影", "很好")]
    base_scores = loglikelihoods(tiny_model, tiny_tokenizer, requests, progress=False)
    peft_model = _save_adapter(tiny_model, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert Path(config["base_model_name_or_path"]) == Path(tiny_model_dir)
    want = loglikelihoods(peft_model, tiny_tokenizer, requests, progress=False)
    model, tokenizer = load_for_eval(str(tmp_path / "adapter"), dtype="float32", device="cpu")
    got = loglikelihoods(model, tokenizer, requests, progress=False)
    assert max(abs(a - b) for a, b in zip(got, want)) < 1e-5
    assert max(abs(a - b) for a, b in zip(got, base_scores)) > 1e-3  # the adapter is applied


def test_adapter_with_another_tokenizer_is_refused(tiny_model_dir, tiny_model, tmp_path):
    from bloomz_tune.model.tiny import build_tiny_tokenizer

    _save_adapter(tiny_model, tmp_path / "adapter")
    build_tiny_tokenizer(["completely different words for another vocabulary"] * 10,
                         vocab_size=300).save_pretrained(tmp_path / "adapter")
    with pytest.raises(BloomzTuneError, match="is not the tokenizer of its base model"):
        load_for_eval(str(tmp_path / "adapter"), dtype="float32", device="cpu")


def test_tokenizer_larger_than_the_model_is_refused(tiny_model_dir, tmp_path):
    from bloomz_tune.model.tiny import build_tiny_bloom

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    build_tiny_bloom(tokenizer, vocab_size=len(tokenizer) - 10).save_pretrained(folder)
    with pytest.raises(BloomzTuneError, match="does not belong to this model"):
        load_for_eval(str(folder), dtype="float32", device="cpu")


def test_python_api_evaluate_matches_the_command(tiny_model_dir, tiny_model, tiny_tokenizer, tmp_path):
    """bloomz_tune.evaluate: a folder (loaded with its tokenizer) or a loaded model gives the command's numbers."""
    import bloomz_tune

    assert main(_args(tiny_model_dir, tmp_path / "cli", "--no-generation")) == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text(encoding="utf-8"))["tasks"]
    data_dirs = {"xnli": str(FIXTURES / "xnli"), "xwinograd": str(FIXTURES / "xwinograd"),
                 "copa": str(FIXTURES / "super_glue")}
    options = dict(limit=3, prompts=2, batch_size=4, data_dirs=data_dirs, generation=False)
    by_path = bloomz_tune.evaluate(str(tiny_model_dir), tasks="xnli,xwinograd,copa", languages="en,zh",
                                   output_dir=tmp_path / "api", dtype="float32", device="cpu", **options)
    loaded = bloomz_tune.evaluate(tiny_model, tasks=["xnli", "xwinograd", "copa"], languages=["en", "zh"],
                                  tokenizer=tiny_tokenizer, **options)
    for results in (by_path["tasks"], loaded["tasks"]):
        assert {t: r["mean_of_medians"] for t, r in results.items()} == {
            t: r["mean_of_medians"] for t, r in cli.items()}
    assert (tmp_path / "api" / "results.md").is_file()
    with pytest.raises(BloomzTuneError, match="needs its tokenizer"):
        bloomz_tune.evaluate(tiny_model, tasks=["xnli"])
