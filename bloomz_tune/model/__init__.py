"""The BLOOM model: loading (Hub id or local folder, safetensors), LoRA, the patched attention and head, the loss.

``bloom`` is the one seam with transformers' BLOOM internals (segment-isolated ALiBi attention, logits only
where needed); ``loading`` loads models, tokenizers and adapters; ``loss`` is BLOOMZ's per-sample target loss;
``tiny`` builds the small random BLOOMs of the demo and the tests.

May import: the recipe and schema, ``bloomz_tune.tokens``. Never the mixture, training, evaluation or the Hub.
"""
