"""Helpers for the HTTP tests: start gunicorn on 127.0.0.1, wait for it (bounded), talk JSON to it.

Servers log to files (a pipe could fill up and stall them) whose tails go into failure messages.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import ROOT, tool_env

if str(ROOT) not in sys.path:  # `app` is imported from the repository root, not installed
    sys.path.insert(0, str(ROOT))

SERVE_CMD = ["gunicorn", "--config", "gunicorn.conf.py", "app.wsgi:app"]
READY_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Reply:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


@dataclass
class Server:
    """A running gunicorn started by :func:`start_server`."""

    process: subprocess.Popen
    port: int
    log_dir: Path
    env: dict = field(default_factory=dict)

    def logs(self, tail: int = 4000) -> str:
        out = (self.log_dir / "stdout.log").read_text(errors="replace")[-tail:]
        err = (self.log_dir / "stderr.log").read_text(errors="replace")[-tail:]
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def request(self, method: str, path: str, body=None, headers: dict | None = None,
                timeout: float = 60.0) -> Reply:
        return request(self.port, method, path, body, headers, timeout)

    def get(self, path: str, **kwargs) -> Reply:
        return self.request("GET", path, **kwargs)

    def post_json(self, path: str, payload, **kwargs) -> Reply:
        return self.request("POST", path, json.dumps(payload),
                            {"Content-Type": "application/json"}, **kwargs)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict:
        """Poll /health until it answers 200 (at most ``timeout`` s); fail with the logs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode} before it was "
                                     f"ready\n{self.logs()}")
            try:
                reply = self.get("/health", timeout=5)
                if reply.status == 200:
                    return reply.json
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"server not ready within {timeout} s\n{self.logs()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL if it lingers; returns the exit code."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def request(port: int, method: str, path: str, body=None, headers: dict | None = None,
            timeout: float = 60.0) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        connection.close()


def start_server(cwd: Path, log_dir: Path, env: dict | None = None,
                 cmd: list[str] | None = None) -> Server:
    """Start ``cmd`` (default: the serving command) in ``cwd``, bound to a free local port."""
    port = free_port()
    full_env = tool_env()
    full_env.update(env or {})
    full_env["NEWSKNN_BIND"] = f"127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "stdout.log", "wb") as out, open(log_dir / "stderr.log", "wb") as err:
        process = subprocess.Popen(cmd or SERVE_CMD, cwd=cwd, env=full_env, stdout=out,
                                   stderr=err, stdin=subprocess.DEVNULL)
    return Server(process, port, log_dir, full_env)


def run_until_exit(cwd: Path, env: dict, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """Run the serving command expecting it to stop by itself (bad artifacts) within ``timeout``."""
    full_env = tool_env()
    full_env.update(env)
    full_env["NEWSKNN_BIND"] = f"127.0.0.1:{free_port()}"
    return subprocess.run(SERVE_CMD, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def maps_torch(pid: int) -> bool:
    """Whether process ``pid`` has libtorch mapped (i.e. imported torch)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


# --- the Dockerfile, read the way `docker build` reads it (enough of it for the tests) ---

def dockerfile_instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs: comments dropped, continuation lines joined."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not current:
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            logical.append(current.strip())
        current = ""
    pairs = []
    for text in logical:
        instruction, _, arguments = text.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def exec_form(arguments: str) -> list[str]:
    """A JSON (exec form) argument list, or the shell form split like /bin/sh would."""
    arguments = arguments.strip()
    return json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)


def dockerfile_cmd(path: Path = ROOT / "Dockerfile") -> list[str]:
    cmds = [args for instr, args in dockerfile_instructions(path) if instr == "CMD"]
    assert cmds, "Dockerfile has no CMD"
    return exec_form(cmds[-1])


def dockerfile_env(path: Path = ROOT / "Dockerfile") -> dict[str, str]:
    """The final stage's ENV settings (``ENV A=1 B=2`` form)."""
    stages = final_stage(dockerfile_instructions(path))
    env: dict[str, str] = {}
    for instruction, arguments in stages:
        if instruction == "ENV":
            for token in shlex.split(arguments):
                name, _, value = token.partition("=")
                env[name] = value
    return env


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (instr, _) in enumerate(instructions) if instr == "FROM"]
    return instructions[starts[-1]:]


def healthcheck_cmd(path: Path = ROOT / "Dockerfile") -> list[str]:
    checks = [args for instr, args in dockerfile_instructions(path) if instr == "HEALTHCHECK"]
    assert checks, "Dockerfile has no HEALTHCHECK"
    match = re.search(r"\bCMD\s+(.*)$", checks[-1])
    assert match, checks[-1]
    return exec_form(match.group(1))
