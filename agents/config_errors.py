"""An error as the one line a command prints; a pydantic ``ValidationError`` names the field and the value received.

pydantic's own report spans several lines (and a link to its docs); a command says what was wrong
in one line on stderr, so the commands (training's and `fakeface serve`), whose configs are
pydantic dataclasses, print their errors through :func:`one_line`. It lives in `agents`, the
lowest package, beside `agents.command_line` whose options fill those configs.
"""

from __future__ import annotations

from pydantic import ValidationError


def one_line(err: BaseException) -> str:
    """``err``'s message in one line: for a ``ValidationError``, its first problem.

    Returns:
        ``str(err)`` for any other error; for a ``ValidationError`` the config, the field, what
        is wrong and the value received, e.g. ``"EvalConfig.batch_size: Input should be greater
        than or equal to 1, received 0."``. A validator of ours keeps its own message (it
        already says what was received); a rule across fields names no field.
    """
    if not isinstance(err, ValidationError):
        return str(err)
    first = err.errors(include_url=False)[0]
    where = ".".join([err.title, *(str(part) for part in first["loc"])])
    if first["type"] == "value_error":  # raised by a validator of ours, with its own wording
        text = str(first["ctx"]["error"])
    else:
        text = f"{first['msg']}, received {first['input']!r}."
    more = err.error_count() - 1
    return f"{where}: {text}" + (f" ({more} more problem(s) after this one)" if more else "")
