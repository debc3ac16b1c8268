"""Process-level helpers: who is rank 0, one print helper, quiet logs on other ranks, bars only on a terminal."""

from __future__ import annotations

import os
import sys


def rank() -> int:
    """This process's global rank (0 when not launched by a distributed launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def print0(*args, **kwargs) -> None:
    """print() on rank 0 only, flushed, so logs from many processes stay readable."""
    if is_main_process():
        print(*args, **kwargs, flush=True)


def interactive() -> bool:
    """Whether progress bars are shown: on rank 0, when stdout is a terminal or a notebook.

    Written to a file or a pipe, a bar's carriage-return fragments and the log lines run together; there the
    log is one plain line per step instead.
    """
    if not is_main_process():
        return False
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if type(shell).__name__ == "ZMQInteractiveShell":  # a Jupyter kernel: bars render as widgets
        return True
    stream = sys.stdout
    return bool(getattr(stream, "isatty", None) and stream.isatty())


