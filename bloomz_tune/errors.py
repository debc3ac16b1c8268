"""Errors that bloomz_tune raises for bad input. The command line turns them into a message and exit code 2."""

from __future__ import annotations

import sys


class BloomzTuneError(Exception):
    """A problem with the user's input (file, key, row) that the user can fix."""


class TrainingDiverged(BloomzTuneError):
    """Training met a non-finite loss or gradient norm and stopped; the command exits with ``code`` (3), not 2,
    so a script can tell a diverged run from bad input."""

    code = 3


class ConfigError(BloomzTuneError):
    """One or more problems in a recipe or spec file, all reported at once."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


def exit_code(command, *args) -> int:
    """Run a command-line ``command(*args)``; its return code, or 2 with a one-line message (no traceback) when it
    raises a ``BloomzTuneError`` (3 for ``TrainingDiverged``). The one place where an error becomes an exit code."""
    try:
        return command(*args)
    except BloomzTuneError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "code", 2)
