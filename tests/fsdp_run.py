"""bloomz_tune/finetune.py under FSDP on CPU processes (gloo), for tests/test_distributed.py:

    ACCELERATE_USE_CPU=true accelerate launch --config_file recipes/accelerate/fsdp.yaml --num_processes 2 \
        --mixed_precision no tests/fsdp_run.py RECIPE.yaml [section.key=value ...]

accelerate turns FSDP on only for a GPU-like process group (MULTI_GPU and its kin), never for MULTI_CPU, although
FSDP2 itself shards and reduces over gloo on CPU. So here every accelerate process state that comes up as a CPU
group (finetune's, then the Trainer's own) is labelled a multi-device one, and ``finetune.main`` runs unchanged:
everything after that (the FSDP plugin read from the launcher's variables, ``fully_shard`` per BloomBlock, the
Trainer, the saves) is the path a GPU run takes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from accelerate import PartialState  # noqa: E402
from accelerate.utils import DistributedType  # noqa: E402

from bloomz_tune.finetune import main  # noqa: E402

_init = PartialState.__init__


def _init_as_multi_device(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    if self.distributed_type == DistributedType.MULTI_CPU:
        self.distributed_type = DistributedType.MULTI_GPU


PartialState.__init__ = _init_as_multi_device
sys.exit(main())
