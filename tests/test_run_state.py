"""A run directory that keeps what is not ours and tells the truth: finished runs stay finished, replacements keep
the replaced run until they finish, refused and failed runs change nothing, diverged training stops, one lock
holder at a time, checkpoints checked by content.

One small run (4 steps) is made once; each test works on its own copy.
"""

import hashlib
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bloomz_tune.cli import main
from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.finetune import run
from bloomz_tune.recipe import load_recipe
from bloomz_tune.training.rundir import MARKER, RunDir, checkpoint_problem, claim
from bloomz_tune.training.runstate import read_stages

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "data_mixtures" / "demo.yaml"


def overrides(run_dir, cache, *extra):
    return [f"output_dir={run_dir}", f"data.mixture_cache={cache}", f"data.mixture={DEMO}", "training.max_steps=4",
            "training.save_steps=2", "training.save_total_limit=null", "training.logging_steps=1",
            "eval.sanity=true", "eval.sanity_examples=8", *extra]


def train(run_dir, cache, *extra):
    return run(load_recipe(ROOT / "recipes" / "tiny_demo.yaml", overrides(run_dir, cache, *extra)))


def cli(run_dir, cache, *extra) -> int:
    return main(["train", str(ROOT / "recipes" / "tiny_demo.yaml"), *overrides(run_dir, cache, *extra)])


def digest(folder: Path) -> dict:
    """Every file and folder under ``folder``: content hash for files (the run directory's whole state)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*"))}


def steps(run_dir):
    return [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("small_run")
    results = train(base / "run", base / "mix")
    return {"run_dir": base / "run", "cache": base / "mix", "results": results}


@pytest.fixture()
def copy(small_run, tmp_path):
    """A copy of the finished small run, in this test's folder."""
    run_dir = tmp_path / "run"
    shutil.copytree(small_run["run_dir"], run_dir, symlinks=True)
    return run_dir


def weights(run_dir):
    return (run_dir / "final" / "adapter_model.safetensors").read_bytes()


# ---- a finished run is finished -------------------------------------------------------------------------------


def test_resuming_a_finished_run_trains_nothing_and_changes_nothing(small_run, copy, capsys):
    before = digest(copy)
    capsys.readouterr()
    results = train(copy, small_run["cache"], "training.resume_from_checkpoint=auto")
    out = capsys.readouterr().out
    assert "holds a finished run" in out and "nothing to do" in out
    assert digest(copy) == before
    assert results["sanity"] == small_run["results"]["sanity"]


@pytest.mark.parametrize("killed_in", ["final save", "evaluation", "card"])
def test_a_run_cut_short_after_its_last_step_completes_only_the_missing_stages(killed_in, small_run, copy, capsys):
    rd = RunDir(copy)
    stages = read_stages(copy)
    final_weights = weights(copy)
    if killed_in == "final save":  # the weights were half written beside final/, which was not there yet
        os.replace(rd.final, rd.final_incoming)
        (rd.final_incoming / "adapter_model.safetensors").write_bytes(final_weights[:1000])
        kept = {"trained": stages["trained"]}
    elif killed_in == "evaluation":
        shutil.rmtree(rd.eval)
        kept = {k: stages[k] for k in ("trained", "final")}
    else:
        (rd.final / "README.md").write_text("half a card")
        kept = {k: stages[k] for k in ("trained", "final", "evaluated")}
    rd.marker.write_text(json.dumps({"kind": "bloomz_tune run", "stages": kept}))
    final_before = digest(rd.final) if rd.final.is_dir() else None
    capsys.readouterr()
    results = train(copy, small_run["cache"], "training.resume_from_checkpoint=auto")
    out = capsys.readouterr().out
    assert "training is done, no more steps" in out and "step      5" not in out
    assert steps(copy) == [1, 2, 3, 4]  # every step logged once, none after the last
    assert weights(copy) == final_weights  # bit-identical to the uninterrupted run
    if final_before is not None:  # a final/ that was whole is not written again
        assert "kept as it is" in out
        assert {k: v for k, v in digest(rd.final).items() if k.endswith((".safetensors", ".json"))
                and k not in ("datasheet.json", "run.json")} == \
            {k: v for k, v in final_before.items() if k.endswith((".safetensors", ".json"))
             and k not in ("datasheet.json", "run.json")}
    assert results["sanity"] == small_run["results"]["sanity"]
    assert read_stages(copy)["finished"] is True and not rd.final_incoming.exists()
    assert (rd.final / "README.md").read_text() == (small_run["run_dir"] / "final" / "README.md").read_text()


def test_a_final_changed_on_disk_is_not_trusted(small_run, copy, capsys):
    adapter = copy / "final" / "adapter_model.safetensors"
    data = bytearray(adapter.read_bytes())
    data[-100:] = bytes(100)  # same size, other content
    adapter.write_bytes(bytes(data))
    capsys.readouterr()
    train(copy, small_run["cache"], "training.resume_from_checkpoint=auto")
    assert "training is done" in capsys.readouterr().out
    assert weights(copy) == weights(small_run["run_dir"]) and steps(copy) == [1, 2, 3, 4]


# ---- failed re-runs change nothing; replacements keep the replaced run until they finish ---------------------


def test_failed_reruns_leave_the_finished_run_byte_identical(small_run, copy, tmp_path):
    before = digest(copy)
    attempts = [
        [],  # a plain re-run
        ["training.resume_from_checkpoint=auto", "lora.r=5"],  # resuming with another recipe
        ["training.resume_from_checkpoint=true", "model.tiny.n_head=3"],
        ["overwrite_output_dir=true", "training.max_epochs_over_mixture=0.001"],  # refused late: the budget
        ["overwrite_output_dir=true", "data.max_length=2"],  # no row fits
        ["overwrite_output_dir=true", "lora.target_modules=[no_such_module]"],
    ]
    for extra in attempts:
        with pytest.raises(BloomzTuneError):
            train(copy, small_run["cache"], *extra)
        assert digest(copy) == before, extra


def test_resuming_with_another_recipe_is_refused_naming_the_key(small_run, copy):
    with pytest.raises(BloomzTuneError, match=r"lora\.r: 16 -> 5"):
        train(copy, small_run["cache"], "training.resume_from_checkpoint=auto", "lora.r=5",
              "training.max_steps=8")  # not finished at 8 steps: a resume, checked against the saved recipe


def test_a_diverging_replacement_puts_the_replaced_run_back(small_run, copy, capsys):
    before = digest(copy)
    code = cli(copy, small_run["cache"], "overwrite_output_dir=true", "training.learning_rate=1e30")
    err = capsys.readouterr().err
    assert code == 3 and err.startswith("error: training diverged at step ") and len(err.splitlines()) == 1
    assert digest(copy) == before


def test_overwrite_replaces_our_run_and_removes_it_only_at_the_end(small_run, copy, capsys):
    (copy / "checkpoints" / "checkpoint-2" / "stale").write_text("from the earlier run")
    train(copy, small_run["cache"], "overwrite_output_dir=true", "training.max_steps=2")
    out = capsys.readouterr().out
    assert "kept in" in out and "removed the replaced run" in out
    assert steps(copy) == [1, 2] and not (copy / ".replaced").exists()
    assert not (copy / "checkpoints" / "checkpoint-4").exists()
    assert not (copy / "checkpoints" / "checkpoint-2" / "stale").exists()
    assert read_stages(copy)["finished"] is True


def test_overwrite_never_replaces_a_folder_that_is_not_our_run(small_run, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "data.csv").write_text("1,2")
    before = digest(folder)
    for extra in (["overwrite_output_dir=true"], [], ["training.resume_from_checkpoint=auto"]):
        with pytest.raises(BloomzTuneError, match="not a bloomz_tune run"):
            train(folder, small_run["cache"], *extra)
        assert digest(folder) == before


def test_output_dir_never_is_or_holds_what_the_run_reads(small_run, tiny_model_dir, tmp_path):
    model = tmp_path / "models" / "tiny"
    shutil.copytree(tiny_model_dir, model)
    before = digest(tmp_path / "models")
    for out in (model, tmp_path / "models"):
        with pytest.raises(BloomzTuneError, match="which the run reads"):
            train(out, small_run["cache"], "overwrite_output_dir=true", "model.tiny=null",
                  f"model.name_or_path={model}")
        assert digest(tmp_path / "models") == before
    with pytest.raises(BloomzTuneError, match="holds data.mixture_cache"):
        train(small_run["cache"].parent, small_run["cache"], "overwrite_output_dir=true")


def test_a_refused_fresh_run_leaves_no_folder(small_run, tmp_path):
    for extra in (["training.max_epochs_over_mixture=0.001"], ["data.max_length=2"]):
        with pytest.raises(BloomzTuneError):
            train(tmp_path / "new" / "run", small_run["cache"], *extra)
        assert not (tmp_path / "new" / "run").exists(), extra


# ---- diverged training stops --------------------------------------------------------------------------------


def test_non_finite_training_stops_with_its_own_exit_code(small_run, tmp_path, capsys):
    code = cli(tmp_path / "run", small_run["cache"], "training.learning_rate=1e30")
    err = capsys.readouterr().err
    assert code == 3, err
    assert "training diverged at step" in err and "wrote no final/" in err
    assert not (tmp_path / "run" / "final").exists() and "finished" not in read_stages(tmp_path / "run")
    assert not (tmp_path / "run" / RunDir(tmp_path).lock.name).exists()


def test_the_control_run_does_not_diverge(small_run):
    """The control for the test above: the same run at the recipe's learning rate finishes."""
    assert read_stages(small_run["run_dir"])["finished"] is True


# ---- checkpoints are checked by content ----------------------------------------------------------------------


def test_a_same_size_corrupted_checkpoint_is_skipped(small_run, copy):
    checkpoint = copy / "checkpoints" / "checkpoint-4"
    assert checkpoint_problem(checkpoint) is None  # the control: as saved
    adapter = checkpoint / "adapter_model.safetensors"
    data = bytearray(adapter.read_bytes())
    data[-1] ^= 0xFF
    adapter.write_bytes(bytes(data))
    assert "adapter_model.safetensors has changed since it was saved" in checkpoint_problem(checkpoint)
    assert json.loads((checkpoint / MARKER).read_text())["files"]["adapter_model.safetensors"]["sha256"]


# ---- one lock holder, always -----------------------------------------------------------------------------------


def _contender(run_dir, go, results, trials):
    for trial in range(trials):
        go.wait()  # both contenders start together, at a stale lock
        try:
            lock = claim(Path(run_dir), say=lambda *_: None)
        except BloomzTuneError:
            results.put((trial, False))
        else:
            results.put((trial, True))
            go.wait()  # hold the lock until both have tried
            lock.release()
            go.wait()
            continue
        go.wait()
        go.wait()  # the holder has released; the main process lays the next stale lock


def test_two_processes_taking_over_a_stale_lock_never_both_hold_it(tmp_path):
    trials = 200
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    import socket

    stale = json.dumps({"pid": dead, "host": socket.gethostname(), "started": "yesterday"})
    ctx = multiprocessing.get_context("fork")
    go, results = ctx.Barrier(3), ctx.Queue()
    workers = [ctx.Process(target=_contender, args=(str(run_dir), go, results, trials)) for _ in range(2)]
    for w in workers:
        w.start()
    holders = []
    for _ in range(trials):
        (run_dir / RunDir(run_dir).lock.name).write_text(stale)
        go.wait()
        got = [results.get(timeout=60) for _ in range(2)]
        holders.append(sum(held for _, held in got))
        go.wait()
        go.wait()
    for w in workers:
        w.join(timeout=60)
    assert holders == [1] * trials  # exactly one holder in every trial


# ---- corrupt state on disk is named and rebuilt ------------------------------------------------------------------


def test_a_corrupted_tokenized_split_is_named_and_tokenized_again(small_run, tmp_path, capsys):
    cache = tmp_path / "mix"
    shutil.copytree(small_run["cache"], cache, symlinks=True)
    data = max((p for p in cache.rglob("train.arrow") if "tokenized" in p.parts), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    for i in range(0, min(len(raw), 2000 * 97), 97):  # 2,000 flipped bytes, the size unchanged
        raw[i] ^= 0x5A
    data.write_bytes(bytes(raw))
    capsys.readouterr()
    train(tmp_path / "run", cache)
    assert "content hash differs): tokenizing again" in capsys.readouterr().out
    assert steps(tmp_path / "run") == steps(small_run["run_dir"])
    assert weights(tmp_path / "run") == weights(small_run["run_dir"])


def test_a_damaged_mixture_build_is_named_and_built_again(small_run, tmp_path, capsys):
    cache = tmp_path / "mix"
    shutil.copytree(small_run["cache"], cache, symlinks=True)
    [data] = [p for p in cache.rglob("*.arrow") if "dataset" in p.parts and "train" in p.parts]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # cut short, as by a full disk
    capsys.readouterr()
    train(tmp_path / "run", cache)
    out = capsys.readouterr().out
    assert "is damaged" in out and "not reused" in out and data.name in out
    assert weights(tmp_path / "run") == weights(small_run["run_dir"])
    capsys.readouterr()
    train(tmp_path / "again", cache)  # the rebuilt build is whole: reused
    assert "reusing finished build" in capsys.readouterr().out


# ---- non-finite weights are never pushed, merged or asked to generate ------------------------------------------


def nan_adapter(run_dir):
    import torch
    from safetensors.torch import load_file, save_file

    path = run_dir / "final" / "adapter_model.safetensors"
    tensors = load_file(str(path))
    name = sorted(tensors)[0]
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, str(path), metadata={"format": "pt"})
    return name


def test_push_and_generate_refuse_non_finite_weights(copy, capsys):
    assert main(["push", str(copy), "--repo-id", "me/x", "--dry-run"]) == 0  # the control: finite weights pass
    name = nan_adapter(copy)
    capsys.readouterr()
    assert main(["push", str(copy), "--repo-id", "me/x", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert name in err and "NaN or infinite" in err and len(err.splitlines()) == 1
    assert main(["generate", str(copy / "final"), "hello"]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and len(err.splitlines()) == 1
    assert main(["merge", str(copy), "--output", str(copy.parent / "merged")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err and not (copy.parent / "merged").exists()


def test_a_full_disk_during_a_checkpoint_save_is_one_line_then_resumes(small_run, tmp_path, monkeypatch, capsys):
    from transformers import Trainer

    save = Trainer._save_optimizer_and_scheduler

    def full_disk(self, output_dir):
        if self.state.global_step == 2:
            raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 576 vs 470")
        return save(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", full_disk)
    run_dir = tmp_path / "run"
    assert cli(run_dir, small_run["cache"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: writing ") and "checkpoint-2 failed at step 2" in err and len(err.splitlines()) == 1
    monkeypatch.setattr(Trainer, "_save_optimizer_and_scheduler", save)  # space freed
    train(run_dir, small_run["cache"], "training.resume_from_checkpoint=auto")
    assert steps(run_dir) == [1, 2, 3, 4] and weights(run_dir) == weights(small_run["run_dir"])


def test_merge_after_the_base_model_moved_is_one_line(copy, tmp_path, capsys):
    assert main(["merge", str(copy), "--output", str(tmp_path / "merged")]) == 0  # the control
    config = copy / "final" / "adapter_config.json"
    data = json.loads(config.read_text())
    data["base_model_name_or_path"] = str(tmp_path / "moved_away")
    config.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["merge", str(copy), "--output", str(tmp_path / "merged2")]) == 2
    err = capsys.readouterr().err
    assert "moved_away" in err and "is no longer there" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "merged2").exists()


def test_a_replacement_killed_while_moving_the_old_run_aside_keeps_every_file(small_run, copy):
    from bloomz_tune.training.runstate import set_aside

    before = digest(copy)
    replaced = copy / ".replaced"
    replaced.mkdir()
    os.replace(copy / "metrics.jsonl", replaced / "metrics.jsonl")  # the kill came after the first entry moved
    set_aside(copy, say=lambda *_: None)  # the next replacement finishes the move...
    assert {k.removeprefix(".replaced/") for k in digest(copy) if k.startswith(".replaced/")} >= \
        {k for k in before if not k.startswith(".bloomz_tune.lock")}
    (copy / "half_written_attempt.txt").write_text("x")
    set_aside(copy, say=lambda *_: None)  # ...and a later one discards only the cut-short attempt's files
    assert not (copy / "half_written_attempt.txt").exists()
    from bloomz_tune.training.runstate import restore

    restore(copy, say=lambda *_: None)
    assert digest(copy) == before


def test_a_push_at_the_end_with_the_hub_offline_is_refused_before_training(small_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_NotARealTokenForThisTest")
    assert cli(tmp_path / "run", small_run["cache"], "hub.push_to_hub=true", "hub.repo_id=me/x") == 2  # offline
    err = capsys.readouterr().err
    assert "offline mode is on" in err and len(err.splitlines()) == 1 and "hf_NotAReal" not in err
    assert not (tmp_path / "run").exists()


def test_a_finished_run_resumed_with_more_steps_trains_only_the_new_ones(small_run, copy, capsys):
    train(copy, small_run["cache"], "training.resume_from_checkpoint=auto", "training.max_steps=6")
    out = capsys.readouterr().out
    assert "resuming from" in out and "checkpoint-4 (step 4)" in out and "nothing to do" not in out
    assert steps(copy) == [1, 2, 3, 4, 5, 6] and read_stages(copy)["finished"] is True
    assert read_stages(copy)["trained"] == 6 and weights(copy) != weights(small_run["run_dir"])
