"""Exact nearest-neighbour search and the kNN vote, shared by mining, evaluation and serving.

Embeddings are unit rows, so cosine similarity is a dot product. The vote gives a query the label
with the largest summed similarity among its ``k`` nearest neighbours; with ``k=1`` that is the
nearest neighbour's label (the mission's rule). Ties go to the label met first, i.e. the nearest.
"""

from __future__ import annotations

import numpy as np

VOTES = ("similarity", "majority")


def exact_search(queries: np.ndarray, items: np.ndarray, k: int, chunk: int = 1024
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most similar items of each query, best first: ``(indices, similarities)``."""
    k = min(k, len(items))
    indices = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), chunk):
        block = queries[start:start + chunk] @ items.T
        top = np.argpartition(-block, k - 1, axis=1)[:, :k] if k < len(items) else \
            np.tile(np.arange(len(items)), (len(block), 1))
        top_sims = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        indices[start:start + chunk] = np.take_along_axis(top, order, axis=1)
        sims[start:start + chunk] = np.take_along_axis(top_sims, order, axis=1)
    return indices, sims


def vote(neighbour_labels: np.ndarray, similarities: np.ndarray, n_labels: int, k: int,
         weighting: str = "similarity") -> tuple[np.ndarray, np.ndarray]:
    """Predicted label and its share of the vote for each query, from neighbours sorted best first.

    ``similarity`` weights each of the ``k`` nearest by its (non-negative) similarity;
    ``majority`` counts them equally.
    """
    if weighting not in VOTES:
        raise ValueError(f"weighting must be one of {VOTES}; got {weighting!r}")
    labels = np.asarray(neighbour_labels)[:, :k]
    weights = np.clip(np.asarray(similarities, dtype=np.float64)[:, :k], 0.0, None) + 1e-9
    if weighting == "majority":
        weights = np.ones_like(weights)
    predicted = np.empty(len(labels), dtype=np.int64)
    shares = np.empty(len(labels), dtype=np.float64)
    for row, (row_labels, row_weights) in enumerate(zip(labels, weights)):
        totals = np.bincount(row_labels, weights=row_weights, minlength=n_labels)
        best = totals.max()
        winners = np.flatnonzero(np.isclose(totals, best, rtol=0, atol=1e-12))
        # among tied labels, the one whose nearest neighbour comes first
        first_rank = {label: rank for rank, label in reversed(list(enumerate(row_labels)))}
        predicted[row] = min(winners, key=lambda label: first_rank.get(label, k))
        shares[row] = best / row_weights.sum()
    return predicted, shares
