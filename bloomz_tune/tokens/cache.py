"""The tokenized train split kept beside a mixture build, so that a run tokenizes once::

    <build>/tokenized/<tokenizer>-len<max_length>-<overlong>-<hash>/<split>.arrow (+ <split>.json, written last)

The folder's name holds a hash of the tokenizer's whole definition, EOS, ``max_length`` and ``overlong``; the
info file holds the build's fingerprint, row count and the data file's SHA-256. Either changing gives a new
tokenization; a data file whose content no longer matches its hash (cut short, changed on disk) is tokenized again.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from bloomz_tune.mixture.datasheet import read_datasheet
from bloomz_tune.runtime import print0
from bloomz_tune.storage import file_digest, write_json
from bloomz_tune.tokens.tokenizing import Tokenized, tokenize_rows, tokenizer_id

CACHE_DIR = "tokenized"


CACHE_FORMAT = 1  # bump when tokenize_rows would give other rows for the same inputs


def cache_name(tokenizer, max_length: int, overlong: str) -> str:
    """The cache folder for these settings: the tokenizer's name and a hash of its whole definition (vocabulary,
    merges, normalizer, pre-tokenizer), EOS, ``max_length`` and ``overlong``; any change gives a new folder."""

    backend = getattr(tokenizer, "backend_tokenizer", None)
    definition = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    key = f"{CACHE_FORMAT}\0{definition}\0{tokenizer.eos_token_id}\0{max_length}\0{overlong}"
    return f"{tokenizer_id(tokenizer)}-len{max_length}-{overlong}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def tokenized_split(built_dir: str | Path, rows, split: str, tokenizer, max_length: int, overlong: str = "skip",
                    num_proc: int | None = None) -> Tokenized:
    """A built mixture's split tokenized, from ``<build>/tokenized/<cache_name>/<split>.arrow`` when it is there
    for this build, else tokenized (``tokenize_rows``) and stored there for the next run. A reused split has no
    per-row token counts (``input_tokens``/``target_tokens`` are None): they went to the datasheet the first time."""
    import datasets


    folder = Path(built_dir) / CACHE_DIR / cache_name(tokenizer, max_length, overlong)
    data, info = folder / f"{split}.arrow", folder / f"{split}.json"
    fingerprint = read_datasheet(built_dir)["fingerprint"]
    if info.is_file() and data.is_file():
        try:
            found = json.loads(info.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            found = {}
        if found.get("fingerprint") == fingerprint and found.get("rows") == len(rows):
            # The content hash, not the size: a file cut short or changed on disk would crash Arrow (or worse).
            if found.get("sha256") == file_digest(data):
                return Tokenized(datasets.Dataset.from_file(str(data)), found["counts"], None, None)
            print0(f"the tokenized split {data} is not the file that was written (its content hash differs): "
                   f"tokenizing again")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        info.unlink(missing_ok=True)  # the info file, written last, is what marks the data file finished
    except OSError as err:  # a read-only build: tokenize into memory, keep nothing
        print0(f"note: cannot keep the tokenized split beside the build ({err.strerror}: {folder}); tokenizing "
               f"in memory")
        return tokenize_rows(rows, tokenizer, max_length, overlong, num_proc)
    partial = folder / f".{split}.arrow.tmp-{os.getpid()}"
    try:
        done = tokenize_rows(rows, tokenizer, max_length, overlong, num_proc, partial)
        os.replace(partial, data)
    finally:
        partial.unlink(missing_ok=True)
    write_json(info, {"fingerprint": fingerprint, "rows": len(rows), "counts": done.counts,
                      "max_length": max_length, "overlong": overlong, "sha256": file_digest(data)})
    done.dataset = datasets.Dataset.from_file(str(data))
    return done
