"""The catalogue of bad input: each case is refused with exit code 2, one clear message, no traceback, and
nothing written. One table, so the count is visible: add a row for every new refusal."""

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

from bloomz_tune.cli import main
from bloomz_tune.storage import folder_digests
from bloomz_tune.training.runstate import write_stages

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data_mixtures" / "demo.yaml"
TINY = ROOT / "recipes" / "tiny_demo.yaml"
FIXTURES = ROOT / "tests" / "fixtures"
READ_ONLY = "/proc/1"  # exists on every Linux machine and takes no new files, even for root


def train(tmp, *extra, recipe=TINY):
    return ["train", str(recipe), f"output_dir={tmp / 'run'}", f"data.mixture_cache={tmp / 'mix'}",
            f"data.mixture={DEMO}", *extra]


def model_folder(tmp, tiny_dir, change):
    """A copy of the tiny model folder with one thing wrong; train it as the recipe's model."""
    folder = tmp / "model"
    shutil.copytree(tiny_dir, folder)
    change(folder)
    return train(tmp, "model.tiny=null", f"model.name_or_path={folder}")


def edit_config(**values):
    def change(folder):
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **values}))
    return change


def remove(*patterns):
    def change(folder):
        for pattern in patterns:
            for p in folder.glob(pattern):
                p.unlink()
    return change


def truncate(name, fraction):
    def change(folder):
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * fraction)])
    return change


def pickle_weights(folder):
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")


def make_file(path: Path, text: str | bytes = "x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return path


def spec(tmp, template_input, extra_source="", language="en", **top):
    """A one-source mixture spec over fixture imdb rows, with one template; returns `mixture build` argv."""
    (tmp / "t.yaml").write_text(json.dumps({"templates": [
        {"name": "t", "input": template_input, "target": "{{ answer_choices[label] }}",
         "answer_choices": ["negative", "positive"]}]}))
    source = f"{{path: {FIXTURES / 'mixture' / 'imdb'}, name: plain_text, language: {language}, task: sentiment, " \
             f"template_file: t.yaml{extra_source}}}"
    lines = ["name: bad", f"sources: [{source}]", *(f"{k}: {v}" for k, v in top.items())]
    (tmp / "spec.yaml").write_text("\n".join(lines) + "\n")
    return ["mixture", "build", str(tmp / "spec.yaml"), "--output", str(tmp / "built"), "--cache", str(tmp / "c")]


def adapter_folder(tmp, tiny_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp / "adapter"
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir), LoraConfig(target_modules=["dense"]))
    model.save_pretrained(folder)
    (folder / "adapter_model.safetensors").rename(folder / "adapter_model.bin")
    return ["eval", str(folder), "--tasks", "xcopa", "--languages", "zh", "--data-dir",
            f"xcopa={FIXTURES / 'eval' / 'xcopa'}", "--output", str(tmp / "eval")]


def xcopa_release(tmp):
    """The XCOPA release as cloned (tests/fixtures/eval/make_fixtures.py writes it at its documented size)."""
    import importlib.util

    folder = tmp / "releases" / "xcopa-master"
    if not folder.is_dir():
        path = FIXTURES / "eval" / "make_fixtures.py"
        spec = importlib.util.spec_from_file_location("make_fixtures", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.write_releases(tmp / "releases")
    return folder


def corrupt_xcopa(tmp):
    """The XCOPA release as cloned, with line 2 of the Chinese validation file cut short."""
    folder = tmp / "xcopa"
    shutil.copytree(xcopa_release(tmp), folder)
    val = folder / "data" / "zh" / "val.zh.jsonl"
    lines = val.read_text(encoding="utf-8").splitlines()
    val.write_text("\n".join([lines[0], lines[1][:20], *lines[2:]]) + "\n", encoding="utf-8")
    return folder


def held_out_files(tmp):
    """A `path: json` source over files named like xP3all's XNLI files."""
    data = make_file(tmp / "files" / "xnli_en_validation_prompt1.jsonl", '{"text": "a", "label": 0}\n')
    return _json_spec(tmp, data)


def _json_spec(tmp, data):
    argv = spec(tmp, "{{ text }}")
    text = (tmp / "spec.yaml").read_text().replace(f"path: {FIXTURES / 'mixture' / 'imdb'}, name: plain_text",
                                                   f"path: json, data_files: {data}")
    (tmp / "spec.yaml").write_text(text)
    return argv


def hub_source(tmp, path: str, command: str = "build"):
    """The one-source spec with its source read from the Hub id ``path``; `mixture build` or `mixture check`."""
    argv = spec(tmp, "{{ text }}")
    text = (tmp / "spec.yaml").read_text().replace(f"path: {FIXTURES / 'mixture' / 'imdb'}", f"path: {path}")
    (tmp / "spec.yaml").write_text(text)
    return argv if command == "build" else ["mixture", "check", str(tmp / "spec.yaml"), "--online"]


def source_files(tmp, content: str | bytes):
    """A spec whose source folder holds one JSON-lines file with ``content``."""
    make_file(tmp / "rows" / "train.jsonl", content)
    argv = spec(tmp, "{{ text }}")
    text = (tmp / "spec.yaml").read_text().replace(f"path: {FIXTURES / 'mixture' / 'imdb'}, name: plain_text",
                                                   f"path: {tmp / 'rows'}")
    (tmp / "spec.yaml").write_text(text)
    return argv


def release_spec(tmp, fmt: str, folder, language: str, **extra):
    """A one-source mixture spec over a published release's files (tests/fixtures/mixture/releases)."""
    folder = folder if Path(folder).is_absolute() else FIXTURES / "mixture" / "releases" / folder
    source = {"path": str(folder), "format": fmt, "language": language, "task": fmt, "splits": "all", **extra}
    (tmp / "spec.yaml").write_text(json.dumps({"name": "bad", "sources": [source]}))
    return ["mixture", "build", str(tmp / "spec.yaml"), "--output", str(tmp / "built"), "--cache", str(tmp / "c")]


def corrupt_release(tmp):
    """xP3 files by language, with line 2 of an English file cut short."""
    shutil.copytree(FIXTURES / "mixture" / "releases" / "xP3", tmp / "xP3")
    bad = tmp / "xP3" / "en" / "xp3_ag_news_None_train_classify_question_first.jsonl"
    lines = bad.read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([lines[0], lines[1][:25], *lines[2:]]) + "\n", encoding="utf-8")
    return release_spec(tmp, "xp3", tmp / "xP3", "en")


def contamination(tmp, *extra, build=True):
    """`mixture contamination` of a one-source build (made here when ``build``) against the XCOPA zh fixture."""
    if build and main(spec(tmp, "{{ text }}")) != 0:
        raise AssertionError("the fixture mixture did not build")
    return ["mixture", "contamination", str(tmp / "built"), "--tasks", "xcopa", "--languages", "zh", "--data-dir",
            f"xcopa={xcopa_release(tmp)}", *extra]


def finished_run(tmp):
    make_file(tmp / "run" / "final" / "adapter_model.safetensors")
    (tmp / "run" / "recipe.resolved.yaml").write_text("output_dir: x\n")
    make_file(tmp / "run" / "eval" / "results.json", "{}")
    write_stages(tmp / "run", {"final": folder_digests(tmp / "run" / "final"), "finished": True})
    return train(tmp)


def locked_run(tmp):
    (tmp / "run").mkdir()
    (tmp / "run" / ".bloomz_tune.lock").write_text(json.dumps(
        {"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))  # a live process holds it
    return train(tmp)


def write(name, content: bytes):
    def make(tmp):
        (tmp / name).write_bytes(content)
        return ["train", str(tmp / name)]
    return make


ALIAS_BOMB = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n".encode() for i in range(8))


# (case, argv maker: (tmp, tiny_model_dir) -> argv, words the message must contain)
CASES = [
    # where a run writes
    ("output_dir is a file", lambda t, m: train(t, f"output_dir={make_file(t / 'f')}"),
     ["output_dir", "is a file"]),
    ("output_dir read-only", lambda t, m: train(t, f"output_dir={READ_ONLY}/run"), ["output_dir", "not writable"]),
    ("mixture cache read-only", lambda t, m: train(t, f"data.mixture_cache={READ_ONLY}/mix"),
     ["data.mixture_cache", "not writable"]),
    ("finished run dir", lambda t, m: finished_run(t), ["already holds a finished run", "overwrite_output_dir"]),
    ("run dir in use", lambda t, m: locked_run(t), ["in use by another run", f"pid {os.getpid()}"]),
    ("output_dir holds user files", lambda t, m: make_file(t / "run" / "thesis.tex") and train(t),
     ["not a bloomz_tune run", "thesis.tex"]),
    ("overwrite a folder of user files", lambda t, m: make_file(t / "run" / "thesis.tex") and train(
        t, "overwrite_output_dir=true"), ["not a bloomz_tune run", "overwrite_output_dir replaces only"]),
    ("output_dir is the model folder", lambda t, m: model_folder(t, m, lambda f: None) + [
        f"output_dir={t / 'model'}", "overwrite_output_dir=true"], ["output_dir", "is model.name_or_path"]),
    ("output_dir holds the model folder", lambda t, m: model_folder(t, m, lambda f: None) + [f"output_dir={t}"],
     ["output_dir", "holds model.name_or_path", "which the run reads"]),
    ("output_dir holds the mixture cache", lambda t, m: train(t, f"output_dir={t}"), ["holds data.mixture_cache"]),
    pytest.param("flex attention on a CPU", lambda t, m: train(t, "model.attention=flex"),
                 ["flex attention needs a GPU"], marks=pytest.mark.skipif(
                     __import__("torch").cuda.is_available(), reason="with a GPU, flex trains")),
    ("resume, no checkpoint", lambda t, m: train(t, "training.resume_from_checkpoint=true"),
     ["resume_from_checkpoint", "no complete checkpoint"]),
    ("resume, bad path", lambda t, m: train(t, f"training.resume_from_checkpoint={t / 'nope'}"),
     ["resume_from_checkpoint", "no checkpoint folder"]),
    # the recipe file
    ("recipe missing", lambda t, m: ["train", str(t / "nope.yaml")], ["does not exist"]),
    ("recipe is a folder", lambda t, m: ["train", str(t)], ["is a folder"]),
    ("recipe empty", lambda t, m: write("r.yaml", b"")(t), ["the file is empty"]),
    ("recipe not UTF-8", lambda t, m: write("r.yaml", b"output_dir: caf\xe9\n")(t), ["not UTF-8"]),
    ("recipe bad YAML", lambda t, m: write("r.yaml", b"training: [a\n")(t), ["not valid YAML", "line 2"]),
    ("recipe duplicate key", lambda t, m: write("r.yaml", b"lora: {r: 4}\nlora: {r: 8}\n")(t),
     ["appears twice", "line 1"]),
    ("recipe top level a list", lambda t, m: write("r.yaml", b"- a\n")(t), ["must be a mapping"]),
    ("unknown key", lambda t, m: train(t, "traning.max_steps=3"), ["traning: unknown key; did you mean 'training'"]),
    ("override not key=value", lambda t, m: train(t, "training.max_steps"), ["not of the form key=value"]),
    ("wrong type", lambda t, m: train(t, "training.max_steps=ten"), ["training.max_steps: expected int"]),
    ("impossible value", lambda t, m: train(t, "lora.r=0"), ["lora.r: must be > 0"]),
    ("value not allowed", lambda t, m: train(t, "model.attention=eager"), ["model.attention", "not one of"]),
    ("packing with stock attention", lambda t, m: train(t, "data.packing=true", "model.attention=stock"),
     ["data.packing", "stock attention"]),
    ("flex with attention dropout", lambda t, m: train(t, "model.attention=flex", "model.attention_dropout=0.1"),
     ["flex attention has no dropout"]),
    ("push without repo id", lambda t, m: train(t, "hub.push_to_hub=true"), ["hub.repo_id"]),
    ("seed beyond 2**32 - 1", lambda t, m: train(t, "training.seed=4294967296"), ["training.seed", "<= 4294967295"]),
    ("estimate on 0 GPUs", lambda t, m: ["estimate", str(TINY), "--gpus", "0"], ["--gpus must be at least 1"]),
    ("estimate with MFU 7", lambda t, m: ["estimate", str(TINY), "--mfu", "7"], ["--mfu", "at most 1"]),
    ("estimate with MFU 0", lambda t, m: ["estimate", str(TINY), "--mfu", "0"], ["--mfu", "above 0"]),
    ("eval batch size 0", lambda t, m: ["eval", str(m), "--batch-size", "0", "--output", str(t / "e")],
     ["--batch-size must be at least 1"]),
    ("eval max length 1", lambda t, m: ["eval", str(m), "--max-length", "1", "--output", str(t / "e")],
     ["--max-length at least 8"]),
    pytest.param("eval on CUDA without a GPU", lambda t, m: ["eval", str(m), "--device", "cuda", "--output",
                                                              str(t / "e")], ["no CUDA GPU"],
                 marks=pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has one")),
    ("tiny heads do not divide", lambda t, m: train(t, "model.tiny.n_head=3"), ["not divisible by n_head"]),
    # the model
    ("model path missing", lambda t, m: train(t, "model.tiny=null", f"model.name_or_path={t / 'models' / 'x'}"),
     ["no folder", "not a Hub id"]),
    ("model path is a file", lambda t, m: train(t, "model.tiny=null", f"model.name_or_path={make_file(t / 'f')}"),
     ["is a file"]),
    ("model folder without config", lambda t, m: model_folder(t, m, remove("config.json")), ["no config.json"]),
    ("model not BLOOM", lambda t, m: model_folder(t, m, edit_config(model_type="gpt2")), ["'gpt2' model"]),
    ("model needs remote code", lambda t, m: model_folder(t, m, edit_config(
        auto_map={"AutoModelForCausalLM": "modeling_x.X"})), ["trust_remote_code"]),
    ("model weights pickled", lambda t, m: model_folder(t, m, pickle_weights), ["no safetensors", "pickled"]),
    ("model weights cut short", lambda t, m: model_folder(t, m, truncate("model.safetensors", 0.5)),
     ["model.safetensors is not a whole safetensors file"]),
    ("model weights empty", lambda t, m: model_folder(t, m, truncate("model.safetensors", 0)),
     ["model.safetensors is not a whole safetensors file"]),
    ("model config says another vocabulary", lambda t, m: model_folder(t, m, edit_config(vocab_size=100)),
     ["word_embeddings.weight is [", "vocab_size 100 x hidden_size 64"]),
    ("model config says more layers", lambda t, m: model_folder(t, m, edit_config(n_layer=3)),
     ["the weights hold 2 layers", "n_layer 3"]),
    ("model tokenizer garbage", lambda t, m: model_folder(t, m, lambda f: (f / "tokenizer.json").write_text("{x")),
     ["cannot load a tokenizer"]),
    ("model without tokenizer", lambda t, m: model_folder(t, m, remove("tokenizer*")), ["no tokenizer"]),
    ("LoRA targets match nothing", lambda t, m: train(t, "lora.target_modules=[qkv]"),
     ["lora.target_modules", "'qkv' matches no module", "query_key_value"]),
    ("LoRA saved module matches nothing", lambda t, m: train(t, "lora.modules_to_save=[embed_tokens]"),
     ["lora.modules_to_save", "'embed_tokens'"]),
    # evaluation
    ("eval data folder missing", lambda t, m: train(t, "eval.tasks=[xcopa]", f"eval.data_dirs={{xcopa: {t / 'x'}}}"),
     ["xcopa", "does not exist"]),
    ("generate a billion tokens", lambda t, m: ["generate", str(m), "hi", "--max-new-tokens", "1000000000"],
     ["--max-new-tokens", "between 1 and 2,048"]),
    ("eval output read-only", lambda t, m: ["eval", str(m), "--output", f"{READ_ONLY}/e"], ["--output", "not writable"]),
    ("merge output read-only", lambda t, m: ["merge", str(t), "--output", f"{READ_ONLY}/m"],
     ["--output", "not writable"]),
    ("mixture build output read-only", lambda t, m: spec(t, "{{ text }}")[:3] + ["--output", f"{READ_ONLY}/b"],
     ["--output", "not writable"]),
    ("eval unknown task", lambda t, m: ["eval", str(m), "--tasks", "nope", "--output", str(t / "e")], ["nope"]),
    ("eval without a model", lambda t, m: ["eval", "--tasks", "xcopa"], ["eval needs MODEL and --output", "--check"]),
    ("eval data revision not TASK=REV", lambda t, m: ["eval", "--check", "--data-revision", "xcopa"],
     ["--data-revision expects TASK=REV", "'xcopa'"]),
    ("eval check, dataset not reachable", lambda t, m: ["eval", "--check", "--online", "--tasks", "xcopa"],
     ["1 task(s) would not load"]),
    ("eval model path missing", lambda t, m: ["eval", str(t / "runs" / "final"), "--tasks", "xcopa", "--languages",
                                              "zh", "--data-dir", f"xcopa={FIXTURES / 'eval' / 'xcopa'}",
                                              "--output", str(t / "e")],
     ["no folder", "not a Hub id"]),
    ("eval pickled adapter", lambda t, m: adapter_folder(t, m), ["adapter_model.safetensors", "pickled"]),
    ("eval corrupt row", lambda t, m: ["eval", str(m), "--tasks", "xcopa", "--languages", "zh", "--data-dir",
                                       f"xcopa={corrupt_xcopa(t)}", "--output", str(t / "e")],
     ["val.zh.jsonl:2"]),
    # trackers and sharing
    ("report_to unknown", lambda t, m: train(t, "training.report_to=[nope]"), ["unknown tracker 'nope'"]),
    ("report_to not installed", lambda t, m: train(t, "training.report_to=[wandb]"), ["wandb", "not installed"]),
    ("push: no such run dir", lambda t, m: ["push", str(t / "nope"), "--repo-id", "me/x"], ["no run directory"]),
    ("push: not a run dir", lambda t, m: ["push", str(t), "--repo-id", "me/x"], ["not a run directory"]),
    # mixtures and templates
    ("spec held-out data files", lambda t, m: held_out_files(t), ["held-out", "XNLI"]),
    ("source corrupt JSON line", lambda t, m: source_files(t, '{"text": "a", "label": 0}\n{"text": "b", "lab\n'),
     ["train.jsonl:2: not valid JSON"]),
    ("source empty data file", lambda t, m: source_files(t, ""), ["train.jsonl is empty"]),
    ("template repeats a string 10**13 times", lambda t, m: spec(t, "{{ 'x' * 10**13 }}"),
     ["OverflowError", "row"]),
    ("template loops over range(10**9)", lambda t, m: spec(t, "{% for i in range(10**9) %}{{ i }}{% endfor %}"),
     ["OverflowError", "1,000,000,000", "row"]),
    ("template pads a string to 10**9", lambda t, m: spec(t, "{{ text.ljust(10**9) }}"),
     ["OverflowError", "ljust", "row"]),
    ("template filter width 10**9", lambda t, m: spec(t, "{{ text|center(10**9) }}"), ["filter 'center'", "row"]),
    ("template format width 10**9", lambda t, m: spec(t, "{{ '{:x>1000000000}'.format(1) }}"),
     ["format width", "row"]),
    ("template output over the row bound", lambda t, m: spec(
        t, "{% set s = 'x' * 999999 %}{% for i in range(100) %}{{ s ~ s }}{% endfor %}"),
     ["longer than 1,000,000 characters", "row"]),
    ("template recursive macro", lambda t, m: spec(t, "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
     ["RecursionError", "row"]),
    ("recipe YAML alias bomb", lambda t, m: write("r.yaml", ALIAS_BOMB)(t), ["aliases expand to more than"]),
    ("a long bad value is quoted short", lambda t, m: train(t, "training.max_steps=" + "9x" * 50_000),
     ["training.max_steps: expected int", "(100,002 characters)"]),
    ("template names a missing column", lambda t, m: spec(t, "{{ review }}"), ["column 'review' is missing"]),
    ("spec unknown source key", lambda t, m: spec(t, "{{ text }}", ", templat: [t]"), ["did you mean"]),
    ("spec held-out dataset", lambda t, m: spec(t, "{{ text }}", ", dataset: facebook/xnli"), ["held-out", "XNLI"]),
    ("spec unknown language", lambda t, m: spec(t, "{{ text }}", language="xx"), ["language", "'xx'"]),
    ("source file with bytes that are not UTF-8", lambda t, m: source_files(
        t, b'{"text": "good", "label": 1}\n{"text": "bad \xff\xfe", "label": 0}\n'),
     ["not valid UTF-8", "re-encode"]),
    ("spec total_examples without language_weights", lambda t, m: spec(t, "{{ text }}", total_examples=100),
     ["total_examples", "language_weights"]),
    ("release language outside BLOOM's", lambda t, m: release_spec(t, "xp3x", "xP3x", "deu_Latn"),
     ["'deu_Latn'", "not one of BLOOM's languages", "allow_non_bloom_languages"]),
    ("release xP3all evaluation file", lambda t, m: release_spec(t, "xp3", "xP3all", "en"),
     ["held-out evaluation dataset", "en/xp3_", "held_out: skip"]),
    ("release xP3x rows of XNLI", lambda t, m: release_spec(t, "xp3x", "xP3x", "fr"),
     ["xp3_xnli_fr_validation_GPT_3_style.jsonl (xnli/fr)", "held-out evaluation dataset XNLI"]),
    ("release Aya sub-dataset of XNLI", lambda t, m: release_spec(t, "aya_collection", "aya_collection", "fr"),
     ["translated_xnli", "(Xnli-translated/xnli)", "XNLI"]),
    ("release corrupt JSON line", lambda t, m: corrupt_release(t),
     ["xp3_ag_news_None_train_classify_question_first.jsonl:2: not valid JSON"]),
    ("release not downloaded", lambda t, m: release_spec(t, "xp3x", t / "nowhere", "fr"),
     ["is not a folder", "hf download"]),
    ("mixture build output exists", lambda t, m: make_file(t / "built" / "f") and spec(t, "{{ text }}"),
     ["already exists"]),
    ("mixture build --overwrite of a folder that is not a build", lambda t, m: make_file(t / "built" / "notes.txt")
     and spec(t, "{{ text }}") + ["--overwrite"], ["is not a mixture build", "overwrite replaces only a build"]),
    ("contamination unknown task", lambda t, m: contamination(t, "--tasks", "xcopa,nope", build=False),
     ["unknown task 'nope'", "valid tasks: xnli, xcopa"]),
    ("mixture source id without an owner", lambda t, m: hub_source(t, "trec"),
     ["sources[0].path: 'trec'", "no longer resolves", "'CogComp/trec'"]),
    ("mixture check, source not reachable", lambda t, m: hub_source(t, "owner/absent", "check"),
     ["1 source(s)", "would not load"]),
    ("contamination not a build", lambda t, m: contamination(t, build=False), ["is not a finished mixture build"]),
    ("contamination corrupt row", lambda t, m: contamination(t, "--data-dir", f"xcopa={corrupt_xcopa(t)}"),
     ["val.zh.jsonl:2: not valid JSON"]),
]


@pytest.mark.parametrize("case, make, words", CASES, ids=[c.values[0] if hasattr(c, "values") else c[0]
                                                        for c in CASES])
def test_refused_clearly(case, make, words, tmp_path, tiny_model_dir, capsys):
    argv = make(tmp_path, tiny_model_dir)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()
    code = main(argv)  # an exception escaping here would be a traceback for the user: the test fails on it
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ")
    for word in words:
        assert word in err, (word, err)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing changed


def test_the_catalogue_is_long():
    assert len(CASES) >= 45
