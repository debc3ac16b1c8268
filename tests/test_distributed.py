"""Data parallel, FSDP2 and DeepSpeed ZeRO-2/3 (2 CPU processes, gloo) give the same optimizer step as one process
with the whole batch: the loss is normalised by the item count of the whole step across processes, not per process.

The FSDP2 and DeepSpeed runs are the training script as users launch it, `accelerate launch --config_file
recipes/accelerate/<fsdp|deepspeed_zero2|deepspeed_zero3>.yaml`, with only the process count and the precision
changed, and what it takes to run on CPU (tests/fsdp_run.py, tests/deepspeed_run.py). The DeepSpeed configs are also
checked with DeepSpeed's own parser, and the SLURM launcher's per-node commands with accelerate's.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from bloomz_tune.finetune import run
from bloomz_tune.recipe import load_recipe
from bloomz_tune.training.rundir import checkpoint_problem

pytestmark = pytest.mark.slow  # minutes: multi-process or notebook runs (the fast lane skips them)

ROOT = Path(__file__).resolve().parent.parent


def _launch(num_processes, batch, model_dir, out, loss_type):
    # torchrun starts the processes; ACCELERATE_USE_CPU makes the Trainer's accelerate state a gloo group on CPU.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(num_processes),
           "--master_port", str(29500 + num_processes + (7 if loss_type == "token_mean" else 0)),
           str(ROOT / "tests" / "ddp_one_step.py"), str(model_dir), str(out), loss_type, str(batch)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("loss_type", ["sample_mean", "token_mean"])
def test_two_processes_equal_one_big_batch(tiny_model_dir, tmp_path, loss_type):
    single = _launch(1, 8, tiny_model_dir, tmp_path / "single.pt", loss_type)
    parallel = _launch(2, 4, tiny_model_dir, tmp_path / "ddp.pt", loss_type)
    base = _launch_free_weights(tiny_model_dir)
    assert not torch.allclose(single, base, atol=1e-6)  # the step did move the weights
    assert torch.allclose(single, parallel, atol=1e-6)


def _launch_free_weights(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return model.transformer.h[0].mlp.dense_h_to_4h.weight.detach()


# ---- FSDP2 and DeepSpeed through accelerate, the training script end to end ------------------------------

MODES = {  # packed rows + LoRA (with the demo's trained embedding copy), and full fine-tuning of padded rows
    "lora_packed": ["data.packing=true"],
    "full_padded": ["lora.enabled=false", "data.packing=false"],
}
WEIGHTS = {"lora_packed": "adapter_model.safetensors", "full_padded": "model.safetensors"}
# Each shipped config with its launch script (tests/fsdp_run.py, tests/deepspeed_run.py: what they change to run
# on CPU), the variables it needs, and the parts of a checkpoint that the second process writes.
LAUNCHES = {
    "fsdp": ("fsdp.yaml", "tests/fsdp_run.py", {"ACCELERATE_USE_CPU": "true"},
             {"rng_state_1.pth", "pytorch_model_fsdp_0/__1_0.distcp", "optimizer_0/__1_0.distcp"}),
    "zero2": ("deepspeed_zero2.yaml", "tests/deepspeed_run.py", {"ACCELERATE_TORCH_DEVICE": "cpu"},
              {"rng_state_1.pth", "global_step1/zero_pp_rank_1_mp_rank_00_optim_states.pt"}),
    "zero3": ("deepspeed_zero3.yaml", "tests/deepspeed_run.py", {"ACCELERATE_TORCH_DEVICE": "cpu"},
              {"rng_state_1.pth", "global_step1/zero_pp_rank_1_mp_rank_00_optim_states.pt",
               "global_step1/zero_pp_rank_1_mp_rank_00_model_states.pt"}),
}
RUNS = [("fsdp", "lora_packed"), ("fsdp", "full_padded"), ("zero2", "full_padded"), ("zero3", "lora_packed")]


def _recipe_args(model_dir, run_dir, cache, per_device, mode):
    return ["recipes/tiny_demo.yaml", f"output_dir={run_dir}", f"data.mixture_cache={cache}", "model.tiny=null",
            f"model.name_or_path={model_dir}", "data.max_length=128", "training.max_steps=1",
            f"training.per_device_train_batch_size={per_device}", "eval.sanity_examples=8",
            "training.loss_chunk_size=16", *MODES[mode]]  # the head and loss in chunks, as long targets run


@pytest.fixture(scope="module")
def one_process(tiny_model_dir, tmp_path_factory):
    """Each mode run once in one process with 8 rows per step (run on first use)."""
    runs = {}

    def get(mode):
        if mode not in runs:
            runs[mode] = tmp_path_factory.mktemp(f"single_{mode}") / "run"
            args = _recipe_args(tiny_model_dir, runs[mode], tmp_path_factory.getbasetemp() / "mixtures", 8, mode)
            run(load_recipe(ROOT / args[0], args[1:]))
        return runs[mode]
    return get


@pytest.fixture(scope="module", params=RUNS, ids=["-".join(r) for r in RUNS])
def sharded_pair(request, one_process, tiny_model_dir, tmp_path_factory):
    """One mode in one process, and under one shipped config as 2 processes with 4 rows each."""
    launch, mode = request.param
    config, script, extra_env, _ = LAUNCHES[launch]
    single = one_process(mode)  # builds the mixture that the launch reuses
    sharded = tmp_path_factory.mktemp(f"{launch}_{mode}") / "run"
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    # bf16 (the files' precision) is swapped for fp32 so that the two runs can be compared closely.
    cmd = [accelerate, "launch", "--config_file", f"recipes/accelerate/{config}", "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", "0", script,
           *_recipe_args(tiny_model_dir, sharded, tmp_path_factory.getbasetemp() / "mixtures", 4, mode)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1", **extra_env}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return {"launch": launch, "mode": mode, "single": single, "sharded": sharded, "stdout": done.stdout,
            "model_dir": tiny_model_dir}


def _first_step(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])


def test_sharded_step_equals_one_process_big_batch(sharded_pair):
    """The trained weights (the adapter, or the whole model) after one step, gathered from the shards into final/."""
    name = WEIGHTS[sharded_pair["mode"]]
    single, sharded = (load_file(sharded_pair[k] / "final" / name) for k in ("single", "sharded"))
    assert sorted(single) == sorted(sharded)
    if sharded_pair["mode"] == "full_padded":
        before = load_file(Path(sharded_pair["model_dir"]) / "model.safetensors")
        assert sorted(before) == sorted(single)  # tied weights saved once, as the one-process save does
        moved = [k for k in single if not torch.equal(single[k], before[k])]
    else:
        moved = [k for k in single if "lora_B" in k and single[k].abs().max() > 0]  # lora_B starts at zero
    assert moved
    # AdamW's first step moves each weight by about lr (3e-3) times the sign of its gradient; the two runs add the
    # same fp32 numbers in another order (per process, then reduce-scatter), which changes gradients in their
    # last bits and the weights by ~1e-6. A wrong gradient sign, or a sample missed or counted twice, moves a
    # weight by up to 2 x lr.
    worst = max(float((single[k] - sharded[k]).abs().max()) for k in single)
    assert worst < 1e-5, worst


def test_sharded_run_logs_the_loss_and_gradient_norm_of_one_process(sharded_pair):
    """Adam's first step does not depend on the gradient's scale, so the logged gradient norm (before clipping)
    checks the cross-process loss normalisation: a factor of 2 off would show here."""
    single, sharded = _first_step(sharded_pair["single"]), _first_step(sharded_pair["sharded"])
    assert single["step"] == sharded["step"] == 1
    assert sharded["loss"] == pytest.approx(single["loss"], rel=1e-6)
    assert sharded["grad_norm"] == pytest.approx(single["grad_norm"], rel=1e-5)
    assert sharded_pair["stdout"].count("step      1/1 | loss") == 1  # one log line, from rank 0


def test_zero3_builds_the_model_sharded(sharded_pair):
    """Under ZeRO-3 (zero3_init_flag) each process loads only its shard of the weights (the parameters counted by
    their whole size), and the check before training runs once the engine holds them, with the one-process
    result: the same untrained weights score the same."""
    stdout = sharded_pair["stdout"]
    counts = [line for line in stdout.splitlines() if line.startswith("model ") and " parameters, " in line]
    assert len(counts) == 1 and not counts[0].split(": ", 1)[1].startswith("0 parameters")
    sanity = [json.loads((sharded_pair[k] / "eval" / "results.json").read_text())["sanity"]
              for k in ("single", "sharded")]
    assert sanity[1]["before"] == pytest.approx(sanity[0]["before"]) and "after" in sanity[1]
    assert ("loaded as ZeRO-3 shards" in counts[0]) == (sharded_pair["launch"] == "zero3")


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_sharded_run_directory_is_written_once_by_rank_0(sharded_pair):
    """The run directory of 2 processes holds the files of a one-process run, each once and complete; only the
    checkpoint holds the other rank's parts (its weight and optimizer shards and random state)."""
    single, sharded = sharded_pair["single"], sharded_pair["sharded"]
    outside = [f for f in _files(sharded) if not f.startswith("checkpoints/")]
    assert outside == [f for f in _files(single) if not f.startswith("checkpoints/")]
    checkpoint = sharded / "checkpoints" / "checkpoint-1"
    assert checkpoint_problem(checkpoint) is None  # marked complete after every rank wrote its part
    assert {f for f in _files(checkpoint) if "_1" in f} == LAUNCHES[sharded_pair["launch"]][3]
    plan = json.loads((sharded / "run.json").read_text())
    assert (plan["processes"], plan["global_batch"]) == (2, 8)
    assert plan["tokens_per_step"] == json.loads((single / "run.json").read_text())["tokens_per_step"]
    assert json.loads((sharded / "eval" / "results.json").read_text())["training"]["processes"] == 2
    assert len((sharded / "metrics.jsonl").read_text().splitlines()) == len(
        (single / "metrics.jsonl").read_text().splitlines())
    assert "x 2 process(es)" in (sharded / "final" / "README.md").read_text()  # the card counts both


# ---- DeepSpeed: every shipped config, as accelerate builds it, accepted by DeepSpeed's own parser ------------

DEEPSPEED_CONFIGS = sorted(p.name for p in (ROOT / "recipes" / "accelerate").glob("*.yaml")
                           if "distributed_type: DEEPSPEED" in p.read_text())
RECIPES = sorted(p.name for p in (ROOT / "recipes").glob("*.yaml") if p.name != "tiny_demo.yaml")


def _launcher_view(config_file, *flags):
    """What `accelerate launch --config_file CONFIG_FILE [flags]` resolves: its arguments and the environment it
    gives the training processes (accelerate's own code, as its launcher runs it)."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_command_parser().parse_args(["--config_file", str(config_file), *flags, "bloomz_tune/finetune.py"])
    args, defaults, precision_from_file = _validate_launch_command(args)
    fields = list(defaults.deepspeed_config) + (["mixed_precision"] if precision_from_file else [])
    args.deepspeed_fields_from_accelerate_config = ",".join(fields)  # as accelerate's launch_command sets it
    _, env = prepare_deepspeed_cmd_env(args)
    return args, {k: v for k, v in env.items() if k.startswith("ACCELERATE_")}


class _OnProcesses:
    """TrainingArguments as the Trainer sees them on each of ``world_size`` GPUs (bf16 where the file asks)."""

    def __init__(self, args, world_size, bf16):
        self._args, self.world_size, self.bf16 = args, world_size, bf16

    def __getattr__(self, name):
        return getattr(self._args, name)


def _deepspeed_config(config_file, recipe_file, monkeypatch, processes=None):
    """The DeepSpeed config a run of ``recipe_file`` under ``config_file`` hands DeepSpeed, parsed by DeepSpeed as
    on rank 0 of the file's processes (or ``processes``)."""
    import deepspeed.runtime.config as ds_config
    from accelerate.utils import DeepSpeedPlugin, patch_environment
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    from bloomz_tune.training.trainer import training_arguments

    launch, env = _launcher_view(config_file)
    with patch_environment(**env):
        plugin = DeepSpeedPlugin()  # reads the launcher's ACCELERATE_DEEPSPEED_* variables
    plugin.set_mixed_precision(env["ACCELERATE_MIXED_PRECISION"])
    recipe = load_recipe(ROOT / "recipes" / recipe_file, ["model.dtype=float32"])
    args = training_arguments(recipe, "/nonexistent/checkpoints")
    filled = HfTrainerDeepSpeedConfig(plugin.deepspeed_config)  # the Trainer fills the "auto" values
    filled.trainer_config_process(_OnProcesses(args, launch.num_processes, launch.mixed_precision == "bf16"))
    assert not filled.mismatches, filled.mismatches
    unset_hf_deepspeed_config()  # the filled config registers itself as this process's; later tests run without
    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    monkeypatch.setattr(ds_config.dist, "get_world_size", lambda *a, **k: processes or launch.num_processes)
    return launch, recipe, plugin, ds_config.DeepSpeedConfig(filled.config)


@pytest.mark.parametrize("recipe_file", RECIPES)
@pytest.mark.parametrize("config_file", DEEPSPEED_CONFIGS)
def test_deepspeed_configs_are_accepted_by_deepspeed(config_file, recipe_file, monkeypatch):
    path = ROOT / "recipes" / "accelerate" / config_file
    launch, recipe, plugin, parsed = _deepspeed_config(path, recipe_file, monkeypatch)
    t = recipe.training
    file = yaml.safe_load(path.read_text())["deepspeed_config"]
    assert parsed.zero_optimization_stage == file["zero_stage"]
    assert parsed.zero_config.offload_optimizer.device == file["offload_optimizer_device"]
    assert parsed.zero_config.offload_param.device == file["offload_param_device"]
    assert parsed.zero_config.gather_16bit_weights_on_model_save == file.get("zero3_save_16bit_model", False)
    assert plugin.zero3_init_flag == file.get("zero3_init_flag", False)  # ZeRO-3 builds the model sharded
    assert parsed.bfloat16_config.enabled  # the file's mixed_precision: bf16
    assert parsed.train_micro_batch_size_per_gpu == t.per_device_train_batch_size
    assert parsed.gradient_accumulation_steps == t.gradient_accumulation_steps
    assert parsed.train_batch_size == t.per_device_train_batch_size * t.gradient_accumulation_steps * launch.num_processes
    assert parsed.gradient_clipping == t.max_grad_norm


def test_deepspeed_refuses_a_wrong_config(tmp_path, monkeypatch):
    """The parser is not a rubber stamp: a batch filled for 64 processes run on 8, and a ZeRO stage that does not
    exist, are refused."""
    multi_node = ROOT / "recipes" / "accelerate" / "multi_node_zero3.yaml"
    with pytest.raises(AssertionError, match="train_batch_size is not equal"):
        _deepspeed_config(multi_node, "lora_176b_zero3.yaml", monkeypatch, processes=8)
    wrong = tmp_path / "zero4.yaml"
    wrong.write_text((ROOT / "recipes" / "accelerate" / "deepspeed_zero3.yaml").read_text()
                     .replace("zero_stage: 3", "zero_stage: 4"))
    with pytest.raises(ValueError, match="DeepSpeedZeroConfig"):
        _deepspeed_config(wrong, "full_7b1_zero3.yaml", monkeypatch)


# ---- several machines: the SLURM launcher and the multi-node config ----------------------------------------

FAKE_SRUN = """#!/bin/bash
# srun on a job of 3 nodes: the command once per node, with that node's SLURM_NODEID
while [[ $1 == --* ]]; do shift; done
for node in 0 1 2; do SLURM_NODEID=$node "$@"; done
"""
FAKE_SCONTROL = """#!/bin/bash
[[ "$*" == "show hostnames node-[07-09]" ]] && printf 'node-07\\nnode-08\\nnode-09\\n'
"""


def test_slurm_script_gives_each_node_its_rank_and_the_first_host(tmp_path):
    """recipes/accelerate/slurm_multi_node.sh with SLURM's variables faked (3 nodes of 4 GPUs) and DRY_RUN: each
    node's command, read by accelerate's launcher with the multi-node config, is that node's torchrun rank of 3,
    rendezvous at the job's first host."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "node-[07-09]",
           "SLURM_NNODES": "3", "GPUS_PER_NODE": "4", "DRY_RUN": "1"}
    done = subprocess.run(["bash", "recipes/accelerate/slurm_multi_node.sh", "recipes/lora_176b_zero3.yaml",
                           "training.max_steps=3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3
    for node, line in enumerate(lines):
        words = line.split()
        assert words[:2] == ["accelerate", "launch"]
        assert words[-3:] == ["bloomz_tune/finetune.py", "recipes/lora_176b_zero3.yaml", "training.max_steps=3"]
        config = words[words.index("--config_file") + 1]
        launch, env = _launcher_view(config, *words[4:-3])
        assert env["ACCELERATE_USE_DEEPSPEED"] == "true"
        assert (launch.num_machines, launch.num_processes) == (3, 12)
        assert (launch.nnodes, launch.nproc_per_node, launch.node_rank) == ("3", "4", node)
        # torchrun's static rendezvous at machine 0 (accelerate passes it as an endpoint, not as master_addr)
        assert (launch.rdzv_backend, launch.rdzv_endpoint) == ("static", "node-07:29500")
