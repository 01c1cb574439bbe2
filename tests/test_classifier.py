"""The kNN vote, the classifier over hnswlib and exact indexes, and bf16 encoding accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from newsknn.classifier import KNNClassifier
from newsknn.evaluation import recall_with_ties
from newsknn.index import IndexParams, build_exact, build_hnsw, load_index, save_index
from newsknn.knn import exact_search, vote

LABELS = ["a", "b", "c"]


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def hand_made_index(exact: bool):
    """Five items on a circle: one 'a' right at the query, four others a bit farther away."""
    items = unit([[1, 0], [0.8, 0.6], [0.8, -0.6], [0.6, 0.8], [0.0, 1.0]])
    labels = [0, 1, 1, 2, 2]
    ids = [f"doc{i}" for i in range(5)]
    if exact:
        return build_exact(items, ids, labels)
    return build_hnsw(items, ids, labels, IndexParams(M=4, ef_construction=20, ef_search=10), {})


@pytest.mark.parametrize("exact", [True, False])
def test_k1_is_the_nearest_neighbours_label(exact):
    clf = KNNClassifier(hand_made_index(exact), LABELS, k=1)
    query = unit([[1, 0.01]])
    prediction = clf.predict_embeddings(query)[0]
    assert prediction.label == "a" and prediction.neighbors[0].doc_id == "doc0"
    assert prediction.score == pytest.approx(1.0)


@pytest.mark.parametrize("exact", [True, False])
def test_weighted_vote_on_a_hand_made_index(exact):
    clf = KNNClassifier(hand_made_index(exact), LABELS, k=3)
    query = unit([[1, 0.01]])
    # neighbours: doc0 'a' (~1.0), doc1 'b' (~0.806), doc2 'b' (~0.794): b wins 1.6 to 1.0
    prediction = clf.predict_embeddings(query)[0]
    assert [n.doc_id for n in prediction.neighbors] == ["doc0", "doc1", "doc2"]
    assert prediction.label == "b"
    sims = [n.similarity for n in prediction.neighbors]
    assert prediction.score == pytest.approx((sims[1] + sims[2]) / sum(sims), abs=1e-5)
    # a majority vote counts heads, and reports more neighbours than it votes with when asked
    majority = KNNClassifier(hand_made_index(exact), LABELS, k=3, weighting="majority")
    wide = majority.predict_embeddings(query, n_neighbours=5)[0]
    assert wide.label == "b" and len(wide.neighbors) == 5


def test_vote_ties_go_to_the_nearest():
    labels = np.array([[2, 1]])
    sims = np.array([[0.5, 0.5]])
    assert vote(labels, sims, 3, k=2)[0][0] == 2


def test_exact_and_ann_agree_on_small_data(tmp_path):
    rng = np.random.default_rng(0)
    items = unit(rng.normal(size=(2000, 32)))
    labels = rng.integers(0, 3, size=2000)
    queries = unit(rng.normal(size=(200, 32)))
    ids = [str(i) for i in range(2000)]
    hnsw = build_hnsw(items, ids, labels, IndexParams(M=16, ef_construction=200, ef_search=100),
                      {"model": "test"})
    save_index(hnsw, tmp_path / "index")
    loaded = load_index(tmp_path / "index")
    exact = build_exact(items, ids, labels)
    approx_items, _ = loaded.query(queries, 10)
    exact_items, exact_sims = exact.query(queries, 10)
    assert recall_with_ties(approx_items, exact_items, exact_sims, queries, items) >= 0.99
    ann = KNNClassifier(loaded, LABELS, k=5).predict_labels(queries)
    ref = KNNClassifier(exact, LABELS, k=5).predict_labels(queries)
    assert np.mean(ann == ref) >= 0.98
    assert loaded.meta["embeddings_sha256"] == hnsw.meta["embeddings_sha256"]


def test_recall_counts_ties_as_hits():
    items = unit([[1, 0], [1, 0], [0, 1]])  # items 0 and 1 are duplicates
    query = unit([[1, 0]])
    exact_items, exact_sims = exact_search(query, items, 1)
    other = np.array([[1 - exact_items[0, 0]]])  # the duplicate the exact search did not return
    assert recall_with_ties(other, exact_items, exact_sims, query, items) == 1.0
    assert recall_with_ties(np.array([[2]]), exact_items, exact_sims, query, items) == 0.0


def test_missing_index_names_the_fix(tmp_path):
    from newsknn.errors import UserError

    with pytest.raises(UserError, match="dvc repro build_hnsw_index"):
        load_index(tmp_path / "nothing")


def test_bf16_encoding_matches_fp32(real_archive):
    """bf16 autocast keeps each embedding within cosine 0.999 of its fp32 twin, and moves the
    similarities between documents by less than 0.001 on average (0.005 at worst)."""
    from newsknn.data import read_archive, strip_like_sklearn
    from newsknn.models import bf16_supported, encode, load_model

    if not bf16_supported():
        pytest.fail("this machine has no bf16 support, so the bf16 path cannot be checked here")
    posts = read_archive(real_archive, progress=False)["test"][::150]
    texts = [strip_like_sklearn(raw) for _, _, raw in posts]
    model = load_model("all-MiniLM-L6-v2", max_seq_length=128)
    fast = encode(model, texts, bf16=True, progress=False)
    exact = encode(model, texts, bf16=False, progress=False)
    assert fast.dtype == np.float32 and fast.shape == exact.shape
    assert np.abs(np.sum(fast * exact, axis=1) - 1).max() < 1e-3
    pair_fast, pair_exact = fast @ fast.T, exact @ exact.T
    assert np.abs(pair_fast - pair_exact).mean() < 1e-3
    assert np.abs(pair_fast - pair_exact).max() < 5e-3
