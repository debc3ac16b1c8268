"""Logging set-up for a run or a command: INFO on rank 0 and ERROR elsewhere, for ours and the libraries' loggers;
progress bars only where they render (``runtime.interactive``). Kept apart from ``runtime`` because it loads
transformers and datasets, which the light stages never import."""

from __future__ import annotations

import logging

from bloomz_tune.runtime import interactive, is_main_process


def setup_logging() -> None:
    """INFO on rank 0, ERROR elsewhere, for ours and the libraries' loggers; progress bars only if interactive."""
    level = logging.INFO if is_main_process() else logging.ERROR
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    import datasets
    import transformers

    transformers.utils.logging.set_verbosity(logging.WARNING if is_main_process() else logging.ERROR)
    datasets.utils.logging.set_verbosity(logging.WARNING if is_main_process() else logging.ERROR)
    import huggingface_hub.utils

    if interactive():
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
        huggingface_hub.utils.enable_progress_bars()
    else:
        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
        huggingface_hub.utils.disable_progress_bars()
