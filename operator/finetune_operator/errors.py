"""Errors that end a command with a clear message and no traceback."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; the message says what and where.

    The CLI prints the message alone and exits with `exit_code`.
    """

    exit_code = 1

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
