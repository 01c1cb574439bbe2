"""Reading ``params.yaml`` and checking the values the stages rely on.

Every stage reads the same file (DVC tracks the keys each one uses), so the checks live here once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import yaml

from newsknn.errors import UserError

PARAMS_FILE = Path("params.yaml")


def load_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    """Load the whole params file; a missing or malformed file is a :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"params file not found: {path} (run from the repository root)")
    try:
        params = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"{path} is not valid YAML: {exc}".replace("\n", " ")) from None
    if not isinstance(params, dict):
        raise UserError(f"{path} must hold a mapping of sections, got {type(params).__name__}")
    return params


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    """Return one section of the params, or say which one is missing."""
    value = params.get(name)
    if not isinstance(value, dict):
        raise UserError(f"params.yaml has no '{name}' section")
    return value


def require_choice(value: Any, key: str, choices: Iterable[str]) -> str:
    """Check that ``value`` is one of ``choices``; ``key`` names it in the error."""
    choices = list(choices)
    if value not in choices:
        raise UserError(f"{key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def require_number(value: Any, key: str, *, low: float | None = None, high: float | None = None,
                   low_inclusive: bool = True, integer: bool = False) -> float:
    """Check that ``value`` is a number within bounds; ``key`` names it in the error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{key} must be a number; got {value!r}")
    if integer and int(value) != value:
        raise UserError(f"{key} must be a whole number; got {value!r}")
    if low is not None and (value < low or (not low_inclusive and value == low)):
        bound = ">=" if low_inclusive else ">"
        raise UserError(f"{key} must be {bound} {low}; got {value!r}")
    if high is not None and value > high:
        raise UserError(f"{key} must be <= {high}; got {value!r}")
    return int(value) if integer else value
