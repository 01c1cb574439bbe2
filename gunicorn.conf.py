"""gunicorn settings for the newsknn prediction service (``gunicorn --config gunicorn.conf.py
app.wsgi:app``), tuned from the environment so the container needs no other file.

Environment (defaults in brackets):
  NEWSKNN_BIND [0.0.0.0:8000]   address to listen on
  NEWSKNN_WORKERS [min(2, CPUs)] worker processes; each holds its own model (~0.6 GB resident)
  NEWSKNN_THREADS [4]           request threads per worker (gthread)
  NEWSKNN_TORCH_THREADS [CPUs / workers]  torch intra-op threads per worker
  NEWSKNN_TIMEOUT [120]         seconds a silent worker may take (covers loading the model)
  NEWSKNN_PRELOAD [0]           1: load the model once in the master and fork the workers from it
  NEWSKNN_LOG_LEVEL [info]
plus the app's own NEWSKNN_* variables (paths, limits; see app/config.py).

Why these choices:
- No ``preload_app`` by default: the model is loaded by each worker after the fork, when gunicorn
  imports app.wsgi there. PyTorch's intra-op thread pool can deadlock in a child forked after the
  parent used it (pytorch#49555, gunicorn#2478), so by default torch is never imported in the
  master. ``NEWSKNN_PRELOAD=1`` loads the model in the master instead: the workers then share its
  pages copy-on-write (bench/memory_bench.py measured 217 MB instead of 532 MB proportional memory
  per worker) and boot faster. On Linux with this torch build it is tested to serve without
  hanging (tests/test_app.py, one worker x two torch threads and two workers x one), but it stays
  opt-in: the deadlock depends on the OpenMP runtime torch was built with.
- The master still checks the artifacts before forking (``on_starting``, torch-free): a missing or
  mismatched model/index stops start-up with one ``error: ...`` line naming the path and the fix,
  before any worker boots, rather than a worker crash loop.
- ``gthread`` workers: one thread runs a long prediction while others answer ``/health``; the
  worker's heartbeat runs in its main loop, so a long request does not get the worker killed.
- Workers x torch threads = CPUs: on a 2-core box, two workers with one torch thread each serve
  two predictions at once without oversubscribing the cores.
"""

from __future__ import annotations

import os
import resource
import sys
import time


def _env_int(name: str, default: int) -> int:
    """A positive integer from the environment (app.config's rule); a bad value stops start-up
    with one line."""
    from app.config import env_int
    from newsknn.errors import UserError

    try:
        return env_int(os.environ, name, default)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _cpus() -> int:
    """CPUs this process may run on (respects taskset/cpuset, unlike os.cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _env_flag(name: str) -> bool:
    """A 0/1 switch from the environment (unset: off); a bad value stops start-up with one line."""
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    print(f"error: {name} must be 1 or 0; got {raw!r}", file=sys.stderr)
    sys.exit(2)


wsgi_app = "app.wsgi:app"
bind = [os.environ.get("NEWSKNN_BIND", "").strip() or "0.0.0.0:8000"]
workers = _env_int("NEWSKNN_WORKERS", min(2, _cpus()))
worker_class = "gthread"
threads = _env_int("NEWSKNN_THREADS", 4)
preload_app = _env_flag("NEWSKNN_PRELOAD")
timeout = _env_int("NEWSKNN_TIMEOUT", 120)
graceful_timeout = 30
keepalive = 5
limit_request_line = 8190          # the most gunicorn allows: room for GET /predict?query=...
accesslog = "-"                    # access log to stdout, error log to stderr (container logs)
errorlog = "-"
loglevel = os.environ.get("NEWSKNN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
control_socket_disable = True      # no gunicornc socket in $HOME; several instances may run
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"    # heartbeat files off the (possibly overlay) disk in containers

# Inherited by the workers, read by app.config: split the cores between the workers.
os.environ.setdefault("NEWSKNN_TORCH_THREADS", str(max(1, _cpus() // workers)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars in the log


def on_starting(server) -> None:
    """Check params and artifacts in the master, without torch, before any worker is forked."""
    from newsknn.errors import UserError

    try:
        from app.artifacts import check_artifacts
        from app.config import load_settings

        summary = check_artifacts(load_settings())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    server.log.info("artifacts ok: model %(model)s, index %(index)s (%(count)d vectors of "
                    "dimension %(dimension)d), %(labels)d labels", summary)
    server.log.info("%d worker(s) x %d threads, %s torch thread(s) each", workers, threads,
                    os.environ["NEWSKNN_TORCH_THREADS"])


def post_fork(server, worker) -> None:
    """In the new worker: time its boot, make gunicorn's own error pages JSON, and (preloaded)
    give the worker its own share of torch threads."""
    from app import server_errors

    server_errors.install()
    if server.cfg.preload_app:  # NEWSKNN_PRELOAD=1 or --preload
        import torch  # already imported by the master's app

        torch.set_num_threads(int(os.environ["NEWSKNN_TORCH_THREADS"]))
    worker.newsknn_started = time.monotonic()


def post_worker_init(worker) -> None:
    """Log when a worker has loaded its model, how long it took and its peak memory."""
    seconds = time.monotonic() - getattr(worker, "newsknn_started", time.monotonic())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker.log.info("worker %s ready: model loaded in %.1f s, peak RSS %.0f MB", worker.pid,
                    seconds, peak_mb)
