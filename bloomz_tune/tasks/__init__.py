"""Held-out evaluation tasks: which they are, their languages and prompts, and how their data is read.

The task table (``table``), what each kind of task means (``kinds``: prompts, row normalisation, the text
columns contamination compares, its name on a model card) and the readers of the authors' release folders and
Hub snapshots (``releases``). No torch and no model: the mixture stage reads this to refuse held-out data in
training mixtures and to measure contamination; the evaluation stage reads it to score.

May import: ``bloomz_tune.errors``, ``bloomz_tune.schema``, ``bloomz_tune.storage`` (and nothing of other stages).
"""
