"""Finding a dataset's prompts in a promptsource checkout.

promptsource keeps one ``templates.yaml`` per dataset, or per (dataset, subset), at
``promptsource/templates/<dataset>/[<subset>/]templates.yaml``; a Hub id with an organisation (``GEM/xlsum``) is
a nested folder (docs/bloomz.md §2.1). A mixture spec names the checkout once (``promptsource:``) and a source
asks for its dataset's prompts with ``template_file: promptsource``; this module turns the source's dataset id
and config into that file, or into a one-line problem naming the nearest folders the checkout has.

Try it (a small checkout in the promptsource layout)::

    python -c "from bloomz_tune.mixture.promptsource import templates_root, prompt_file; \\
        root = templates_root('tests/fixtures/mixture/promptsource'); print(prompt_file(root, 'nyu-mll/glue', 'mrpc'))"
"""

from __future__ import annotations

import difflib
from pathlib import Path

from bloomz_tune.errors import ConfigError

TEMPLATE_FILE = "templates.yaml"
TEMPLATES_DIR = Path("promptsource") / "templates"
# The value of a source's ``template_file`` that asks for its dataset's prompts from the spec's checkout.
FROM_CHECKOUT = "promptsource"


def templates_root(folder: str | Path) -> Path:
    """The ``promptsource/templates`` folder of a checkout (or that folder itself); ConfigError when ``folder`` is
    not a promptsource checkout."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError([f"promptsource: {str(folder)!r} is not a folder (clone the promptsource fork BLOOMZ "
                           f"used: git clone -b tr13 https://github.com/Muennighoff/promptsource)"])
    if (folder / TEMPLATES_DIR).is_dir():
        return folder / TEMPLATES_DIR
    if folder.name == "templates" and next(folder.glob(f"*/{TEMPLATE_FILE}"), None) is not None:
        return folder
    raise ConfigError([f"promptsource: {str(folder)!r} is not a promptsource checkout (it has no "
                       f"{TEMPLATES_DIR.as_posix()}/ folder of <dataset>/[<subset>/]{TEMPLATE_FILE} files)"])


def available(root: Path) -> list[str]:
    """Every ``<dataset>[/<subset>]`` of the checkout that has a templates file, sorted."""
    return sorted(p.parent.relative_to(root).as_posix() for p in root.rglob(TEMPLATE_FILE))


def candidates(dataset: str, subset: str | None) -> list[str]:
    """The folders that may hold a source's prompts, in the order tried: ``<id>/<subset>``, then ``<id>`` (a
    dataset whose prompts are not split by subset), for the full Hub id and then, for ``org/name``, ``name``
    alone (promptsource names many datasets by their old ids without an organisation: ``ag_news``, ``glue``)."""
    ids = [dataset] + ([dataset.split("/", 1)[1]] if "/" in dataset else [])
    return [f"{i}/{subset}" if subset else i for i in ids] + (list(ids) if subset else [])


def prompt_file(root: Path, dataset: str, subset: str | None, folder: str | None = None) -> Path:
    """The templates file for a source: ``folder`` (``<dataset>[/<subset>]``) when given, else the first of
    ``candidates(dataset, subset)`` the checkout has. ConfigError naming what was looked for and the nearest."""
    tried = [folder.strip("/")] if folder else candidates(dataset, subset)
    for name in tried:
        path = root / name / TEMPLATE_FILE
        # a dataset folder with subset folders has no templates file of its own, so the fallback cannot
        # pick a wrong subset's prompts
        if path.is_file():
            return path
    have = available(root)
    nearest = difflib.get_close_matches(tried[0], have, n=5, cutoff=0.5) or [
        h for h in have if h.split("/")[0] == tried[0].split("/")[0]][:5]
    hint = f"nearest: {', '.join(nearest)}" if nearest else f"the checkout has {len(have)} dataset folders"
    what = f"folder {tried[0]!r}" if folder else f"dataset {dataset!r}" + (f" subset {subset!r}" if subset else "")
    raise ConfigError([f"no promptsource templates for {what} in {root} (looked for "
                       f"{', '.join(t + '/' + TEMPLATE_FILE for t in tried)}); {hint}"])
