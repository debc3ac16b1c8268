"""Training: the Trainer subclass, the run directory, checks before a run, the token budget, ``estimate``.

``trainer`` (BloomzTrainer: our loss, throughput log, metrics file), ``rundir`` (one run at a time, resume,
overwrite), ``preflight`` (every input checked before anything is written), ``budget`` (global batch, tokens,
epochs), ``estimate`` (memory, tokens and time from a model's config alone), ``throughput`` (FLOPs and MFU) and
``trackers`` (TensorBoard, W&B).

May import: every stage below it (recipe, tasks, mixture, tokens, model, evaluation). Never the Hub, the CLI or
the API facade.
"""
