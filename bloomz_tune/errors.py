"""Errors that bloomz_tune raises for bad input. The command line turns them into a message and exit code 2."""

from __future__ import annotations


class BloomzTuneError(Exception):
    """A problem with the user's input (file, key, row) that the user can fix."""


class ConfigError(BloomzTuneError):
    """One or more problems in a recipe or spec file, all reported at once."""

    def __init__(self, problems: list[str], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")
