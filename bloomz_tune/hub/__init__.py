"""Sharing a finished run: its model card, merging a LoRA adapter into the base model, pushing to the Hub.

``card`` (the model card from the run directory's files), ``share`` (merge and push). Reads finished runs; never
trains or evaluates.

May import: every stage below it. Never the CLI or the API facade.
"""
