"""Files written so that a reader never sees half of one, and whether the process that wrote one still lives.

Every file bloomz_tune writes that another command later reads (datasheets, results, markers, pointers) goes
through ``write_atomic``: the text goes to a temporary file beside the target, then ``os.replace`` puts it in
place, so a reader sees the old file or the new one, never a part, even when the writer is killed.

``folder_digests`` records the size and SHA-256 of every file of a folder (checkpoint markers, ``final/``, mixture
builds); ``digests_problem`` checks a folder against such a record, so state changed on disk is never trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def write_atomic(path: str | Path, text: str, durable: bool = False) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new one, never a part.

    ``durable``: the text is flushed to disk (fsync) before it takes the name, for markers that vouch for other
    files after a power loss."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: str | Path, data) -> None:
    """``data`` as indented UTF-8 JSON (non-ASCII kept as it is), written atomically."""
    write_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's content, read in 1 MiB blocks (markers record it; readers check it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_digests(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, dict]:
    """``{relative path: {"size", "sha256"}}`` for every file under ``folder`` (names in ``skip`` left out)."""
    return {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": file_digest(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def digests_problem(folder: Path, files) -> str | None:
    """None when every file recorded in ``files`` (``folder_digests``' form) is in ``folder`` with the same content;
    else the first difference, naming the file."""
    if not isinstance(files, dict) or not files:
        return "it records no files"
    for name, want in files.items():
        p = folder / name
        if not isinstance(want, dict):
            return f"its record of {name} is unreadable"
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != want.get("size"):
            return f"{name} is {p.stat().st_size:,} bytes, {want.get('size', 0):,} when it was saved"
        if file_digest(p) != want.get("sha256"):
            return f"{name} has changed since it was saved (its content hash differs)"
    return None
