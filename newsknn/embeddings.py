"""Embedding files: float32 rows with the doc ids and labels they belong to, plus a metadata file.

One ``.npz`` per split under ``data/embeddings/<model>/``; ``meta.json`` beside them says which model
made them (and with which ``max_seq_length`` and precision), so a consumer can refuse a mismatch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from newsknn.errors import UserError


@dataclass
class EmbeddedSplit:
    """The embeddings of one split, row ``i`` belonging to ``doc_ids[i]`` with label ``labels[i]``."""

    embeddings: np.ndarray
    doc_ids: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.doc_ids)

    def subset(self, mask: np.ndarray) -> "EmbeddedSplit":
        """The rows where ``mask`` is true (for example, documents not empty after stripping)."""
        return EmbeddedSplit(self.embeddings[mask], self.doc_ids[mask], self.labels[mask])


def concatenate(splits: "list[EmbeddedSplit]") -> EmbeddedSplit:
    """Stack several splits' rows (for example train and dev into one index)."""
    return EmbeddedSplit(np.vstack([s.embeddings for s in splits]),
                         np.concatenate([s.doc_ids for s in splits]),
                         np.concatenate([s.labels for s in splits]))


def save_split(path: str | Path, split: EmbeddedSplit) -> None:
    """Write one split's embeddings, ids and labels to ``path`` (.npz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        np.savez(handle, embeddings=split.embeddings.astype(np.float32),
                 doc_ids=np.asarray(split.doc_ids, dtype=str),
                 labels=np.asarray(split.labels, dtype=np.int64))


def load_split(path: str | Path) -> EmbeddedSplit:
    """Read a split written by :func:`save_split`; a missing file names the stage that makes it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"embeddings not found: {path} (run `dvc repro embed`)")
    with np.load(path) as data:
        return EmbeddedSplit(data["embeddings"], data["doc_ids"], data["labels"])


def load_usable(embeddings_dir: str | Path, prepared_dir: str | Path, split: str) -> EmbeddedSplit:
    """A split's embeddings without the documents that are empty after stripping.

    Why one function: the index and the evaluation must leave out exactly the same rows (an empty
    post's embedding says nothing about its group). The rows are checked to be the prepared
    documents in order, so embeddings from another ``prepare`` run are refused, not mislabelled.
    """
    from newsknn.data import read_jsonl

    path = Path(embeddings_dir, f"{split}.npz")
    rows = load_split(path)
    docs = read_jsonl(Path(prepared_dir, f"{split}.jsonl"))
    if list(rows.doc_ids) != [doc.doc_id for doc in docs]:
        raise UserError(f"{path} does not match {Path(prepared_dir, split + '.jsonl')} "
                        "(run `dvc repro`)")
    return rows.subset(np.array([not doc.is_empty for doc in docs], dtype=bool))


def checksum(embeddings: np.ndarray) -> str:
    """sha256 of the float32 bytes: lets an index prove which embeddings it was built from."""
    return hashlib.sha256(np.ascontiguousarray(embeddings, dtype=np.float32).tobytes()).hexdigest()


def write_meta(folder: str | Path, meta: dict) -> None:
    """Write ``meta.json`` beside the split files."""
    Path(folder, "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def read_meta(folder: str | Path) -> dict:
    """Read ``meta.json`` from an embeddings folder."""
    path = Path(folder, "meta.json")
    if not path.is_file():
        raise UserError(f"embeddings metadata not found: {path} (run `dvc repro embed`)")
    return json.loads(path.read_text())
