"""Turning a /predict request into texts and a top_k, or into a 4xx with a message saying what to fix.

Kept apart from the handlers (and free of Flask) so every rule is in one place and unit-testable:
whatever a client sends, the answer is a prediction or an :class:`ApiError` with a 4xx status, never
an exception that would surface as a 500.

Texts longer than ``max_text_chars`` are cut there rather than refused: the tokenizer keeps only the
model's window (``model.max_seq_length`` tokens, far fewer characters) anyway, and the cut bounds the
tokenizer's work on a huge post.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from app.config import Settings

ALLOWED_FIELDS = frozenset({"text", "texts", "top_k"})
ALLOWED_ARGS = frozenset({"query", "top_k"})


class ApiError(Exception):
    """A client mistake: an HTTP status (4xx) and a one-line message for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass(frozen=True)
class PredictRequest:
    """A validated request: the texts (cut to ``max_text_chars``), top_k, and its shape."""

    texts: list[str]
    top_k: int | None
    batch: bool  # True for {"texts": [...]}: answer {"predictions": [...]}


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages a client can act on."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def check_text(value: Any, where: str, settings: Settings) -> str:
    """A usable text: a string with something besides whitespace, cut to ``max_text_chars``."""
    if not isinstance(value, str):
        raise ApiError(400, f"{where} must be a string; got {json_type(value)}")
    if not value.strip():
        raise ApiError(400, f"{where} is empty or only whitespace")
    return value[:settings.max_text_chars]


def check_top_k(value: Any, settings: Settings) -> int | None:
    """``top_k`` (optional): a whole number in 1..max_top_k."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"top_k must be a whole number; got {json_type(value)} {value!r}")
    if not 1 <= value <= settings.max_top_k:
        raise ApiError(400, f"top_k must be between 1 and {settings.max_top_k}; got {value}")
    return value


def decode_json_body(body: bytes, is_json: bool) -> dict:
    """The request body as a JSON object; a wrong content type or broken JSON is an ApiError."""
    if not is_json:
        raise ApiError(415, "send the body as JSON with the header Content-Type: application/json")
    if not body.strip():
        raise ApiError(400, 'the body is empty; send a JSON object like {"text": "..."}')
    try:
        payload = json.loads(body)
    except UnicodeDecodeError:
        raise ApiError(400, "the body is not UTF-8 encoded JSON") from None
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(payload, dict):
        raise ApiError(400, f'the body must be a JSON object like {{"text": "..."}}; '
                            f"got {json_type(payload)}")
    return payload


def parse_json_request(payload: dict, settings: Settings) -> PredictRequest:
    """``{"text": ...}`` or ``{"texts": [...]}``, with an optional ``top_k``."""
    unknown = sorted(set(payload) - ALLOWED_FIELDS)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}; "
                            "allowed: text or texts, and top_k")
    top_k = check_top_k(payload.get("top_k"), settings)
    if "text" in payload and "texts" in payload:
        raise ApiError(400, "give either text or texts, not both")
    if "texts" in payload:
        texts = payload["texts"]
        if not isinstance(texts, list):
            raise ApiError(400, f"texts must be an array of strings; got {json_type(texts)}")
        if not texts:
            raise ApiError(400, "texts is empty; send at least one text")
        if len(texts) > settings.max_batch:
            raise ApiError(400, f"texts holds {len(texts)} items; at most {settings.max_batch} "
                                "per request")
        return PredictRequest([check_text(text, f"texts[{i}]", settings)
                               for i, text in enumerate(texts)], top_k, batch=True)
    if "text" not in payload:
        raise ApiError(400, 'missing field text: send {"text": "..."} or {"texts": ["...", ...]}')
    return PredictRequest([check_text(payload["text"], "text", settings)], top_k, batch=False)


def parse_query_args(args: Mapping[str, Sequence[str]], settings: Settings) -> PredictRequest:
    """``GET /predict?query=...&top_k=...``; ``args`` maps each name to all its values."""
    unknown = sorted(set(args) - ALLOWED_ARGS)
    if unknown:
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)}; "
                            "allowed: query, top_k")
    for name, values in args.items():
        if len(values) > 1:
            raise ApiError(400, f"query parameter {name} is given {len(values)} times; give it once")
    if "query" not in args:
        raise ApiError(400, "missing query parameter query: GET /predict?query=...")
    text = check_text(args["query"][0], "query", settings)
    top_k = None
    if "top_k" in args:
        raw = args["top_k"][0].strip()
        if not re.fullmatch(r"-?[0-9]{1,9}", raw):
            raise ApiError(400, f"top_k must be a whole number; got {raw!r}")
        top_k = check_top_k(int(raw), settings)
    return PredictRequest([text], top_k, batch=False)
