"""Data parallel (2 CPU processes, gloo) gives the same optimizer step as one process with the whole batch:
the loss is normalised by the item count of the whole step across processes, not per process."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
