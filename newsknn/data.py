"""Reading the 20 Newsgroups "bydate" corpus, stripping it like scikit-learn, and splitting it.

The archive is read in place (never unpacked into the repository). Stripping reuses scikit-learn's
own functions in the order ``fetch_20newsgroups(remove=('headers', 'footers', 'quotes'))`` applies
them, so accuracies compare with published numbers on the same split.
"""

from __future__ import annotations

import gzip
import json
import os
import tarfile
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from sklearn.datasets._twenty_newsgroups import (
    strip_newsgroup_footer,
    strip_newsgroup_header,
    strip_newsgroup_quoting,
)
from sklearn.model_selection import train_test_split
from tqdm import tqdm

from newsknn.errors import UserError

SUBSETS = {"train": "20news-bydate-train", "test": "20news-bydate-test"}
DEV_SPLITS = ("random", "latest")


@dataclass(frozen=True)
class Document:
    """One newsgroup post after stripping; ``doc_id`` is ``group/file`` and stable across runs."""

    doc_id: str
    text: str
    label: int
    label_name: str

    @property
    def is_empty(self) -> bool:
        """True when nothing but whitespace is left after stripping headers, footers and quotes."""
        return not self.text.strip()


def strip_like_sklearn(raw: str) -> str:
    """Remove headers, signature footer and quoted replies exactly as scikit-learn does."""
    return strip_newsgroup_quoting(strip_newsgroup_footer(strip_newsgroup_header(raw)))


def _article_number(file_name: str) -> tuple[int, str]:
    """Sort key for a post's file name: its article number, which grows with posting time."""
    return (int(file_name), file_name) if file_name.isdigit() else (-1, file_name)


def read_archive(path: str | Path, progress: bool = True) -> dict[str, list[tuple[str, str, str]]]:
    """Read every post of the bydate archive into ``{subset: [(group, file, raw_text), ...]}``.

    Raises :class:`UserError` naming the path when the file is missing, is not a gzip'd tar, is
    truncated, or holds no ``20news-bydate-train``/``-test`` folders.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(
            f"dataset archive not found: {path} (set data.archive in params.yaml to the "
            "20news-bydate.tar.gz file, or run install.sh to link ../shared/data/20news-bydate.tar.gz)"
        )
    posts: dict[str, list[tuple[str, str, str]]] = {name: [] for name in SUBSETS}
    folder_to_subset = {folder: name for name, folder in SUBSETS.items()}
    try:
        archive = tarfile.open(path, mode="r:gz")
    except (tarfile.ReadError, gzip.BadGzipFile, zlib.error) as exc:
        raise UserError(f"{path} is not a gzip-compressed tar archive ({exc})") from None
    try:
        with archive, tqdm(desc=f"reading {path.name}", unit=" files",
                           disable=not progress) as bar:
            for member in archive:
                if not member.isfile():
                    continue
                parts = Path(member.name).parts
                if len(parts) < 3 or parts[-3] not in folder_to_subset:
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                raw = handle.read().decode("latin-1")
                posts[folder_to_subset[parts[-3]]].append((parts[-2], parts[-1], raw))
                bar.update()
    except (EOFError, zlib.error, tarfile.TarError, gzip.BadGzipFile, OSError) as exc:
        raise UserError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if not posts["train"] and not posts["test"]:
        raise UserError(
            f"{path} holds no 20news-bydate-train/<group>/<id> or 20news-bydate-test/... files; "
            "is it the bydate archive?"
        )
    return posts


def read_sklearn_download() -> dict[str, list[tuple[str, str, str]]]:
    """Let scikit-learn download the corpus (needs internet); chosen only by ``data.source: sklearn``."""
    from sklearn.datasets import fetch_20newsgroups

    posts: dict[str, list[tuple[str, str, str]]] = {}
    for subset in SUBSETS:
        try:
            bunch = fetch_20newsgroups(subset=subset, remove=(), shuffle=False,
                                       download_if_missing=True)
        except OSError as exc:
            raise UserError(
                f"scikit-learn could not download 20 Newsgroups ({exc}); offline, set "
                "data.source: archive and data.archive to a local 20news-bydate.tar.gz"
            ) from None
        posts[subset] = [
            (Path(name).parts[-2], Path(name).parts[-1], text)
            for name, text in zip(bunch.filenames, bunch.data)
        ]
    return posts


def build_documents(
    posts: dict[str, list[tuple[str, str, str]]], expected: dict[str, int], source: str
) -> tuple[dict[str, list[Document]], list[str]]:
    """Strip every post, assign label ids (sorted group names) and check the counts.

    Returns the documents per subset, sorted by group then article number, and the label names.
    """
    counts = {subset: len(items) for subset, items in posts.items()}
    groups = sorted({group for items in posts.values() for group, _, _ in items})
    wrong = [f"{subset} {counts[subset]} documents (expected {expected[subset]})"
             for subset in SUBSETS if counts[subset] != expected[subset]]
    if len(groups) != expected["groups"]:
        wrong.append(f"{len(groups)} groups (expected {expected['groups']})")
    if wrong:
        raise UserError(f"{source} holds {', '.join(wrong)}; is it the complete bydate archive? "
                        "(data.expect in params.yaml holds the expected counts)")
    label_of = {group: index for index, group in enumerate(groups)}
    documents = {}
    for subset, items in posts.items():
        ordered = sorted(items, key=lambda item: (item[0], _article_number(item[1])))
        documents[subset] = [
            Document(f"{group}/{name}", strip_like_sklearn(raw), label_of[group], group)
            for group, name, raw in ordered
        ]
    return documents, groups


def split_dev(train: Sequence[Document], ratio: float, how: str, seed: int
              ) -> tuple[list[Document], list[Document]]:
    """Split the training documents into train and dev, stratified by group.

    ``random`` draws dev at random (seeded); ``latest`` takes each group's most recent posts (the
    highest article numbers), mirroring how the test set follows the training set in time.
    """
    if how not in DEV_SPLITS:
        raise UserError(f"data.dev_split must be one of {', '.join(DEV_SPLITS)}; got {how!r}")
    if ratio == 0:
        return list(train), []
    if how == "random":
        labels = [doc.label for doc in train]
        kept, dev = train_test_split(list(train), test_size=ratio, random_state=seed,
                                     stratify=labels)
    else:
        kept, dev = [], []
        by_group: dict[int, list[Document]] = {}
        for doc in train:
            by_group.setdefault(doc.label, []).append(doc)
        for docs in by_group.values():
            ordered = sorted(docs, key=lambda doc: _article_number(doc.doc_id.split("/")[1]))
            n_dev = int(round(ratio * len(ordered)))
            kept.extend(ordered[: len(ordered) - n_dev])
            dev.extend(ordered[len(ordered) - n_dev:])
    order = {doc.doc_id: index for index, doc in enumerate(train)}
    return (sorted(kept, key=lambda doc: order[doc.doc_id]),
            sorted(dev, key=lambda doc: order[doc.doc_id]))


def write_jsonl(path: Path, documents: Iterable[Document]) -> None:
    """Write documents one JSON object per line (text, label, label_name, doc_id)."""
    with open(path, "w", encoding="utf-8") as handle:
        for doc in documents:
            handle.write(json.dumps(asdict(doc), ensure_ascii=False, sort_keys=True) + "\n")


def read_jsonl(path: str | Path) -> list[Document]:
    """Read documents written by :func:`write_jsonl`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"prepared data not found: {path} (run `dvc repro prepare`)")
    with open(path, encoding="utf-8") as handle:
        return [Document(**json.loads(line)) for line in handle if line.strip()]


def usable(documents: Iterable[Document]) -> list[Document]:
    """The documents that still hold text after stripping: the only ones indexed or trained on."""
    return [doc for doc in documents if not doc.is_empty]


def read_labels(path: str | Path) -> list[str]:
    """Read the label names (index = label id) written by the prepare stage.

    Used by the stages, the classifier loader and the server's start-up check alike, so a missing
    or malformed file is the same one-line UserError everywhere.
    """
    fix = "(run `dvc repro` or `dvc pull`)"
    path = Path(path)
    if not path.is_file():
        raise UserError(f"labels not found: {path} {fix}")
    try:
        labels = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"labels file {path} is unreadable ({exc}) {fix}") from None
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise UserError(f"labels file {path} must hold a non-empty JSON list of names {fix}")
    return labels


def replace_dir_atomically(target: Path, fill) -> None:
    """Build ``target`` in a sibling temporary folder with ``fill(folder)``, then swap it in.

    A failure inside ``fill`` leaves the previous ``target`` (or nothing) behind, never a half.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    scratch.chmod(0o755)
    try:
        fill(scratch)
        if target.exists():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            os.replace(target, old)
            os.replace(scratch, target)
            _remove_tree(old)
        else:
            os.replace(scratch, target)
    except BaseException:
        _remove_tree(scratch)
        raise


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def label_counts(documents: Iterable[Document], n_labels: int) -> np.ndarray:
    """How many documents each label has (index = label id)."""
    return np.bincount([doc.label for doc in documents], minlength=n_labels)
