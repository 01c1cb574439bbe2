"""The container: Dockerfile lint (hadolint) and layout, the build context (.dockerignore), and the
container's CMD run as-is (with the Dockerfile's ENV) over the miniature pipeline's artifacts.

No Docker engine runs here, so the image is not built; what it would run is.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, VENV_BIN, tool_env
from serving import (children, dockerfile_cmd, dockerfile_env, dockerfile_instructions,
                     final_stage, healthcheck_cmd, maps_torch, start_server)

ARTIFACTS = ["models/finetuned", "models/index/finetuned", "data/prepared/labels.json"]


def test_hadolint_is_clean():
    result = subprocess.run([str(Path(VENV_BIN) / "hadolint"), "Dockerfile"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def stages() -> list[list[tuple[str, str]]]:
    instructions = dockerfile_instructions()
    starts = [i for i, (instr, _) in enumerate(instructions) if instr == "FROM"]
    return [instructions[a:b] for a, b in zip(starts, starts[1:] + [len(instructions)])]


def copy_sources(stage: list[tuple[str, str]]) -> list[str]:
    """The build-context paths a stage COPYs (not --from another stage)."""
    sources = []
    for instruction, arguments in stage:
        if instruction != "COPY" or "--from" in arguments:
            continue
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        sources += [word.rstrip("/") for word in words[:-1]]
    return sources


def test_dockerfile_is_multi_stage_slim_cpu_and_non_root():
    builder, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert re.fullmatch(r"python:3\.11-slim\S* AS builder", builder[0][1], re.IGNORECASE)
    assert re.fullmatch(r"python:3\.11-slim\S*", final[0][1])
    builder_runs = " ".join(args for instr, args in builder if instr == "RUN")
    assert "build-essential" in builder_runs  # hnswlib compiles from source here ...
    assert "pip wheel" in builder_runs and "-r requirements.txt" in builder_runs
    assert "https://download.pytorch.org/whl/cpu" in builder_runs
    final_runs = " ".join(args for instr, args in final if instr == "RUN")
    for compiler in ("build-essential", "gcc", "g++", "apt-get install"):
        assert compiler not in final_runs  # ... and no compiler reaches the final image
    assert "--no-index" in final_runs  # only the wheels built above: CPU torch, never CUDA
    assert "torch==2.13.0" in (ROOT / "requirements.txt").read_text().split()

    users = [args for instr, args in final if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert [args for instr, args in final if instr == "EXPOSE"] == ["8000"]
    assert dockerfile_env()["HF_HUB_OFFLINE"] == "1"
    assert healthcheck_cmd()[:1] == ["python"]
    assert dockerfile_cmd() == ["gunicorn", "--config", "gunicorn.conf.py", "app.wsgi:app"]

    sources = copy_sources(final)
    for path in ("requirements.txt", "params.yaml", "gunicorn.conf.py", "newsknn", "app",
                 *ARTIFACTS):
        assert path in sources, path
    for path in sources:
        if path not in ARTIFACTS:
            assert (ROOT / path).exists(), path


def test_dockerfile_copies_what_the_pipeline_makes(mini_repo):
    """After `dvc repro`, every artifact the image COPYs exists (the build would not fail)."""
    for path in copy_sources(final_stage(dockerfile_instructions())):
        assert (mini_repo / path).exists() or (ROOT / path).exists(), path


# --- .dockerignore, matched the way Docker matches it -----------------------------------------

def docker_pattern(pattern: str) -> re.Pattern:
    """Go filepath.Match syntax plus ``**`` (any number of directories), as Docker uses it."""
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out + r"\Z")


def dockerignore_excludes(path: str, lines: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching pattern wins,
    a pattern matching a parent directory matches everything in it."""
    excluded = False
    parts = path.split("/")
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        pattern = docker_pattern(line.lstrip("!").strip().strip("/"))
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = not exception
    return excluded


def test_dockerignore_keeps_data_caches_and_history_out():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    for path in (".venv/bin/python", ".git/HEAD", ".dvc/cache/files/md5/ab/cdef",
                 "data/raw/20news-bydate.tar.gz", "data/prepared/train.jsonl",
                 "data/prepared/test.jsonl", "data/embeddings/finetuned/train.npz",
                 "app/__pycache__/wsgi.cpython-311.pyc", "newsknn/__pycache__/index.pyc",
                 ".pytest_cache/v/cache/nodeids", "models/index/pretrained/index.bin",
                 "run-embed.log"):
        assert dockerignore_excludes(path, lines), path
    for path in ("requirements.txt", "params.yaml", "gunicorn.conf.py", "Dockerfile",
                 "app/__init__.py", "app/wsgi.py", "newsknn/classifier.py",
                 "models/finetuned/model.safetensors", "models/finetuned/1_Pooling/config.json",
                 "models/index/finetuned/index.bin", "models/index/finetuned/meta.json",
                 "data/prepared/labels.json"):
        assert not dockerignore_excludes(path, lines), path
    for source in copy_sources(final_stage(dockerfile_instructions())):
        assert not dockerignore_excludes(source, lines), source


# --- the container's command, run as the container would run it -------------------------------

@pytest.fixture(scope="module")
def container_like(mini_repo, tmp_path_factory):
    """The Dockerfile's CMD with its ENV, in the mini repo (the image's WORKDIR layout)."""
    env = dockerfile_env()
    server = start_server(mini_repo, tmp_path_factory.mktemp("cmd-logs"), env,
                          cmd=dockerfile_cmd())
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_container_cmd_serves_with_default_workers(container_like):
    server = container_like
    health = server.get("/health")
    assert health.status == 200 and health.json["status"] == "ready"
    reply = server.post_json("/predict", {"text": "NASA plans another shuttle mission to orbit"})
    assert reply.status == 200 and set(reply.json) == {"label", "label_id", "score", "neighbors"}
    workers = children(server.process.pid)
    assert len(workers) == 2, server.logs()  # the 2-core default
    assert not maps_torch(server.process.pid)  # torch only in the workers (no preload)
    assert all(maps_torch(pid) for pid in workers)
    logs = server.logs()
    assert "artifacts ok" in logs and "worker(s) x 4 threads" in logs
    assert '"POST /predict HTTP/1.1" 200' in (server.log_dir / "stdout.log").read_text()


def test_container_healthcheck_command(container_like):
    env = dict(tool_env(), NEWSKNN_BIND=container_like.env["NEWSKNN_BIND"])
    result = subprocess.run(healthcheck_cmd(), cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    closed = dict(env, NEWSKNN_BIND="127.0.0.1:9")  # nothing listens there: unhealthy
    result = subprocess.run(healthcheck_cmd(), cwd=ROOT, env=closed, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1


def test_container_stops_gracefully(container_like):
    assert container_like.stop() == 0
    assert "Traceback" not in container_like.logs(tail=100_000)
