"""The one exception type for bad user input.

Its message is a single line that names the problem and the fix; the CLI prints it without a traceback.
"""


class UserError(ValueError):
    """Bad input from a user (a file, a name, a parameter): one line, naming the problem and the fix."""


def differ(names: list[str]) -> str:
    """``"a, b differ"`` / ``"a differs"``: the changed settings of a refusal, in agreement."""
    return f"{', '.join(names)} {'differs' if len(names) == 1 else 'differ'}"
