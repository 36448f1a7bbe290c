"""The one exception type for bad user input.

Its message is a single line that names the problem and the fix; the CLI prints it without a traceback.
"""


class UserError(ValueError):
    """Bad input from a user (a file, a name, a parameter): one line, naming the problem and the fix."""


def differ(names: list[str]) -> str:
    """``"changed: a, b"``: the settings a refusal names (setting names are nouns of either number, so no verb)."""
    return f"changed: {', '.join(names)}"


def first_line(err: BaseException, limit: int = 300, *, named: bool = False) -> str:
    """The first line of an exception's message, at most ``limit`` characters, for a one-line error; its type's name
    when the message is empty (``named``: always prefixed, ``"KeyError: 'x'"``)."""
    text = str(err).strip()
    line = text.splitlines()[0][:limit] if text else ""
    if not line:
        return type(err).__name__
    return f"{type(err).__name__}: {line}" if named else line
