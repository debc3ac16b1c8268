"""benchmarks/gpu_check.py on the CPU with tiny shapes (``--device cpu --smoke``), so the prepared GPU check cannot
rot between GPU runs: every configuration has an entry, the ones that ran have real figures, results.md its
tables."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("560m-lora", "560m-full", "1b7-lora-gc", "1b7-full-gc")
CONFIGS = ("ours-sdpa", "trl_padded", "trl_packed", "ours-flex")
RAN = {"gpu-tests", "560m-lora-ours-sdpa", "560m-lora-trl_padded", "560m-lora-trl_packed", "1b7-full-gc-ours-sdpa",
       "1b7-full-gc-trl_padded", "1b7-full-gc-trl_packed", "eval-560m"}  # --smoke's subset; flex: no CPU backward


def _real(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.mark.slow
def test_gpu_check_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--smoke", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["finished"] and results["meta"]["smoke"]
    jobs = {job["name"]: job for job in results["jobs"]}
    expected = {"gpu-tests", "eval-560m", "eval-1b7"} | {f"{g}-{c}" for g in GROUPS for c in CONFIGS}
    assert set(jobs) == expected and len(results["jobs"]) == len(expected)
    assert {name for name, job in jobs.items() if job["status"] == "ok"} == RAN, {
        name: (job["status"], job.get("reason"), job.get("error_tail", "")[-800:]) for name, job in jobs.items()}
    for name, job in jobs.items():
        if name not in RAN:
            assert job["status"] == "skipped" and job["reason"]

    tests = jobs["gpu-tests"]["result"]
    assert tests["passed"] + tests["failed"] + tests["error"] + tests["skipped"] == len(tests["tests"]) >= 7
    assert tests["failed"] == tests["error"] == 0  # on a CPU the CUDA tests are skipped
    for name in RAN - {"gpu-tests", "eval-560m"}:
        result = jobs[name]["result"]
        for key in ("real_tokens_per_s", "target_tokens_per_s", "real_tokens_per_step", "peak_memory_gib", "tflops"):
            assert _real(result[key]), (name, key, result[key])
        if jobs[name]["config"] == "ours":
            estimate = jobs[name]["estimate"]
            assert estimate["status"] == "ok" and _real(estimate["memory_gib"]), estimate
    evaluation = jobs["eval-560m"]["result"]
    assert evaluation["requests"] > 0 and len(evaluation["scorers"]) == 4
    for row in evaluation["scorers"].values():
        assert _real(row["requests_per_s"]) and row["same_choices"]

    table = (out / "results.md").read_text()
    for heading in ("## GPU-only tests", "## Training throughput and memory", "## Evaluation throughput", "## Jobs"):
        assert heading in table
    assert "| configuration | status | real tok/s |" in table
    for name in expected - {"gpu-tests", "eval-560m", "eval-1b7"}:
        assert f"| {name}" in table
