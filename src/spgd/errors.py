"""User-facing errors: one class so the CLI can print them as one line instead of a traceback."""


class SpgdError(ValueError):
    """Bad input from the user (a file, a name, a value); the message says what and what is allowed."""
