"""One prepared check for a CUDA machine: the GPU-only tests, training throughput of ours against TRL, the
memory ``bloomz-tune estimate`` predicts beside the measured peak, and evaluation throughput against lm_eval,
within a time budget (8 minutes with the install), written to ``--out DIR`` as results.json and results.md.

On the GPU machine (one H100 or H200 with torch, transformers, peft, accelerate and pytest), from the
repository root, with the folder .whl/ carried (datasets, trl, lm_eval and the packages they need that the
machine lacks; benchmarks/README.md says how to fill it):

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH && python3 benchmarks/gpu_check.py --out $OUT/gpu

The same on a CPU, tiny shapes and one step (tests/test_gpu_check.py runs it, so it cannot rot between GPU runs):

    python benchmarks/gpu_check.py --device cpu --smoke --out /tmp/gpu_check

What runs, most valuable first, each job in its own process under its own time limit and the overall budget (a
job that fails or runs out of time is recorded as such and the rest go on; results.json and results.md are
rewritten after each job, so a run killed half-way still leaves what it measured):

1. the GPU-only tests: tests/test_bloom.py's CUDA case (flex attention's backward under gradient checkpointing)
   and tests/test_gpu_only.py (packed == alone in bf16 for sdpa and flex; one attention bias per forward under
   CUDA's bf16 autocast), ``pytest -k cuda``;
2. bloom-560m shape (24 layers, hidden 1024, 16 heads, vocabulary 250,880), LoRA then full fine-tuning, no
   gradient checkpointing: ours (sdpa), TRL padded, TRL packed (benchmarks/train_throughput.py, one
   configuration per process);
3. evaluation requests/s, ours against lm_eval on the same requests (benchmarks/eval_throughput.py), 560m shape;
4. ours with flex attention, 560m shape (flex compiles in its first steps);
5. bloom-1b7 shape (hidden 2048), LoRA then full, gradient checkpointing for every configuration: ours (sdpa),
   TRL padded, TRL packed; then ours with flex; then evaluation on the 1b7 shape.

Rows of 2,048 tokens: ours packs 8 rows a step (about 16,000 real tokens); TRL packed takes one packed row a
step (it puts a step's rows into one sequence whose attention is quadratic in the whole length); TRL padded takes
16 samples a step without gradient checkpointing and 60 with it (about as many real tokens as ours), and half
or a quarter of that when the first try runs out of memory. Beside each of ours, ``bloomz-tune estimate`` with
the benchmark's per-device rows, length, attention, dropout, checkpointing and the recipe's precision, on a
config.json of the shape written here (nothing from the Hub); it runs in the background while the GPU works.
``--only`` runs a subset (substrings of job names, e.g. ``--only 1b7`` for a second call); ``--list`` prints
the plan.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parents[1]
INSTALL = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
           ".whl/*.whl && export PYTHONPATH=/tmp/site:$PYTHONPATH")
COMMAND = INSTALL + " && python3 benchmarks/gpu_check.py --out $OUT/gpu"
GiB = 2**30
# What the device image lacks, one version of each (its own packages are listed in the device notes: torch,
# transformers, numpy, pyarrow, pandas, xxhash, fsspec, ... stay its own): wheels for its Python 3.12 on x86-64.
WHEELS = ("datasets==5.2.0", "trl==1.16.0", "lm_eval==0.4.13", "dill==0.4.1", "multiprocess==0.70.19",
          "evaluate==0.4.6", "pytablewriter==1.2.1", "DataProperty==1.1.1", "mbstrdecoder==1.1.5",
          "pathvalidate==3.3.1", "tabledata==1.3.5", "tcolorpy==0.1.7", "typepy==1.3.5", "pytz==2026.6",
          "chardet==6.0.0.post1", "nltk==3.10.4", "defusedxml==0.7.1", "more_itertools==11.2.1")
SDIST_ONLY = ("rouge_score==0.1.2", "sqlitedict==2.1.0", "word2number==1.1")  # built into pure-Python wheels here
DOWNLOAD = ("-m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "
            "--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 "
            "-d .whl").split()

# (layers, hidden, heads, vocabulary): the public shapes, and tiny ones for --smoke
SHAPES = {"560m": (24, 1024, 16, 250880), "1b7": (24, 2048, 16, 250880)}
SMOKE_SHAPES = {"560m": (2, 64, 4, 512), "1b7": (2, 96, 4, 512)}
# benchmark settings: rows of max_length tokens, steps, and the batch of each configuration
SETTINGS = {"max_length": 2048, "samples": 800, "steps": 6, "warmup": 2, "flex_warmup": 3, "rows": 8,
            "trl_packed_rows": 1, "trl_padded": {False: (16, 8, 4), True: (60, 30, 16)}}
SMOKE_SETTINGS = {"max_length": 128, "samples": 40, "steps": 1, "warmup": 1, "flex_warmup": 1, "rows": 2,
                  "trl_packed_rows": 1, "trl_padded": {False: (4, 2), True: (4, 2)}}
# --smoke runs these jobs (by the start of their names), enough to take every code path: LoRA without and full
# fine-tuning with gradient checkpointing, every training configuration, one evaluation
SMOKE_RUNS = ("gpu-tests", "560m-lora-", "1b7-full-gc-", "eval-560m")
# seconds: each job's limit, and the least time left worth starting one
LIMITS = {"tests": 150, "ours": 75, "trl": 100, "flex": 150, "eval": 120, "estimate": 90, "start": 20}
SMOKE_LIMITS = {"tests": 240, "ours": 240, "trl": 240, "flex": 240, "eval": 240, "estimate": 240, "start": 1}
PACKAGES = ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "lm_eval", "pyarrow", "fsspec",
            "huggingface_hub", "tokenizers", "numpy", "pytest")
OOM = ("outofmemoryerror", "out of memory")


class Stopped(Exception):
    """SIGTERM or SIGINT: the current job's processes are ended and the results written as they stand."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="folder for results.json, results.md and the jobs' logs")
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    p.add_argument("--smoke", action="store_true", help="tiny shapes, one step: checks the check itself")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for everything (default 450 on a GPU, which leaves the install and start-up "
                        "inside 8 minutes; 900 with --smoke)")
    p.add_argument("--only", default="", help="comma-separated substrings of job names to run (default: all)")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    p.add_argument("--download-wheels", action="store_true",
                   help="fill .whl/ with the wheels the device lacks (here, with the package index) and exit")
    args = p.parse_args(argv)
    if not (args.out or args.list or args.download_wheels):
        p.error("--out is required")
    if args.out is None:  # --list names the log files under a folder nothing is written to
        args.out = "gpu_check_out"
    if args.budget is None:
        args.budget = 900.0 if args.smoke else 450.0
    return args


def download_wheels() -> int:
    """.whl/ as the device command installs it: the wheels of WHEELS and SDIST_ONLY, nothing else."""
    folder = ROOT / ".whl"
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("*.whl"):
        stale.unlink()
    for command in ([sys.executable, *DOWNLOAD, *WHEELS],
                    [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", ".whl", *SDIST_ONLY]):
        subprocess.run(command, cwd=ROOT, check=True)
    wheels = sorted(folder.glob("*.whl"))
    print(f"{len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.1f} MiB in {folder}")
    return 0


# ---------------------------------------------------------------- the plan
def plan(args) -> list[dict]:
    """Every job in the order it runs, most valuable first; each a record that the run fills in."""
    shapes, s, limits = (SMOKE_SHAPES, SMOKE_SETTINGS, SMOKE_LIMITS) if args.smoke else (SHAPES, SETTINGS, LIMITS)
    jobs = [tests_job(args, limits)]
    groups = [("560m", mode, False) for mode in ("lora", "full")]
    big = [("1b7", mode, True) for mode in ("lora", "full")]
    for group in groups:
        jobs += [train_job(args, shapes, s, limits, *group, config) for config in ("ours", "trl_padded", "trl_packed")]
    jobs.append(eval_job(args, shapes, limits, "560m"))
    jobs += [train_job(args, shapes, s, limits, *group, "ours", attn="flex") for group in groups]
    for group in big:
        jobs += [train_job(args, shapes, s, limits, *group, config) for config in ("ours", "trl_padded", "trl_packed")]
    jobs += [train_job(args, shapes, s, limits, *group, "ours", attn="flex") for group in big]
    jobs.append(eval_job(args, shapes, limits, "1b7"))
    wanted = [w for w in args.only.split(",") if w]
    for job in jobs:
        if wanted and not any(w in job["name"] for w in wanted):
            job.update(status="skipped", reason="not selected (--only)")
        elif args.smoke and not any(job["name"].startswith(k) for k in SMOKE_RUNS):
            job.update(status="skipped", reason="--smoke runs one LoRA and one full group (the same code paths)")
        elif job.get("attn") == "flex" and args.device == "cpu":
            job.update(status="skipped", reason="flex attention has no backward on CPU")
    return jobs


def new_job(name: str, kind: str, limit: float, **fields) -> dict:
    return {"name": name, "kind": kind, "status": "pending", "limit_s": limit, **fields}


def tests_job(args, limits) -> dict:
    return new_job("gpu-tests", "tests", limits["tests"],
                   command=[sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                            "tests/test_bloom.py", "tests/test_gpu_only.py",
                            f"--junitxml={logs(args) / 'gpu-tests.xml'}"])


def train_job(args, shapes, s, limits, shape, mode, checkpointing, config, attn="sdpa") -> dict:
    """One configuration of benchmarks/train_throughput.py; trl_padded tries smaller batches after running out of
    memory."""
    layers, hidden, heads, vocab = shapes[shape]
    group = f"{shape}-{mode}" + ("-gc" if checkpointing else "")
    name = f"{group}-{config}" + (f"-{attn}" if config == "ours" else "")
    settings = {"shape": shape, "layers": layers, "hidden": hidden, "heads": heads, "vocab": vocab,
                "max_length": s["max_length"], "full": mode == "full", "gradient_checkpointing": checkpointing,
                "steps": s["steps"], "warmup": s["flex_warmup"] if attn == "flex" else s["warmup"]}
    base = [sys.executable, "benchmarks/train_throughput.py", "--device", args.device, "--layers", layers,
            "--hidden", hidden, "--heads", heads, "--vocab", vocab, "--max-length", s["max_length"],
            "--samples", s["samples"], "--steps", s["steps"], "--warmup", settings["warmup"], "--only", config,
            "--json", logs(args) / f"{name}.json"]
    base += ["--full"] * (mode == "full") + ["--gradient-checkpointing"] * checkpointing
    if config == "ours":
        variants = [["--rows", s["rows"], "--attn", attn]]
        settings.update(rows=s["rows"], attn=attn)
        limit = limits["flex" if attn == "flex" else "ours"]
    elif config == "trl_packed":
        variants = [["--rows", s["trl_packed_rows"]]]
        settings["rows"] = s["trl_packed_rows"]
        limit = limits["trl"]
    else:
        variants = [["--trl-batch", b] for b in s["trl_padded"][checkpointing]]
        limit = limits["trl"]
    limit *= 1.4 if shape == "1b7" else 1.0
    return new_job(name, "train", round(limit), group=group, config=config, attn=attn if config == "ours" else None,
                   settings=settings, variants=[[str(x) for x in base + v] for v in variants])


def eval_job(args, shapes, limits, shape) -> dict:
    layers, hidden, heads, vocab = shapes[shape]
    name = f"eval-{shape}"
    command = [sys.executable, "benchmarks/eval_throughput.py", "--device", args.device, "--layers", layers,
               "--hidden", hidden, "--heads", heads, "--vocab-size", 0 if args.smoke else vocab,
               "--json", logs(args) / f"{name}.json"]
    return new_job(name, "eval", limits["eval"], settings={"shape": shape, "layers": layers, "hidden": hidden,
                                                             "heads": heads, "vocab": vocab if not args.smoke else
                                                             "the tokenizer's (1,024)"},
                   command=[str(x) for x in command])


def logs(args) -> Path:
    return Path(args.out).resolve() / "logs"


# ---------------------------------------------------------------- running a job
def child_env() -> dict:
    """The worktree's package first, offline, unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


CURRENT = []  # the process group running now, for the signal handler


def run_process(command: list[str], timeout: float, log: Path) -> tuple[str, float]:
    """Run ``command`` in its own process group, output to ``log``; ("ok" | "failed" | "timeout", seconds). On
    the time limit the whole group is ended (train_throughput.py runs its configuration in a child)."""
    start = time.perf_counter()
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"start_new_session": True}
    with open(log, "a") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        proc = subprocess.Popen(command, cwd=ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT, **group)
        CURRENT.append(proc)
        try:
            rc = proc.wait(timeout=max(timeout, 1))
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
        finally:
            end_group(proc)
            CURRENT.remove(proc)
    return status, time.perf_counter() - start


def end_group(proc) -> None:
    """End the process group of ``proc`` (nothing if it is gone): SIGTERM, then SIGKILL after 5 seconds."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


def tail(path: Path, chars: int = 2500) -> str:
    return read_from(path, 0)[-chars:]


def read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def run_job(job: dict, args, deadline: float) -> None:
    """Run one job within its limit and what is left of the budget; fill in its record."""
    limits = SMOKE_LIMITS if args.smoke else LIMITS
    log = logs(args) / f"{job['name']}.log"
    job["log"] = str(log.relative_to(Path(args.out).resolve()))
    attempts = job.get("variants") or [job["command"]]
    for stale in logs(args).glob(f"{job['name']}.*"):  # an earlier run's log, JSON or XML in the same folder
        stale.unlink()
    job_end = time.monotonic() + job["limit_s"]
    job["attempts"], job["seconds"] = [], 0.0
    for command in attempts:
        left = min(job_end, deadline) - time.monotonic()
        if left < limits["start"]:
            if job["attempts"]:
                job["reason"] += "; no time left for a smaller batch"
            else:
                job.update(status="skipped", reason=f"time budget spent ({max(left, 0):.0f} s left)")
            break
        before = log.stat().st_size if log.exists() else 0
        status, seconds = run_process(command, left, log)
        job["seconds"] += seconds
        job["attempts"].append({"command": " ".join(command), "status": status, "seconds": round(seconds, 1)})
        job["status"] = status
        out_of_memory = status == "failed" and any(s in read_from(log, before).lower() for s in OOM)
        if status == "timeout":
            job["reason"] = f"time limit ({left:.0f} s) reached"
        elif out_of_memory:
            job["reason"] = "out of memory" + (" at each batch tried" if len(job["attempts"]) > 1 else "")
        if not out_of_memory:
            break
    if job["status"] == "ok" or (job["kind"] == "tests" and job["status"] == "failed"):
        try:  # failing tests still leave their report
            job["result"] = READERS[job["kind"]](job, args)
            if job["status"] == "ok":
                job.pop("reason", None)
        except (OSError, ValueError, KeyError, ElementTree.ParseError) as err:
            if job["status"] == "ok":
                job.update(status="failed", reason=f"no readable result: {err}")
    if job["status"] in ("failed", "timeout"):
        job["error_tail"] = tail(log)
        errors = [line.strip() for line in tail(log, 20000).splitlines() if "Error" in line]
        if job["status"] == "failed" and not job.get("reason") and errors:
            job["reason"] = errors[-1][:200]


def read_tests(job, args) -> dict:
    """Counts and the failing tests from pytest's JUnit XML."""
    root = ElementTree.parse(logs(args) / "gpu-tests.xml").getroot()
    outcomes = []
    for case in root.iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        outcome = {"failure": "failed", "error": "error"}.get(kind, kind)
        message = next((c.get("message", "") for c in case if c.tag == kind), "")
        outcomes.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                         "message": message[:300]})
    counts = {k: sum(o["outcome"] == k for o in outcomes) for k in ("passed", "failed", "error", "skipped")}
    return {**counts, "tests": outcomes}


def read_train(job, args) -> dict:
    data = json.loads((logs(args) / f"{job['name']}.json").read_text())
    result = data["results"][job["config"]]
    if job["config"] == "trl_padded":
        job["settings"]["trl_batch"] = data["args"]["trl_batch"]
    return result


def read_eval(job, args) -> dict:
    return json.loads((logs(args) / f"{job['name']}.json").read_text())


READERS = {"tests": read_tests, "train": read_train, "eval": read_eval}


# ---------------------------------------------------------------- estimate, in the background
def write_model_config(args, shape: str) -> Path:
    """A folder holding config.json of the benchmark's shape (dropout 0, as benchmarked), for estimate."""
    layers, hidden, heads, vocab = (SMOKE_SHAPES if args.smoke else SHAPES)[shape]
    folder = Path(args.out).resolve() / "model_configs" / shape
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "bloom", "architectures": ["BloomForCausalLM"], "vocab_size": vocab, "hidden_size": hidden,
        "n_layer": layers, "n_head": heads, "hidden_dropout": 0.0, "attention_dropout": 0.0}, indent=2))
    return folder


def estimate_command(job: dict, args, gpu_kind: str) -> list[str]:
    """``bloomz-tune estimate`` with the overrides train_throughput.py applies to the recipe for ``ours``."""
    st = job["settings"]
    recipe = f"recipes/{'full' if st['full'] else 'lora'}_{st['shape']}.yaml"
    overrides = [f"model.name_or_path={write_model_config(args, st['shape'])}", f"model.attention={st['attn']}",
                 "model.hidden_dropout=0.0", "model.attention_dropout=0.0", f"data.max_length={st['max_length']}",
                 f"training.per_device_train_batch_size={st['rows']}", "training.gradient_accumulation_steps=1",
                 f"training.gradient_checkpointing={str(st['gradient_checkpointing']).lower()}"]
    if args.device == "cpu":
        overrides.append("training.bf16=false")
    return [sys.executable, "-m", "bloomz_tune.cli", "estimate", recipe, *overrides, "--gpu", gpu_kind, "--json"]


def run_estimate(job: dict, args, gpu_kind: str) -> dict:
    """Memory per GPU that estimate gives this configuration (one process, DDP's figure)."""
    limits = SMOKE_LIMITS if args.smoke else LIMITS
    command = estimate_command(job, args, gpu_kind)
    record = {"command": " ".join(command[1:]).replace("-m bloomz_tune.cli", "bloomz-tune", 1)}
    try:
        done = subprocess.run(command, cwd=ROOT, env=child_env(), capture_output=True, text=True,
                              timeout=limits["estimate"])
    except subprocess.TimeoutExpired:
        return {**record, "status": "timeout"}
    if done.returncode:
        return {**record, "status": "failed", "error_tail": (done.stdout + done.stderr)[-1500:]}
    e = json.loads(done.stdout)
    key = "with_checkpointing" if job["settings"]["gradient_checkpointing"] else "without_checkpointing"
    return {**record, "status": "ok", "memory_gib": e["memory"]["ddp"][key] / GiB,
            "states_gib": {k: v / GiB for k, v in e["memory"]["ddp"]["states"].items()},
            "target_share": e["target_share"], "parameters": e["parameters"], "trainable": e["trainable"]}


def gpu_kind(gpu: dict | None) -> str:
    """estimate's --gpu for this machine's GPU (it sets the memory it compares with, not the estimate)."""
    name = (gpu or {}).get("name", "")
    for key, kind in (("H200", "h200"), ("H100", "h100"), ("L40S", "l40s")):
        if key in name:
            return kind
    if "A100" in name:
        return "a100-80g" if float((gpu or {}).get("memory_mib", 0)) > 50000 else "a100-40g"
    return "h100"


# ---------------------------------------------------------------- the machine
def machine(args) -> dict:
    """What ran this, without importing torch here (the jobs hold the GPU, not this process)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    gpu = None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            name, memory, driver = [x.strip() for x in out.stdout.splitlines()[0].split(",")]
            gpu = {"name": name, "memory_mib": memory, "driver": driver}
    except (OSError, subprocess.TimeoutExpired, ValueError):
        pass
    return {"device": args.device, "gpu": gpu, "cpus": os.cpu_count(), "python": platform.python_version(),
            "packages": versions}


# ---------------------------------------------------------------- results
def write_results(args, meta: dict, jobs: list[dict]) -> None:
    """results.json and results.md, each written whole and then renamed into place."""
    out = Path(args.out)
    public = [{k: v for k, v in job.items() if k not in ("variants",)} for job in jobs]
    for name, text in (("results.json", json.dumps({"meta": meta, "jobs": public}, indent=2, default=str)),
                       ("results.md", markdown(meta, jobs))):
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        tmp.replace(out / name)


def num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(meta: dict, jobs: list[dict]) -> str:
    m = meta["machine"]
    gpu = m["gpu"] or {}
    pk = m["packages"]
    lines = [f"# GPU check ({'smoke, tiny shapes' if meta['smoke'] else 'bloom-560m and bloom-1b7 shapes'})", "",
             f"- machine: {gpu.get('name', 'no GPU seen')} ({gpu.get('memory_mib', '-')} MiB, driver "
             f"{gpu.get('driver', '-')}), {m['cpus']} CPUs, Python {m['python']}, device `{m['device']}`",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v),
             f"- command: `{meta['command']}`",
             f"- started {meta['started']}, {meta['wall_s']:.0f} s of a {meta['budget_s']:.0f} s budget"
             + ("" if meta["finished"] else " (still running or stopped: partial results)"), ""]
    lines += tests_section(jobs) + train_section(jobs, meta["settings"]) + eval_section(jobs) + jobs_section(jobs)
    return "\n".join(lines) + "\n"


def tests_section(jobs) -> list[str]:
    job = next(j for j in jobs if j["kind"] == "tests")
    r = job.get("result") or {}
    lines = ["## GPU-only tests", "", "`pytest -k cuda tests/test_bloom.py tests/test_gpu_only.py`: flex backward "
             "under gradient checkpointing, packed == alone in bf16 (sdpa, flex; bf16 weights, fp32 weights under "
             "autocast), one attention bias per forward under CUDA's bf16 autocast.", "",
             "| status | passed | failed | errors | skipped | seconds |", "|---|---|---|---|---|---|",
             f"| {job['status']} | {r.get('passed', '-')} | {r.get('failed', '-')} | {r.get('error', '-')} | "
             f"{r.get('skipped', '-')} | {num(job.get('seconds'), '.0f')} |", ""]
    bad = [t for t in r.get("tests", []) if t["outcome"] in ("failed", "error")]
    lines += [f"- {t['outcome']}: `{t['test']}`: {t['message'][:200]}" for t in bad]
    return lines + ([""] if bad else [])


def train_section(jobs, s: dict) -> list[str]:
    lines = ["## Training throughput and memory", "",
             f"benchmarks/train_throughput.py, one configuration per process, rows of {s['max_length']} tokens, "
             f"synthetic xP3-like data, {s['warmup']} warm-up steps ({s['flex_warmup']} for flex) and {s['steps']} "
             f"timed steps; ours: {s['rows']} packed rows a step, TRL packed: {s['trl_packed_rows']} packed row(s), "
             "TRL padded: the batch shown (gc: gradient checkpointing). "
             "Peak = CUDA allocator peak (on CPU: resident set). Estimate = `bloomz-tune estimate` memory per GPU "
             "(1 GPU, DDP row) with the benchmark's rows, length, attention, dropout 0, checkpointing and the "
             "recipe's precision; it assumes targets are the share of tokens shown, the benchmark's data has the "
             "share measured (target tok/s over real tok/s).", "",
             "| configuration | status | real tok/s | target tok/s | real tok/step | targets | peak GiB | "
             "estimate GiB | estimate / peak | TFLOP/s | MFU | tok/s vs trl_padded | peak vs trl_padded |",
             "|" + "---|" * 13]
    train = [j for j in jobs if j["kind"] == "train"]
    for job in train:
        r, st = job.get("result") or {}, job["settings"]
        base = next((j.get("result") for j in train if j["group"] == job["group"] and j["config"] == "trl_padded"
                     and j.get("result")), None)
        est = job.get("estimate") or {}
        batch = f", batch {st['trl_batch']}" if "trl_batch" in st else ""
        if job["status"] == "ok" and len(job.get("attempts", [])) > 1:
            batch += " (larger ones ran out of memory)"
        share = r["target_tokens_per_s"] / r["real_tokens_per_s"] if r.get("real_tokens_per_s") else None
        cells = [f"{job['name']}{batch}", job["status"] + (f": {job['reason']}" if job.get("reason") else ""),
                 num(r.get("real_tokens_per_s"), ",.0f"), num(r.get("target_tokens_per_s"), ",.0f"),
                 num(r.get("real_tokens_per_step"), ",.0f"), num(share, ".1%"), num(r.get("peak_memory_gib"), ".2f"),
                 estimate_cell(est),
                 num(est["memory_gib"] / r["peak_memory_gib"] if est.get("memory_gib") and r.get("peak_memory_gib")
                     else None, ".2f"),
                 num(r.get("tflops"), ".1f"), num(r.get("mfu"), ".1%"),
                 num(r["real_tokens_per_s"] / base["real_tokens_per_s"] if base and r else None, ".2f")
                 + "x" * bool(base and r),
                 num(r["peak_memory_gib"] / base["peak_memory_gib"] if base and r else None, ".2f")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def estimate_cell(est: dict) -> str:
    if est.get("status") != "ok":
        return est.get("status", "-")
    return f"{est['memory_gib']:.2f} (targets {est['target_share']:.0%})"


def eval_section(jobs) -> list[str]:
    lines = ["## Evaluation throughput", "",
             "benchmarks/eval_throughput.py: the same requests (every prompt of every task on the bundled fixture "
             "rows), the same random BLOOM in fp32, batch 8; lm_eval's HFLM.loglikelihood against ours (packed: "
             "8 rows of packed.PACK_WIDTH tokens a forward, the default on BLOOM).", "",
             "| shape | status | requests | lm_eval req/s | ours, one row per request | ours, shared prompts | "
             "ours, packed | max abs dlogp | same choices |", "|---|---|---|---|---|---|---|---|---|"]
    for job in (j for j in jobs if j["kind"] == "eval"):
        r = job.get("result") or {}
        sc = r.get("scorers", {})
        ref = sc.get("lm_eval HFLM.loglikelihood", {})
        plain = sc.get("bloomz_tune, no prompt sharing", {})
        shared = sc.get("bloomz_tune (shared prompts)", {})
        packed = sc.get("bloomz_tune (packed, default)", {})

        def rate(row):
            return f"{row['requests_per_s']:,.1f} ({row['vs_lm_eval']:.2f}x)" if row else "-"

        ours = [row for row in (plain, shared, packed) if row]
        worst = max((row["max_abs_dlogp"] for row in ours), default=None)
        same = all(row["same_choices"] for row in ours) if ours else None
        lines.append(f"| {job['settings']['shape']} | {job['status']} | {r.get('requests', '-')} | "
                     f"{num(ref.get('requests_per_s'), ',.1f')} | {rate(plain)} | {rate(shared)} | {rate(packed)} | "
                     f"{num(worst, '.1e')} | {'-' if same is None else ('yes' if same else 'no')} |")
    return lines + [""]


def jobs_section(jobs) -> list[str]:
    lines = ["## Jobs", "", "| job | status | seconds | limit s | log |", "|---|---|---|---|---|"]
    for job in jobs:
        lines.append(f"| {job['name']} | {job['status']}{': ' + job['reason'] if job.get('reason') else ''} | "
                     f"{num(job.get('seconds'), '.0f')} | {job['limit_s']} | {job.get('log', '-')} |")
    return lines


# ---------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.download_wheels:
        return download_wheels()
    jobs = plan(args)
    if args.list:
        for job in jobs:
            print(f"{job['name']:<28} {job['kind']:<6} limit {job['limit_s']:>4} s  {job.get('reason', '')}")
        return 0
    start, started = time.monotonic(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    deadline = start + args.budget
    logs(args).mkdir(parents=True, exist_ok=True)
    meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "device_command": COMMAND,
            "install": INSTALL, "smoke": args.smoke, "settings": SMOKE_SETTINGS if args.smoke else SETTINGS,
            "budget_s": args.budget, "started": started, "wall_s": 0.0,
            "finished": False, "machine": machine(args)}

    def save():
        meta["wall_s"] = time.monotonic() - start
        write_results(args, meta, jobs)

    def stop(signum, frame):
        raise Stopped(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    save()
    kind = gpu_kind(meta["machine"]["gpu"])
    ours = [j for j in jobs if j["kind"] == "train" and j["config"] == "ours" and j["status"] == "pending"]
    pool = ThreadPoolExecutor(max_workers=2 if args.device != "cpu" else 1)
    estimates = {j["name"]: pool.submit(run_estimate, j, args, kind) for j in ours}
    try:
        for job in jobs:
            if job["status"] == "pending":
                print(f"[{time.monotonic() - start:5.0f} s] {job['name']} ...", flush=True)
                run_job(job, args, deadline)
                print(f"[{time.monotonic() - start:5.0f} s] {job['name']}: {job['status']} "
                      f"{job.get('reason', '')}", flush=True)
            collect_estimates(jobs, estimates, wait=0)
            save()
        collect_estimates(jobs, estimates, wait=max(deadline - time.monotonic(), 1))
        meta["finished"] = True
    except Stopped as why:
        for proc in list(CURRENT):
            end_group(proc)
        for job in jobs:
            if job["status"] == "pending":
                job.update(status="skipped", reason=f"stopped ({why})")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        save()
    print(f"wrote {Path(args.out) / 'results.json'} and results.md in {time.monotonic() - start:.0f} s", flush=True)
    return 0


def collect_estimates(jobs, estimates, wait: float) -> None:
    """Put finished estimates beside their configurations; with ``wait``, wait that long for the rest."""
    end = time.monotonic() + wait
    for job in jobs:
        future = estimates.get(job["name"])
        if future is None or "estimate" in job:
            continue
        try:
            job["estimate"] = future.result(timeout=max(end - time.monotonic(), 0)) if wait else (
                future.result() if future.done() else None)
        except TimeoutError:
            job["estimate"] = {"status": "timeout"}
        except Exception as err:  # a crash in the thread: recorded, never fatal
            job["estimate"] = {"status": "failed", "error_tail": repr(err)}
        if job["estimate"] is None:
            del job["estimate"]


if __name__ == "__main__":
    sys.exit(main())
