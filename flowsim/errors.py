"""User-facing errors: the CLI prints these as one clear line each, without a traceback."""

from __future__ import annotations


class FlowsimError(Exception):
    """A mistake in what the user gave us (a file, a flag, a value), not a bug."""


class ScenarioError(FlowsimError):
    """A scenario that cannot be read or validated.

    ``problems`` holds one message per bad field, each already naming the file,
    the dotted field path (with line number where known), the bad value and what
    is allowed, so the CLI can print them one per line.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
