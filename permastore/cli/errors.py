"""Errors a command reports as one line on stderr with a non-zero exit."""


class CliError(Exception):
    """A user-facing failure: message printed, exit code returned, no traceback."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
