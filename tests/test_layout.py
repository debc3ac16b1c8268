"""finetune.py runs by path, so no module of the package may share a name with the stdlib or a library."""

import importlib.util
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bloomz_tune"
LIBRARIES = {"datasets", "evaluate", "peft", "trl", "transformers", "accelerate", "tokenizers", "torch",
             "huggingface_hub", "jinja2", "yaml", "tqdm", "matplotlib", "numpy", "safetensors", "lm_eval",
             "deepspeed", "pyarrow", "pandas", "packaging", "filelock", "requests", "regex", "psutil"}


def test_no_module_shadows_a_library():
    names = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    names.discard("__init__")
    names.discard("__pycache__")
    clashes = sorted(n for n in names if n in sys.stdlib_module_names or n in LIBRARIES)
    assert not clashes, f"these modules would shadow a library when finetune.py runs by path: {clashes}"
    installed = sorted(n for n in names
                       if importlib.util.find_spec(n) is not None
                       and not str(importlib.util.find_spec(n).origin or "").startswith(str(PACKAGE)))
    assert not installed, f"these modules share a name with an installed package: {installed}"
