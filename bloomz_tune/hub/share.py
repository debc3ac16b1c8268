"""Share a run: check final/, merge a LoRA adapter into its base model, push to the Hub with a model card.

    bloomz-tune push RUN_DIR --repo-id you/bloomz-560m-lora [--private|--public] [--merged] [--dry-run]
    bloomz-tune merge RUN_DIR --output DIR

``push`` (alias ``share``) uploads, in one commit through huggingface_hub, the adapter (or with ``--merged``
the LoRA merged into the base model), as safetensors, the tokenizer, the resolved recipe, the mixture
datasheet and the model card (card.py). It first checks that final/ is whole (weights readable,
tokenizer loads, weights in safetensors: pickled files such as training_args.bin are never uploaded), then the
repo id and the token, and writes nothing into the run directory: a failed push leaves it byte-identical. The
token comes from ``HF_TOKEN`` or ``hf auth login`` and is never written anywhere.

``merge`` writes base + adapter as one model folder (safetensors, tokenizer, card) into a new folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from bloomz_tune.errors import BloomzTuneError
from bloomz_tune.evaluation.generation import first_nonfinite
from bloomz_tune.hub.card import model_card, read_run
from bloomz_tune.model.config import TOKENIZER_FILES as MODEL_TOKENIZER_FILES
from bloomz_tune.model.loading import load_for_eval, resolve_dtype
from bloomz_tune.storage import write_atomic
from bloomz_tune.training.rundir import RunDir

WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
PICKLED_WEIGHTS = ("adapter_model.bin", "pytorch_model.bin", "pytorch_model.bin.index.json")
CONFIG_FILES = ("adapter_config.json", "config.json", "generation_config.json")
TOKENIZER_FILES = MODEL_TOKENIZER_FILES + ("special_tokens_map.json", "chat_template.jinja")


def write_model_card(run_dir: str | Path, repo_id: str | None = None) -> Path:
    """Write the card into ``run_dir/final/README.md`` with the files that describe the run beside it."""
    run_dir = Path(run_dir)
    final = RunDir(run_dir).final
    if not final.is_dir():
        raise BloomzTuneError(f"{run_dir} has no final/ folder: the run did not finish")
    return write_card_into(final, run_dir, repo_id)


def write_card_into(folder: Path, run_dir: Path, repo_id: str | None = None, merged: bool = False) -> Path:
    """The model card (README.md) and the run's describing files (``RunDir.described_by``: the resolved recipe,
    datasheet and run.json) into ``folder``; returns the card's path."""
    write_atomic(folder / "README.md", model_card(run_dir, repo_id, merged=merged))
    for path in RunDir(run_dir).described_by:
        if path.is_file():
            shutil.copyfile(path, folder / path.name)
    return folder / "README.md"


def check_final(folder: str | Path) -> list[Path]:
    """Check that a model or adapter folder is whole; return the files to upload (never a pickle).

    Whole: a config, safetensors weights whose headers and sizes check out, and a tokenizer that loads.
    """
    from safetensors import safe_open

    folder = Path(folder)
    if not folder.is_dir():
        raise BloomzTuneError(f"{folder} does not exist: the run did not finish (no final/ folder)")
    if not any((folder / f).is_file() for f in CONFIG_FILES[:2]):
        raise BloomzTuneError(f"{folder} holds neither adapter_config.json nor config.json")
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        pickled = [f for f in PICKLED_WEIGHTS if (folder / f).is_file()]
        raise BloomzTuneError(f"{folder} has no safetensors weights" + (
            f" (only pickled {', '.join(pickled)}, which bloomz_tune never uploads)" if pickled else ""))
    for path in weights:
        try:
            with safe_open(str(path), "pt") as f:
                bad = first_nonfinite((name, f.get_tensor(name)) for name in f.keys())
        except Exception as err:  # safetensors raises its own error type for a bad header or a cut file
            raise BloomzTuneError(f"{path} is not a whole safetensors file: {str(err)[:200]}") from err
        if bad:
            raise BloomzTuneError(f"{path}: tensor {bad} holds NaN or infinite values (the training diverged?); "
                                  f"such weights are never pushed or merged")
    if not any((folder / f).is_file() for f in MODEL_TOKENIZER_FILES):
        raise BloomzTuneError(f"{folder} has no tokenizer (tokenizer.json / tokenizer_config.json)")
    from transformers import AutoTokenizer

    try:
        AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise BloomzTuneError(f"the tokenizer in {folder} does not load: {err}") from err
    names = set(WEIGHT_FILES[2:] + CONFIG_FILES + TOKENIZER_FILES)
    return sorted([p for p in folder.iterdir() if p.is_file() and p.name in names] + weights)


def merge(run_dir: str | Path, output: str | Path, dtype: str = "auto") -> Path:
    """Merge the run's LoRA adapter into its base model: ``output`` gets safetensors weights, tokenizer and card.

    The merge is done in float32 and saved in the base checkpoint's dtype (``dtype="auto"``) or ``dtype``.
    ``output`` must not exist or be empty; it is written beside and renamed into place when complete.
    """
    run_dir, output = Path(run_dir), Path(output).expanduser()
    run = read_run(run_dir)
    if not run["recipe"].lora.enabled:
        raise BloomzTuneError(f"{run_dir} is a full fine-tune: {run_dir / 'final'} is already a whole model")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise BloomzTuneError(f"--output {output} already exists and is not empty; give a new folder")
    check_final(RunDir(run_dir).final)
    base = _adapter_base(RunDir(run_dir).final)
    if Path(base).expanduser().is_absolute() and not Path(base).expanduser().is_dir():
        raise BloomzTuneError(f"the adapter's base model {base} (adapter_config.json) is no longer there; put the base "
                              f"model back there, or set base_model_name_or_path in "
                              f"{RunDir(run_dir).final / 'adapter_config.json'} to where it is now")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        _merge_into(run_dir, staging, dtype)
        write_card_into(staging, run_dir, merged=True)
        if output.exists():
            output.rmdir()
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _stored_dtype(final: Path):
    """The dtype the adapter's base checkpoint is stored in, from its config, read before the merge loads it in
    float32 (loading sets the config's dtype to the loaded one); float32 when the config names none."""
    import torch
    from transformers import AutoConfig

    base = _adapter_base(final)
    stored = getattr(AutoConfig.from_pretrained(base), "dtype", None)
    stored = getattr(torch, stored, None) if isinstance(stored, str) else stored
    return stored if isinstance(stored, torch.dtype) else torch.float32


def _adapter_base(final: Path) -> str:
    try:
        return str(json.loads((final / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BloomzTuneError(f"{final / 'adapter_config.json'} does not name its base model "
                              f"(base_model_name_or_path)") from None


def _merge_into(run_dir: Path, folder: Path, dtype: str) -> None:

    target = resolve_dtype(dtype)
    if target == "auto":
        target = _stored_dtype(RunDir(run_dir).final)
    model, tokenizer = load_for_eval(str(RunDir(run_dir).final), dtype="float32", device="cpu")
    merged = model.merge_and_unload()
    merged.to(target).save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))


def _network_errors() -> tuple:
    """OSError (Hub HTTP errors, offline mode, sockets) and the Hub client's own transport error base."""
    from huggingface_hub.errors import HfHubHTTPError

    return (OSError,) + tuple(c for c in HfHubHTTPError.__mro__[1:] if c.__name__ == "HTTPError")


def check_target(repo_id: str | None) -> str:
    """The repo id is valid and a token is available (the token's value is never shown)."""
    from huggingface_hub import get_token
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id or "")
    except HFValidationError as err:
        raise BloomzTuneError(f"invalid Hub repo id {repo_id!r}: use USER/NAME ({str(err).splitlines()[0]})") from None
    if not get_token():
        raise BloomzTuneError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")
    return repo_id


def check_online() -> None:
    """A push at the end of a run will find the Hub client online (known before training, not after a day of it)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise BloomzTuneError("hub.push_to_hub: the Hub cannot be reached: offline mode is on (HF_HUB_OFFLINE=1); "
                              "unset it, or train without hub.push_to_hub and push later with `bloomz-tune push`")


def _upload(api, repo_id: str, files: dict[str, Path | bytes], private: bool) -> str:
    from huggingface_hub import CommitOperationAdd
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=src if isinstance(src, bytes) else str(src))
                  for name, src in sorted(files.items())]
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        api.create_commit(repo_id, operations, commit_message="Upload BLOOMZ-style fine-tune (bloomz_tune)",
                          repo_type="model")
    except OfflineModeIsEnabled:
        raise BloomzTuneError(f"cannot push {repo_id}: offline mode is on (HF_HUB_OFFLINE=1); unset it") from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        what = ("the token may not write to it (no permission)" if status in (401, 403) else
                f"the Hub answered {status}" if status else "the Hub refused")
        raise BloomzTuneError(f"could not push to {repo_id}: {what}: {str(err).splitlines()[0]}") from None
    except _network_errors() as err:
        raise BloomzTuneError(f"could not push to {repo_id}: the connection to the Hub failed "
                              f"({type(err).__name__}: {err}); run the push again") from None
    return str(url)


def push(run_dir: str | Path, repo_id: str, private: bool = True, merged: bool = False, dry_run: bool = False,
         api=None) -> dict:
    """Push a finished run to the Hub: {"repo_id", "url" (None when ``dry_run``), "files", "card"}.

    Uploads final/'s adapter (or, with ``merged``, the LoRA merged into its base model) in safetensors, the
    tokenizer, recipe.resolved.yaml, datasheet.json and a fresh model card, in one commit. ``dry_run`` checks
    everything that needs no network and returns what would be uploaded. Nothing in ``run_dir`` is written.
    """
    run_dir = Path(run_dir)
    read_run(run_dir)  # a run directory, or a clear error
    files: dict[str, Path | bytes] = {p.name: p for p in check_final(RunDir(run_dir).final)}
    if not dry_run:
        check_target(repo_id)
    with tempfile.TemporaryDirectory(prefix="bloomz_tune_merged_") as tmp:
        if merged:
            files = {p.name: p for p in check_final(merge(run_dir, Path(tmp) / "model"))}
        files.update({p.name: p for p in RunDir(run_dir).described_by if p.is_file()})
        card = model_card(run_dir, repo_id, merged=merged)
        files["README.md"] = card.encode("utf-8")
        url = None if dry_run else _upload(api or _hf_api(), repo_id, files, private)
    return {"repo_id": repo_id, "url": url, "files": sorted(files), "card": card}


def _hf_api():
    from huggingface_hub import HfApi

    return HfApi()
