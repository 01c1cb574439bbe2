"""JSON for the errors gunicorn answers itself, before the request reaches Flask.

A request line over ``limit_request_line`` (a very long ``GET /predict?query=...``), malformed
headers or chunking are rejected by gunicorn's parser with a small HTML page. gunicorn.conf.py swaps
in :func:`write_json_error` in each worker, so those answers are ``{"error": ...}`` like every other
error of the service. (gunicorn is pinned in requirements.txt; the tests cover this path.)
"""

from __future__ import annotations

import json

from gunicorn import util


def write_json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """Drop-in for ``gunicorn.util.write_error``: same status line, a JSON body."""
    message = f"{reason}: {mesg}" if mesg else reason
    if status_int == 414:
        message += "; send long texts with POST /predict"
    body = json.dumps({"error": message}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    """Make this worker's gunicorn answer its own errors in JSON."""
    util.write_error = write_json_error
