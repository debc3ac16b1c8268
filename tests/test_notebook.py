"""The quickstart notebook runs top to bottom through the public API (a short run: the full demo's learning is
checked once, in test_finetune_e2e.py)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # minutes: multi-process or notebook runs (the fast lane skips them)

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_quickstart_notebook_executes():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "MAX_STEPS = None" in parameters[0].source
    parameters[0].source = "MAX_STEPS = 40"  # papermill-style: override the parameters cell
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 3  # the mixture's distribution chart, the loss curve, the evaluation's accuracy
    text = "".join(o.get("text", "") for o in outputs)
    assert "reusing finished build" in text  # train() found the build the notebook made
    assert "step     40/40" in text  # the per-step line
    final = [c for c in nb.cells if c.cell_type == "code" and "results = train(recipe)" in c.source][0]
    sanity = final.outputs[-1]["data"]["text/plain"]
    assert "'before'" in sanity and "'after'" in sanity
    assert "'model.safetensors'" in text and "-> merged" in text  # merge, then the same questions to both
    answers = [line.split("-> merged ")[1].split(", adapter ") for line in text.splitlines() if "-> merged" in line]
    assert len(answers) == 2 and all(a == b for a, b in answers)
    assert "would upload: README.md, adapter_config.json, adapter_model.safetensors" in text
    evaluation = [c for c in nb.cells if c.cell_type == "code" and "evaluate(" in c.source][0]
    assert "xwinograd" in evaluation.outputs[-1]["data"]["text/plain"]  # the results table
