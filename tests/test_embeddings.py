"""Embedding files: the rows the index and the evaluation share, and their checks."""

from __future__ import annotations

import numpy as np
import pytest

from newsknn.data import Document, write_jsonl
from newsknn.embeddings import EmbeddedSplit, load_usable, save_split
from newsknn.errors import UserError


def write_split(tmp_path, docs, ids=None):
    """A prepared split and its embeddings (row i = [i, 1]) under tmp_path."""
    write_jsonl(tmp_path / "train.jsonl", docs)
    rows = np.array([[i, 1.0] for i in range(len(docs))], dtype=np.float32)
    save_split(tmp_path / "emb" / "train.npz",
               EmbeddedSplit(rows, np.array(ids or [d.doc_id for d in docs]),
                             np.array([d.label for d in docs])))


def test_usable_rows_leave_out_posts_empty_after_stripping(tmp_path):
    docs = [Document("g/1", "a post", 0, "g"), Document("g/2", " \n", 0, "g"),
            Document("h/3", "another", 1, "h")]
    write_split(tmp_path, docs)
    usable = load_usable(tmp_path / "emb", tmp_path, "train")
    assert list(usable.doc_ids) == ["g/1", "h/3"]
    assert list(usable.labels) == [0, 1]
    assert usable.embeddings[:, 0].tolist() == [0.0, 2.0]  # the rows that belong to them


def test_embeddings_of_other_documents_are_refused(tmp_path):
    docs = [Document("g/1", "a post", 0, "g"), Document("h/3", "another", 1, "h")]
    write_split(tmp_path, docs, ids=["h/3", "g/1"])
    with pytest.raises(UserError, match="does not match"):
        load_usable(tmp_path / "emb", tmp_path, "train")
