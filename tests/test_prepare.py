"""The prepare stage on the real archive and on broken ones."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, run
from newsknn import data as newsdata
from newsknn.data import read_jsonl, strip_like_sklearn


def write_params(folder: Path, archive: Path, **data) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(archive=str(archive), **data)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def prepare(folder: Path, archive: Path, check: bool = True, **data):
    params = write_params(folder, archive, **data)
    return run([sys.executable, str(ROOT / "stages/prepare.py"), "--params", str(params),
                "--out", str(folder / "prepared"), "--metrics", str(folder / "prepare.json")],
               cwd=folder, check=check, timeout=300)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, real_archive) -> Path:
    folder = tmp_path_factory.mktemp("prepared")
    prepare(folder, real_archive)
    return folder


def test_counts_groups_and_split(prepared):
    train = read_jsonl(prepared / "prepared/train.jsonl")
    dev = read_jsonl(prepared / "prepared/dev.jsonl")
    test = read_jsonl(prepared / "prepared/test.jsonl")
    labels = json.loads((prepared / "prepared/labels.json").read_text())
    assert len(train) + len(dev) == 11314
    assert len(test) == 7532
    assert len(labels) == 20 and labels == sorted(labels)
    assert {d.label_name for d in test} == set(labels)
    assert all(labels[d.label] == d.label_name for d in train + dev + test)
    assert len({d.doc_id for d in train + dev}) == 11314
    # stratified: every group keeps ~10% of its posts in dev
    full = Counter(d.label for d in train + dev)
    in_dev = Counter(d.label for d in dev)
    for label, total in full.items():
        assert abs(in_dev[label] - 0.1 * total) <= 1
    # latest: each group's dev posts are its most recent (highest article numbers)
    for label in full:
        newest_train = max(int(d.doc_id.split("/")[1]) for d in train if d.label == label)
        oldest_dev = min(int(d.doc_id.split("/")[1]) for d in dev if d.label == label)
        assert oldest_dev > newest_train
    summary = json.loads((prepared / "prepare.json").read_text())
    assert summary["test"]["empty_after_stripping"] == sum(d.is_empty for d in test) > 0


def test_stripping_matches_scikit_learn(prepared, real_archive, tmp_path, monkeypatch):
    """fetch_20newsgroups(remove=...) run on this archive (its download step pointed at the file)
    gives the same texts as the prepared data."""
    from sklearn.datasets import _twenty_newsgroups as twenty

    def local_fetch(remote, dirname, **kwargs):
        target = Path(dirname) / remote.filename
        shutil.copy(real_archive, target)
        return str(target)

    monkeypatch.setattr(twenty, "_fetch_remote", local_fetch)
    bunch = twenty.fetch_20newsgroups(data_home=str(tmp_path), subset="test", shuffle=False,
                                      remove=("headers", "footers", "quotes"))
    ours = {d.doc_id: d.text for d in read_jsonl(prepared / "prepared/test.jsonl")}
    theirs = {"/".join(Path(f).parts[-2:]): text for f, text in zip(bunch.filenames, bunch.data)}
    assert theirs.keys() == ours.keys()
    sample = sorted(theirs)[::50]
    assert len(sample) > 100
    assert all(ours[doc_id] == theirs[doc_id] for doc_id in sample)
    # and stripping really removed something: headers are gone
    assert not any(ours[doc_id].startswith("From:") for doc_id in sample)


def test_sklearn_source_option(tmp_path, mini_archive, monkeypatch):
    """data.source: sklearn reads through scikit-learn's downloader (here fed the mini archive)."""
    from sklearn.datasets import _twenty_newsgroups as twenty

    def local_fetch(remote, dirname, **kwargs):
        target = Path(dirname) / remote.filename
        shutil.copy(mini_archive, target)
        return str(target)

    monkeypatch.setattr(twenty, "_fetch_remote", local_fetch)
    monkeypatch.setenv("SCIKIT_LEARN_DATA", str(tmp_path / "sk"))
    posts = newsdata.read_sklearn_download()
    from_archive = newsdata.read_archive(mini_archive, progress=False)
    assert sorted(posts["test"]) == sorted(from_archive["test"])


def test_same_params_give_identical_bytes(prepared, real_archive, tmp_path):
    prepare(tmp_path, real_archive)
    for name in ("train.jsonl", "dev.jsonl", "test.jsonl", "labels.json"):
        assert (tmp_path / "prepared" / name).read_bytes() == \
            (prepared / "prepared" / name).read_bytes()


def test_random_dev_split_is_stratified_and_seeded(mini_archive, tmp_path):
    docs, _ = newsdata.build_documents(newsdata.read_archive(mini_archive, progress=False),
                                       {"train": 240, "test": 100, "groups": 20}, "mini")
    first = newsdata.split_dev(docs["train"], 0.25, "random", seed=1)
    again = newsdata.split_dev(docs["train"], 0.25, "random", seed=1)
    other = newsdata.split_dev(docs["train"], 0.25, "random", seed=2)
    assert first == again and first != other
    assert Counter(d.label for d in first[1]) == {label: 3 for label in range(20)}


def test_strip_removes_header_footer_and_quotes():
    raw = ("From: a@b.c\nSubject: hi\n\nI agree.\n> quoted line\nIn article <x> b@c.d writes:\n"
           "kept text\n\n--\nsig line\n")
    stripped = strip_like_sklearn(raw)
    assert "From:" not in stripped and "> quoted" not in stripped and "sig line" not in stripped
    assert "kept text" in stripped


def broken_archives(tmp_path: Path, real_archive: Path) -> dict[str, tuple[Path, str]]:
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(real_archive.read_bytes()[:200_000])
    not_gzip = tmp_path / "plain.tar.gz"
    not_gzip.write_text("this is not an archive\n")
    wrong_layout = tmp_path / "layout.tar.gz"
    with tarfile.open(wrong_layout, "w:gz") as archive:
        payload = b"From: x\n\nhello\n"
        info = tarfile.TarInfo("some/other/folder/1")
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return {
        "missing": (tmp_path / "nowhere.tar.gz", "not found"),
        "truncated": (truncated, "truncated or corrupt"),
        "not gzip": (not_gzip, "not a gzip-compressed tar archive"),
        "wrong layout": (wrong_layout, "holds no 20news-bydate-train"),
    }


def test_bad_archives_fail_with_one_line_and_write_nothing(tmp_path, real_archive, mini_archive):
    cases = broken_archives(tmp_path, real_archive)
    # a complete archive of the wrong size: the counts check names what is off
    cases["wrong counts"] = (mini_archive, "train 240 documents (expected 11314)")
    for name, (archive, message) in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        result = prepare(folder, archive, check=False)
        assert result.returncode == 2, name
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and message in lines[-1], (name, result.stderr)
        assert "Traceback" not in result.stderr
        assert str(archive) in lines[-1] or name == "wrong counts"
        assert not (folder / "prepared").exists(), name
        assert not list(folder.glob(".prepared-*")), name


def test_failure_keeps_previous_output(tmp_path, mini_archive):
    prepare(tmp_path, mini_archive, expect={"train": 240, "test": 100, "groups": 20})
    before = (tmp_path / "prepared/train.jsonl").read_bytes()
    result = prepare(tmp_path, tmp_path / "missing.tar.gz", check=False)
    assert result.returncode == 2
    assert (tmp_path / "prepared/train.jsonl").read_bytes() == before


def test_bad_params_are_named(tmp_path, mini_archive):
    result = prepare(tmp_path, mini_archive, dev_split="oldest", check=False)
    assert result.returncode == 2
    assert "data.dev_split must be one of random, latest" in result.stderr
