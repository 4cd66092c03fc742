"""User-facing errors.

Every problem in something a user wrote (a description, a search space, a study, a table)
is raised as :class:`ConfigError` naming the field, so the CLI can print one line and exit 2.
"""

from __future__ import annotations


class ArchlabError(Exception):
    """Base class for errors the CLI reports as one line with exit code 2."""


class ConfigError(ArchlabError, ValueError):
    """A field of a user-written file is wrong.

    ``field`` is a dotted path such as ``stages.down2.blocks[1].heads``; the message says
    what was found and what is allowed.
    """

    def __init__(self, field: str, message: str):
        self.field = _printable(field)
        self.message = _printable(message)
        super().__init__(f"{self.field}: {self.message}" if self.field else self.message)


def _printable(text: str) -> str:
    """One line: control characters (a key holding a newline, a binary file's bytes) shown escaped."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
