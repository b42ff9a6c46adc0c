"""User-facing errors: one class so the CLI can print them as one line instead of a traceback."""


class SpgdError(ValueError):
    """Bad input from the user (a file, a name, a value); the message says what and what is allowed."""


def first_line(e: BaseException) -> str:
    """An exception as "Type: first line of its message" (a library's multi-line error inside one of ours).

    >>> first_line(RuntimeError("bad file\\nmore detail"))
    'RuntimeError: bad file'
    """
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
