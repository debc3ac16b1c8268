"""Score the eval fixtures' requests under a launcher (or alone) and write their log-likelihoods (rank 0).

    torchrun --nproc_per_node 2 tests/parallel_scoring.py MODEL_DIR OUT.json [REPEAT]

Used by tests/test_eval_parallel.py: the scores of 2 processes against 1, and requests/s.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from bloomz_tune.evaluation.parallel import distributed, start_processes
from bloomz_tune.evaluation.scoring import loglikelihoods
from bloomz_tune.tasks.table import load_task_rows, prompts_for

FIXTURES = Path(__file__).parent / "fixtures" / "eval"


def requests(repeat: int) -> list[tuple[str, str]]:
    out = []
    for task, language, folder in [("xnli", "en", "xnli"), ("xnli", "zh", "xnli"), ("copa", "en", "super_glue"),
                                   ("xwinograd", "en", "xwinograd")]:
        rows = load_task_rows(task, language, str(FIXTURES / folder), limit=None)["rows"]
        for prompt in prompts_for(task, language, 5):
            for row in rows:
                example = prompt.render(row)
                out += [(example["prompt"], c) for c in example["choices"]]
    return [(f"{p} {k}" if k else p, c) for k in range(repeat) for p, c in out]


def main(model_dir: str, out: str, repeat: int = 1) -> None:
    start_processes("cpu")
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    wanted = requests(repeat)
    loglikelihoods(model, tokenizer, wanted[:16], batch_size=8, progress=False)  # warm-up, not timed
    begin = time.perf_counter()
    scores = loglikelihoods(model, tokenizer, wanted, batch_size=8, progress=False)
    seconds = time.perf_counter() - begin
    rank, world = distributed()
    if rank == 0:
        Path(out).write_text(json.dumps({"processes": world, "scores": scores, "seconds": seconds,
                                         "requests_per_s": len(wanted) / seconds,
                                         "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1)
