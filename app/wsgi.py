"""The WSGI entry point for gunicorn: ``gunicorn --config gunicorn.conf.py app.wsgi:app``.

gunicorn imports this module in each worker after forking (``preload_app`` is off unless
``NEWSKNN_PRELOAD=1``), so every worker loads its own model and torch never runs in the master.
Unusable artifacts are normally caught earlier by the master's check (gunicorn.conf.py); should a
worker still fail to load them, it prints the one-line reason and exits with gunicorn's "app
failed to load" code, on which the master shuts down instead of respawning workers in a loop.
Preloaded, the master imports this module itself, and the same line and exit end start-up.
"""

from __future__ import annotations

import logging
import sys

from newsknn.errors import UserError

from app import create_app

APP_LOAD_ERROR = 4  # gunicorn.arbiter.Arbiter.APP_LOAD_ERROR: the master halts, no respawn

# The app's own log lines (e.g. a logged 500) go where gunicorn's error log goes, in its format.
_gunicorn_log = logging.getLogger("gunicorn.error")
if _gunicorn_log.handlers:
    _app_log = logging.getLogger("newsknn")
    _app_log.handlers = list(_gunicorn_log.handlers)
    _app_log.setLevel(_gunicorn_log.level)
    _app_log.propagate = False

try:
    app = create_app()
except UserError as exc:
    print(f"error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(APP_LOAD_ERROR) from None
