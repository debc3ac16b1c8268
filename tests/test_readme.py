"""The README's two set-up commands stay true: CI runs the test command verbatim; the demo uses the default."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", quick, flags=re.S)


def test_readme_has_two_quick_start_commands():
    demo, test = _commands()
    assert demo.endswith("bloomz_tune/finetune.py recipes/tiny_demo.yaml")
    assert test.endswith("-m pytest -q")
    assert demo.split(" && ")[:3] == test.split(" && ")[:3], "both commands set up the same way"


def test_ci_runs_the_readme_test_command_verbatim():
    _, test = _commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test in ci
