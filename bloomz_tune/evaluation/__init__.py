"""Zero-shot evaluation: rank classification as BLOOMZ scored it, its report, and generation.

``scoring`` (log-likelihoods of each choice, accuracy per prompt, the sanity check), ``packed`` (prompts packed
with their choices as branches, the scorer BLOOM gets), ``report`` (median over prompts, results.json and
results.md beside the published numbers) and ``generation`` (greedy answers).

May import: the recipe and schema, ``bloomz_tune.tasks``, ``bloomz_tune.tokens``, ``bloomz_tune.model``. Never
training code, the Hub, the CLI or the API facade.
"""
