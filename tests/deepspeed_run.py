"""bloomz_tune/finetune.py under DeepSpeed on CPU processes (gloo), for tests/test_distributed.py:

    ACCELERATE_TORCH_DEVICE=cpu accelerate launch --config_file recipes/accelerate/deepspeed_zero2.yaml \
        --num_processes 2 --mixed_precision no tests/deepspeed_run.py RECIPE.yaml [section.key=value ...]

accelerate starts DeepSpeed only on an accelerator (with ACCELERATE_USE_CPU it refuses DeepSpeed, and without it,
on a machine with no GPU, it finds no process-group backend and counts one process), although DeepSpeed itself
runs on CPU over gloo. So here a process state that finds no backend is given gloo as for a GPU group (the
device stays the CPU: ACCELERATE_TORCH_DEVICE), and DeepSpeed's shared-memory all-reduce, which it compiles on
first use on CPU (minutes), is left out: its collectives go through gloo. ``finetune.main`` then runs unchanged.
"""

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accelerate import PartialState  # noqa: E402
from accelerate.utils import DistributedType  # noqa: E402

from bloomz_tune.finetune import main  # noqa: E402

_prepare_backend = PartialState._prepare_backend


def _gloo_as_for_a_gpu(self, *args, **kwargs):
    backend, kind = _prepare_backend(self, *args, **kwargs)
    return ("gloo", DistributedType.MULTI_GPU) if backend is None and kind == DistributedType.NO else (backend, kind)


PartialState._prepare_backend = _gloo_as_for_a_gpu
# (by its full name: the package's attribute ``deepspeed.comm.torch`` is torch itself)
importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None
sys.exit(main())
