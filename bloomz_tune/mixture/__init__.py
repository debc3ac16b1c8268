"""The mixture stage: a YAML spec in, a reproducible Arrow dataset and its datasheet out.

``spec`` (the spec's schema and checks), ``sources`` (Hub datasets, local files, published xP3 / xP3x / Aya
releases), ``templates`` and ``promptsource`` (prompt templates and their sandboxed rendering), ``build``
(render, cap, sample by language, drop held-out data, dedupe, split), ``builds`` (building into a folder or the
cache, finding a finished build), ``datasheet`` (counts per language, task, source) and ``contamination``
(evaluation examples overlapping training rows).

May import: the recipe and schema, the task table (``bloomz_tune.tasks``). Never torch, a model, tokenizers'
counting (``bloomz_tune.tokens``), training or scoring code.
"""
