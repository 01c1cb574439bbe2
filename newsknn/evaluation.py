"""Scoring the kNN classifier and the ANN index: accuracy, F1, confusion, recall against exact.

Classification scores come from scikit-learn; the index checks compare hnswlib with exact search on
the same embeddings.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from newsknn.index import NeighbourIndex


def classification_scores(truth: np.ndarray, predicted: np.ndarray,
                          label_names: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and per-class F1 (by label name)."""
    labels = list(range(len(label_names)))
    per_class = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro",
                                   zero_division=0)),
        "per_class_f1": {name: float(score) for name, score in zip(label_names, per_class)},
    }


def confusion(truth: np.ndarray, predicted: np.ndarray, n_labels: int) -> np.ndarray:
    """Counts of (true label, predicted label)."""
    return confusion_matrix(truth, predicted, labels=list(range(n_labels)))


def recall_with_ties(approx_items: np.ndarray, exact_items: np.ndarray, exact_sims: np.ndarray,
                     queries: np.ndarray, items: np.ndarray, tolerance: float = 1e-6) -> float:
    """recall@k of approximate neighbours against exact ones.

    A returned item counts as a hit when it is among the exact top k, or when its similarity ties
    the exact k-th similarity within ``tolerance`` (near-duplicate documents make ties common).
    """
    k = exact_items.shape[1]
    hits = 0
    for row in range(len(approx_items)):
        returned = approx_items[row][:k]
        returned = returned[returned >= 0]
        sims = items[returned] @ queries[row]
        kth = exact_sims[row, k - 1]
        exact = set(exact_items[row].tolist())
        hits += sum(1 for item, sim in zip(returned, sims)
                    if int(item) in exact or sim >= kth - tolerance)
    return hits / (len(approx_items) * k)


def queries_per_second(index: NeighbourIndex, queries: np.ndarray, k: int,
                       single: int = 1000) -> dict:
    """Throughput of ``index`` one query at a time (as served) and as one batch."""
    sample = queries[:single]
    started = time.perf_counter()
    for row in sample:
        index.query(row[None, :], k)
    single_qps = len(sample) / (time.perf_counter() - started)
    started = time.perf_counter()
    index.query(queries, k)
    batch_qps = len(queries) / (time.perf_counter() - started)
    return {"single_qps": round(single_qps, 1), "batch_qps": round(batch_qps, 1)}
