"""One exception type for mistakes a user can fix (bad params, missing files, bad input).

Stages turn it into a single ``error: ...`` line and a non-zero exit instead of a traceback, so the
message says what is wrong and how to fix it.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., object])


class UserError(Exception):
    """A problem the user can fix; its message names what is wrong and what to do about it."""


def exit_on_user_error(main: F) -> F:
    """Decorate a stage's ``main`` so a :class:`UserError` ends it with one line and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
