"""Training triplets (anchor, positive, negative) drawn from newsgroup-labelled documents.

The generation strategy is what the fine-tuning gains or loses by, so it is a parameter:

- ``random``: positive and negative drawn uniformly (the classic recipe).
- ``hard``: the negative is drawn from the anchor's nearest other-label neighbours under the
  pretrained model, ranks ``hard_skip`` to ``hard_skip + hard_k``. Skipping the very nearest ones
  matters on 20 Newsgroups, where cross-posted and near-duplicate posts sit in different groups.
- ``semi_hard``: FaceNet's semi-hard negative, farther from the anchor than the positive but inside
  the margin (``d(a,p) < d(a,n) < d(a,p) + margin``); falls back to ``hard`` where there is none.
- ``confused``: a class-level strategy. The negative's group is drawn in proportion to how often the
  pretrained kNN mistakes the anchor's group for it (measured on the dev split), mixed with a
  uniform share (``confused_mix``), and the negative document is drawn at random inside that group.
  It pushes apart the groups that are actually confused without trusting any single neighbour.

The positive is a same-group document drawn at random (``positive: random``), or one of the
anchor's ``easy_k`` nearest same-group neighbours under the pretrained model (``positive: easy``,
after Xuan et al., "Improved Embeddings with Easy Positive Triplet Mining", 2020): pulling every
post of a group towards every other one collapses a group's subtopics, while easy positives keep
the local neighbourhoods that a kNN vote reads.

Every usable document (non-empty after stripping, in a group of at least two) is an anchor
``per_anchor`` times, unless ``max_anchors`` caps the number of anchors. All draws come from one
seeded generator, so the same inputs and params give the same triplets.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from newsknn.data import Document
from newsknn.errors import UserError

STRATEGIES = ("random", "hard", "semi_hard", "confused")
POSITIVES = ("random", "easy")
MINED = ("hard", "semi_hard")
DISTANCES = ("cosine", "euclidean")


@dataclass(frozen=True)
class Triplet:
    """Indices into the dataset's documents; ``mined`` is false where a mined strategy fell back."""

    anchor: int
    positive: int
    negative: int
    mined: bool


def distance_from_similarity(similarity: np.ndarray, distance: str) -> np.ndarray:
    """Distance between unit vectors from their cosine similarity, as ``TripletLoss`` measures it."""
    if distance == "cosine":
        return 1.0 - similarity
    return np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0))


def confusion_from_neighbours(query_labels: np.ndarray, predicted: np.ndarray,
                              n_labels: int) -> np.ndarray:
    """Row-normalised off-diagonal confusion: how often group ``g`` is mistaken for group ``h``."""
    counts = np.zeros((n_labels, n_labels))
    np.add.at(counts, (query_labels, predicted), 1.0)
    np.fill_diagonal(counts, 0.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


class NewsgroupTripletDataset:
    """Triplets over documents grouped by newsgroup, in the spirit of ``SentenceLabelDataset``.

    ``embeddings`` (unit rows, aligned with ``documents``) are needed by ``hard`` and ``semi_hard``;
    ``confusion`` (from :func:`confusion_from_neighbours`) by ``confused``.
    """

    def __init__(self, documents: Sequence[Document], *, strategy: str = "random",
                 per_anchor: int = 1, max_anchors: int | None = None, seed: int = 42,
                 embeddings: np.ndarray | None = None, hard_k: int = 10, hard_skip: int = 0,
                 margin: float = 0.3, distance: str = "cosine",
                 confusion: np.ndarray | None = None, confused_mix: float = 0.0,
                 positive: str = "random", easy_k: int = 5) -> None:
        if strategy not in STRATEGIES:
            raise UserError(f"triplets.strategy must be one of {', '.join(STRATEGIES)}; "
                            f"got {strategy!r}")
        if distance not in DISTANCES:
            raise UserError(f"finetune.distance must be one of {', '.join(DISTANCES)}; "
                            f"got {distance!r}")
        if positive not in POSITIVES:
            raise UserError(f"triplets.positive must be one of {', '.join(POSITIVES)}; "
                            f"got {positive!r}")
        if (strategy in MINED or positive == "easy") and (embeddings is None or len(embeddings) != len(documents)):
            raise UserError(f"triplets {strategy}/{positive} needs one pretrained embedding per "
                            "document (run `dvc repro embed@pretrained`)")
        if strategy == "confused" and confusion is None:
            raise UserError("triplets.strategy confused needs the pretrained confusion matrix")
        self.strategy = strategy
        self.per_anchor = per_anchor
        self.hard_k, self.hard_skip = hard_k, hard_skip
        self.margin, self.distance = margin, distance
        self.confused_mix = confused_mix
        self.positive, self.easy_k = positive, easy_k
        self.rng = np.random.default_rng(seed)

        self.skipped_empty = sum(doc.is_empty for doc in documents)
        kept = [i for i, doc in enumerate(documents) if not doc.is_empty]
        sizes = Counter(documents[i].label for i in kept)
        self.skipped_single = sorted({documents[i].label_name for i in kept
                                      if sizes[documents[i].label] < 2})
        kept = [i for i in kept if sizes[documents[i].label] >= 2]
        if len({documents[i].label for i in kept}) < 2:
            raise UserError("triplets need at least two groups with two or more usable documents")
        self.documents = [documents[i] for i in kept]
        self.labels = np.array([doc.label for doc in self.documents])
        self.embeddings = None if embeddings is None else np.asarray(embeddings)[kept]
        self.members = {label: np.flatnonzero(self.labels == label)
                        for label in np.unique(self.labels)}
        self.confusion = confusion
        self.triplets = self._generate(max_anchors)

    # -- generation ---------------------------------------------------------------------------
    def _generate(self, max_anchors: int | None) -> list[Triplet]:
        anchors = self.rng.permutation(len(self.documents))
        if max_anchors is not None and max_anchors < len(anchors):
            anchors = anchors[:max_anchors]
        anchors = np.repeat(anchors, self.per_anchor)
        if self.positive == "easy":
            positives = self._easy_positives(anchors)
        else:
            positives = np.array([self._positive(a) for a in anchors], dtype=np.int64)
        if self.strategy == "random":
            return [Triplet(a, p, self._random_negative(a), False)
                    for a, p in zip(anchors, positives)]
        if self.strategy == "confused":
            return [Triplet(a, p, self._confused_negative(a), True)
                    for a, p in zip(anchors, positives)]
        return self._mined(anchors, positives)

    def _positive(self, anchor: int) -> int:
        same = self.members[self.labels[anchor]]
        pick = int(same[self.rng.integers(len(same) - 1)])
        return pick if pick != anchor else int(same[-1])

    def _easy_positives(self, anchors: np.ndarray, chunk: int = 512) -> np.ndarray:
        """For each anchor, one of its ``easy_k`` most similar same-label documents."""
        positives = np.empty(len(anchors), dtype=np.int64)
        for start in range(0, len(anchors), chunk):
            block = anchors[start:start + chunk]
            sims = self.embeddings[block] @ self.embeddings.T
            sims[self.labels[block][:, None] != self.labels[None, :]] = -np.inf
            sims[np.arange(len(block)), block] = -np.inf
            for row, anchor in enumerate(block):
                depth = min(self.easy_k, len(self.members[self.labels[anchor]]) - 1)
                top = np.argpartition(-sims[row], depth - 1)[:depth]
                positives[start + row] = int(np.sort(top)[self.rng.integers(depth)])
        return positives

    def _random_negative(self, anchor: int) -> int:
        while True:
            pick = int(self.rng.integers(len(self.documents)))
            if self.labels[pick] != self.labels[anchor]:
                return pick

    def _confused_negative(self, anchor: int) -> int:
        label = self.labels[anchor]
        others = np.array([other for other in self.members if other != label])
        uniform = np.full(len(others), 1.0 / len(others))
        row = self.confusion[label, others]
        weights = (1 - self.confused_mix) * row + self.confused_mix * uniform
        weights = uniform if weights.sum() <= 0 else weights / weights.sum()
        group = others[self.rng.choice(len(others), p=weights)]
        inside = self.members[group]
        return int(inside[self.rng.integers(len(inside))])

    def _mined(self, anchors: np.ndarray, positives: np.ndarray, chunk: int = 512
               ) -> list[Triplet]:
        """Hard and semi-hard negatives from exact similarities, computed a chunk of anchors at once."""
        triplets = []
        depth = min(self.hard_skip + self.hard_k, len(self.documents) - 1)
        for start in range(0, len(anchors), chunk):
            block, block_pos = anchors[start:start + chunk], positives[start:start + chunk]
            sims = self.embeddings[block] @ self.embeddings.T
            sims[self.labels[block][:, None] == self.labels[None, :]] = -np.inf
            top = np.argpartition(-sims, depth - 1, axis=1)[:, :depth]
            order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
            ranked = np.take_along_axis(top, order, axis=1)[:, self.hard_skip:depth]
            for row, (a, p) in enumerate(zip(block, block_pos)):
                negative, mined = None, True
                if self.strategy == "semi_hard":
                    negative = self._semi_hard(sims[row], a, p)
                    mined = negative is not None
                if negative is None:
                    negative = int(ranked[row][self.rng.integers(len(ranked[row]))])
                triplets.append(Triplet(int(a), int(p), negative, mined))
        return triplets

    def _semi_hard(self, sims: np.ndarray, anchor: int, positive: int) -> int | None:
        d_ap = distance_from_similarity(
            np.float64(self.embeddings[anchor] @ self.embeddings[positive]), self.distance)
        d_an = distance_from_similarity(sims, self.distance)  # other-label rows only: -inf -> far
        window = np.flatnonzero((d_an > d_ap) & (d_an < d_ap + self.margin))
        return int(window[self.rng.integers(len(window))]) if len(window) else None

    # -- access -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.triplets)

    def __getitem__(self, index: int) -> dict[str, str]:
        triplet = self.triplets[index]
        return {"anchor": self.documents[triplet.anchor].text,
                "positive": self.documents[triplet.positive].text,
                "negative": self.documents[triplet.negative].text}

    def records(self) -> list[dict]:
        """One JSON-ready dict per triplet: texts, doc ids and labels of all three documents."""
        out = []
        for triplet in self.triplets:
            record = {}
            for role in ("anchor", "positive", "negative"):
                doc = self.documents[getattr(triplet, role)]
                record[role] = doc.text
                record[f"{role}_id"] = doc.doc_id
                record[f"{role}_label"] = doc.label_name
            record["mined"] = triplet.mined
            out.append(record)
        return out

    def stats(self, top_pairs: int = 10) -> dict:
        """Counts, how often mined negatives were found, and the most frequent group pairs."""
        pairs = Counter((self.documents[t.anchor].label_name, self.documents[t.negative].label_name)
                        for t in self.triplets)
        stats = {
            "strategy": self.strategy,
            "positive": self.positive,
            "triplets": len(self.triplets),
            "anchors": len({t.anchor for t in self.triplets}),
            "usable_documents": len(self.documents),
            "skipped_empty": self.skipped_empty,
            "skipped_single_document_groups": self.skipped_single,
            "mined_found": sum(t.mined for t in self.triplets),
            "mined_found_ratio": (sum(t.mined for t in self.triplets) / len(self.triplets)
                                  if self.triplets else 0.0),
            "top_anchor_negative_groups": [
                {"anchor": a, "negative": n, "count": c} for (a, n), c in pairs.most_common(top_pairs)
            ],
        }
        if self.embeddings is not None:
            a, p, n = (np.array([getattr(t, r) for t in self.triplets])
                       for r in ("anchor", "positive", "negative"))
            stats["mean_similarity_anchor_positive"] = float(
                np.einsum("ij,ij->i", self.embeddings[a], self.embeddings[p]).mean())
            stats["mean_similarity_anchor_negative"] = float(
                np.einsum("ij,ij->i", self.embeddings[a], self.embeddings[n]).mean())
        return stats


def write_records(path: str | Path, records: Iterable[dict]) -> None:
    """Write triplet records (:meth:`NewsgroupTripletDataset.records`) one JSON object per line.

    Keys are sorted, so the same triplets give the same bytes and DVC sees an unchanged output.
    """
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")


def read_records(path: str | Path, limit: int | None = None) -> list[dict]:
    """Read triplet records written by :func:`write_records` (only the first ``limit`` if given).

    A missing file is a :class:`UserError` that names the stage making it.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"triplets not found: {path} (run `dvc repro make_triplets`)")
    with open(path, encoding="utf-8") as handle:
        lines = (line for line in handle if line.strip())
        return [json.loads(line) for line in itertools.islice(lines, limit)]
