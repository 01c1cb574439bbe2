"""Helpers for the serving benchmarks: start/stop gunicorn with the project's config, a bounded
load generator on 127.0.0.1, and per-process memory from /proc.

Why here: serve_bench.py and memory_bench.py both need a real gunicorn (the project's
``gunicorn.conf.py`` and ``app.wsgi:app``), started and stopped inside the script, and a client
that cannot run away (bounded request count, per-request timeout, overall deadline).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

import benchlib


def default_conf() -> str:
    """The gunicorn config next to the artifacts (cwd), else the project's own."""
    return "gunicorn.conf.py" if Path("gunicorn.conf.py").is_file() else \
        str(benchlib.PROJECT_ROOT / "gunicorn.conf.py")


class Server:
    """``python -m gunicorn --config <conf> [extra] app.wsgi:app`` on 127.0.0.1:<free port>.

    The server gets its own session (process group), so stopping it can never touch anything
    this script did not start. Its output goes to a temporary log file (``log_text()``).
    """

    def __init__(self, conf: str, env: dict[str, str] | None = None,
                 extra_args: Sequence[str] = ()) -> None:
        self.port = benchlib.free_port()
        self.conf, self.extra_args = conf, list(extra_args)
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.env["NEWSKNN_BIND"] = f"127.0.0.1:{self.port}"
        self.env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(benchlib.PROJECT_ROOT), os.environ.get("PYTHONPATH")) if p)
        self.proc: subprocess.Popen | None = None
        handle, self.log_path = tempfile.mkstemp(prefix="newsknn-bench-gunicorn-", suffix=".log")
        os.close(handle)

    def start(self) -> "Server":
        cmd = [sys.executable, "-m", "gunicorn", "--config", self.conf, *self.extra_args,
               "app.wsgi:app"]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        return self

    def wait_ready(self, timeout: float) -> float:
        """Seconds until GET /health answers 200; raises TimeoutError or RuntimeError (exited)."""
        begun = time.monotonic()
        while time.monotonic() - begun < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-2000:])
            try:
                status, _ = request(self.port, "GET", "/health", timeout=5)
                if status == 200:
                    return time.monotonic() - begun
            except OSError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"/health not ready after {timeout:.0f} s")

    def pids(self) -> tuple[int, list[int]]:
        """(master pid, worker pids)."""
        return self.proc.pid, children(self.proc.pid)

    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""

    def remove_log(self) -> None:
        Path(self.log_path).unlink(missing_ok=True)

    def stop(self, grace: float = 20) -> None:
        """SIGTERM the master (graceful), then SIGKILL the server's own process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of this server only
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's workers of a master)."""
    try:
        return sorted(int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:
                    found.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        return sorted(found)


def memory(pid: int) -> dict:
    """RSS (/proc/<pid>/status) and, where available, PSS and private bytes (smaps_rollup), MB."""
    facts = {"pid": pid, "rss_mb": _mb(benchlib.rss_bytes(pid))}
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        values = {m.group(1): int(m.group(2)) * 1024
                  for m in re.finditer(r"^(\w+):\s+(\d+) kB", rollup, re.M)}
        facts["pss_mb"] = _mb(values.get("Pss"))
        facts["private_mb"] = _mb(values.get("Private_Clean", 0) + values.get("Private_Dirty", 0))
    except OSError:
        pass
    return facts


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def request(port: int, method: str, path: str, body: dict | None = None, timeout: float = 60,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, bytes]:
    """One request (on ``conn`` if given, else a fresh connection); (status, body)."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if payload is not None else {}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def load(port: int, bodies: Sequence[dict], concurrency: int, time_limit: float,
         timeout: float = 120) -> dict:
    """POST each body to /predict from ``concurrency`` threads (keep-alive connections), stopping
    at ``time_limit`` seconds; latencies (s) of the 200 answers, error count, wall time."""
    lock, state = threading.Lock(), {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + time_limit

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        while time.monotonic() < deadline:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= len(bodies):
                break
            for attempt in (1, 2):  # a kept-alive connection the server closed: retry once
                begun = time.perf_counter()
                try:
                    status, _ = request(port, "POST", "/predict", bodies[i], conn=conn)
                    break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
                    stale = isinstance(exc, (ConnectionError, http.client.RemoteDisconnected))
                    if attempt == 2 or not stale:
                        with lock:
                            errors.append(f"{type(exc).__name__}: {exc}")
                        status = None
                        break
            if status is None:
                continue
            seconds = time.perf_counter() - begun
            with lock:
                (latencies.append(seconds) if status == 200 else errors.append(f"HTTP {status}"))
        conn.close()

    begun = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()) + timeout)
    wall = time.perf_counter() - begun
    return {"latencies": latencies, "errors": errors, "wall": wall,
            "timed_out": state["next"] < len(bodies)}


def summary(latencies: Sequence[float], wall: float | None = None, docs_per_request: int = 1
            ) -> dict:
    """p50/p95 in ms and, given the wall time, requests and documents per second."""
    facts = {"requests": len(latencies),
             "p50_ms": _ms(benchlib.percentile(latencies, 50)),
             "p95_ms": _ms(benchlib.percentile(latencies, 95))}
    if wall:
        facts["rps"] = round(len(latencies) / wall, 2)
        facts["docs_per_second"] = round(len(latencies) * docs_per_request / wall, 2)
    return facts


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e3, 2)
