"""bloomz_tune: reproduce BLOOMZ on public BLOOM weights.

Build an xP3-style multitask mixture, instruction-tune BLOOM with LoRA or in full, evaluate zero-shot on
held-out tasks and share the result. See README.md for the commands.
"""

__version__ = "0.1.0"
