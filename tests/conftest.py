"""Shared fixtures: the real archive, a miniature archive cut from it, and a miniature pipeline run.

The miniature pipeline runs the real `dvc repro` once per test session in a temporary copy of the
repository, with a tiny configuration (params_mini), and its artifacts serve the classifier and
web-app tests.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = str(Path(sys.executable).parent)
MINI_TRAIN, MINI_TEST = 12, 5
COPIED = ["dvc.yaml", "params.yaml", "requirements.txt", "pyproject.toml", "stages", "newsknn",
          "app", "gunicorn.conf.py", ".dvc/config", ".dvcignore"]


def real_archive_path() -> Path:
    """The bydate archive: $NEWSKNN_ARCHIVE, else the project's link, else ../shared/data."""
    candidates = [os.environ.get("NEWSKNN_ARCHIVE"), ROOT / "data/raw/20news-bydate.tar.gz",
                  ROOT.parent / "shared/data/20news-bydate.tar.gz"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError("20news-bydate.tar.gz not found: run install.sh or set NEWSKNN_ARCHIVE")


@pytest.fixture(scope="session")
def real_archive() -> Path:
    return real_archive_path()


def tool_env() -> dict:
    """Environment for subprocesses: this interpreter's bin first, the hub switched off."""
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    return env


def cut_archive(source: Path, target: Path, per_group: dict[str, int]) -> None:
    """Write a bydate-shaped archive with the first ``per_group[subset]`` posts of each group."""
    taken: dict[tuple[str, str], int] = {}
    with tarfile.open(source, "r:gz") as src, tarfile.open(target, "w:gz") as dst:
        members = sorted((m for m in src if m.isfile()), key=lambda m: m.name)
        for member in members:
            parts = Path(member.name).parts
            if len(parts) < 3:
                continue
            subset = "train" if parts[-3].endswith("train") else "test"
            key = (subset, parts[-2])
            if taken.get(key, 0) >= per_group[subset]:
                continue
            taken[key] = taken.get(key, 0) + 1
            data = src.extractfile(member).read()
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="session")
def mini_archive(tmp_path_factory, real_archive) -> Path:
    target = tmp_path_factory.mktemp("archive") / "20news-mini.tar.gz"
    cut_archive(real_archive, target, {"train": MINI_TRAIN, "test": MINI_TEST})
    return target


def mini_params(archive: Path) -> dict:
    """params.yaml with a configuration small enough for a CPU test run in a minute or two."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(archive=str(archive), dev_ratio=0.25,
                          expect={"train": 20 * MINI_TRAIN, "test": 20 * MINI_TEST, "groups": 20})
    params["model"].update(max_seq_length=32, encode_batch_size=16)
    params["triplets"].update(max_anchors=64, hard_k=3)
    params["finetune"].update(epochs=1, batch_size=8, max_seq_length=32)
    params["index"].update(M=8, ef_construction=40, ef_search=32)
    params["knn"].update(k=3)
    return params


def copy_repo(target: Path) -> Path:
    """Copy the project's code (no data, models, venv or caches) into ``target`` as a git repo."""
    target.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git = ["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=target, check=True)
    subprocess.run(["git", "add", "-A"], cwd=target, check=True)
    subprocess.run(git + ["commit", "-qm", "copy"], cwd=target, check=True)
    return target


def run(cmd: list[str], cwd: Path, timeout: float = 900, check: bool = True
        ) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True,
                            timeout=timeout, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def mini_repo(tmp_path_factory, mini_archive) -> Path:
    """A repository copy whose miniature `dvc repro` has run end to end."""
    repo = copy_repo(tmp_path_factory.mktemp("mini") / "repo")
    (repo / "params.yaml").write_text(yaml.safe_dump(mini_params(mini_archive), sort_keys=False))
    run(["git", "-c", "user.name=tests", "-c", "user.email=tests@localhost", "commit", "-qam",
         "mini params"], cwd=repo)
    run(["dvc", "repro"], cwd=repo, timeout=1500)
    return repo
