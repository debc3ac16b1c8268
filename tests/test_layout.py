"""The package's shape: no module shadows a library, modules stay readable, the import contracts hold, the code
passes its linter, and the README names every module."""

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_modules_and_functions_stay_readable():
    """Each module is readable in one sitting: at most ~500 lines, no function over ~80 lines."""
    too_big = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 500:
            too_big.append(f"{path.relative_to(PACKAGE)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                too_big.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}() is {node.end_lineno - node.lineno + 1} lines")
    assert not too_big


def test_docs_cite_only_files_in_the_repository():
    """The facts the defaults follow are cited from docs/bloomz.md, a file of this repository."""
    root = PACKAGE.parent
    suffixes = {".py", ".md", ".yaml", ".yml", ".ipynb", ".toml"}
    files = [p for p in root.rglob("*") if p.suffix in suffixes and p.is_file()
             and not {".venv", ".git", "runs"} & set(p.relative_to(root).parts)]
    assert (root / "docs" / "bloomz.md").is_file()
    absent = ("BLOOMZ_" + "FACTS", "PERF_" + "NOTES", "../" + "shared")
    citing = sorted(str(p.relative_to(root)) for p in files if any(a in p.read_text(encoding="utf-8") for a in absent))
    assert not citing


def _tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} is not installed: it is a test dependency (pip install -e '.[test]')")
    return found


def test_import_contracts_hold():
    """Stages import one way and the light stages stay light (pyproject.toml's import-linter contracts)."""
    done = subprocess.run([_tool("lint-imports")], cwd=PACKAGE.parent, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and " KEPT" in done.stdout


def test_ruff_is_clean():
    done = subprocess.run([_tool("ruff"), "check", "bloomz_tune", "tests", "benchmarks"], cwd=PACKAGE.parent,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:]


def test_our_imports_sit_at_the_top():
    """Only the API facade imports our own modules inside functions (to stay light); everywhere else a file's top
    shows what it depends on."""
    late = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset > 0 and id(node) not in typing_only:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any(n == "bloomz_tune" or n.startswith("bloomz_tune.") for n in names) or getattr(node, "level", 0):
                    late.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not late, late


def test_readme_layout_names_every_module():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and rel.parent != Path("."):
            folder = f"{rel.parent}/"
            if not re.search(rf"^\s+{re.escape(folder)}", layout, re.M):
                missing.append(folder)
        elif not re.search(rf"\b{re.escape(rel.name)}\b", layout):
            missing.append(str(rel))
    assert not missing, f"README's Layout section does not name: {missing}"


def test_every_stage_says_its_job_and_what_it_may_import():
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert len(doc) > 100 and "May import" in doc, init
