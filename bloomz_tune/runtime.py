"""Process-level helpers: who is rank 0, one print helper, quiet logs on other ranks."""

from __future__ import annotations

import logging
import os


def rank() -> int:
    """This process's global rank (0 when not launched by a distributed launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def print0(*args, **kwargs) -> None:
    """print() on rank 0 only, flushed, so logs from many processes stay readable."""
    if is_main_process():
        print(*args, **kwargs, flush=True)


def setup_logging() -> None:
    """INFO on rank 0, ERROR elsewhere, for ours and the libraries' loggers."""
    level = logging.INFO if is_main_process() else logging.ERROR
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity(logging.WARNING if is_main_process() else logging.ERROR)
    datasets.utils.logging.set_verbosity(logging.WARNING if is_main_process() else logging.ERROR)
    if not is_main_process():
        datasets.disable_progress_bars()
