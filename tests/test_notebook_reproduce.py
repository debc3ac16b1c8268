"""The BLOOMZ-560m notebook runs top to bottom offline, its parameters cell swapped for the tiny demo recipe, a
10-step run and the local evaluation fixtures (the defaults need the Hub and a GPU)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # minutes: multi-process or notebook runs (the fast lane skips them)

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "reproduce_bloomz_560m.ipynb"
FIXTURES = ROOT / "tests" / "fixtures" / "eval"


def test_reproduce_notebook_executes_on_the_tiny_recipe(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1
    defaults = parameters[0].source
    for default in ('RECIPE = "recipes/lora_560m.yaml"', "OVERRIDES = []", "EVAL_DATA_DIRS = {}"):
        assert default in defaults
    overrides = [f"output_dir={tmp_path / 'run'}", f"data.mixture_cache={tmp_path / 'mixtures'}",
                 "training.max_steps=10", "eval.sanity=false"]
    data_dirs = {"xcopa": str(FIXTURES / "xcopa"), "xwinograd": str(FIXTURES / "xwinograd")}
    parameters[0].source = "\n".join([  # papermill-style: the parameters cell replaced
        'RECIPE = "recipes/tiny_demo.yaml"', f"OVERRIDES = {overrides!r}", 'GPU = "h100"',
        'EVAL_TASKS = ["xcopa", "xwinograd"]', 'EVAL_LANGUAGES = ["zh"]', "EVAL_LIMIT = 3", "EVAL_PROMPTS = 2",
        f"EVAL_DATA_DIRS = {data_dirs!r}", 'DEVICE = "cpu"'])
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs)
    for line in ("model tiny random BLOOM", "parameters 724,736, trainable 196,608", "memory per GPU",
                 "tokens per step", "steps 10, ", "time at 40% MFU on 1 x h100"):
        assert line in text  # the estimate, as `bloomz-tune estimate` prints it
    assert "10 steps of 16 rows: 0.06 epochs over the mixture" in text  # known once the mixture is built
    assert "reusing finished build" in text  # train() found the build the notebook made
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "# Mixture datasheet" in markdown and "## By language" in markdown and "## Language sampling" in markdown
    assert "| dataset | language | examples | median | max |" in markdown  # the evaluation table ...
    assert "XCOPA | zh" in markdown and "bloomz-560m" in markdown  # ... beside the published numbers
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the mixture's distribution, the loss curve, the accuracy chart
    assert (tmp_path / "run" / "eval" / "zero_shot" / "accuracy.png").is_file()
    assert "zero-shot" in (tmp_path / "run" / "final" / "README.md").read_text(encoding="utf-8").lower()
