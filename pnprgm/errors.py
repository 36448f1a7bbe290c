"""The one exception type for bad user input.

Its message is a single line that names the problem and the fix; the CLI prints it without a traceback.
"""


class UserError(ValueError):
    """Bad input from a user (a file, a name, a parameter): one line, naming the problem and the fix."""


def differ(names: list[str]) -> str:
    """``"changed: a, b"``: the settings a refusal names (setting names are nouns of either number, so no verb)."""
    return f"changed: {', '.join(names)}"
