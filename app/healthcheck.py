"""The container's HEALTHCHECK: exit 0 when ``GET /health`` answers 200, else 1.

Python's urllib instead of curl, so the image needs no extra package. The port follows
``NEWSKNN_BIND`` like gunicorn.conf.py does. Usage: ``python app/healthcheck.py`` (run as a
script, it imports only the standard library, not the app).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def health_url(bind: str | None = None) -> str:
    """``http://127.0.0.1:<port>/health`` for a bind like ``0.0.0.0:8000`` (default port 8000)."""
    bind = (bind if bind is not None else os.environ.get("NEWSKNN_BIND", "")) or "0.0.0.0:8000"
    port = bind.rsplit(":", 1)[1] if ":" in bind else "8000"
    return f"http://127.0.0.1:{port}/health"


def main() -> int:
    url = health_url()
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            ok = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
