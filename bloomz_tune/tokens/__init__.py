"""Mixture rows into training batches: tokenization as BLOOMZ did it, packing, samplers and collators.

``tokenizing`` (targets with a leading space and EOS, the over-long rule, the tokenized split kept beside a
build, token counts for a datasheet; no torch), ``packing`` (whole samples into fixed-length rows with segment
ids) and ``batches`` (the length-grouped sampler and the collators; torch).

May import: the recipe and schema, the mixture stage. Never a model, training or evaluation code.
"""
