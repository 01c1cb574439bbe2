"""The kNN text classifier: texts -> embeddings -> index query -> similarity-weighted vote.

One class for the ``evaluate`` stage and the web app, so a served prediction is the reported one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from newsknn.data import read_labels
from newsknn.errors import UserError
from newsknn.index import NeighbourIndex, load_index
from newsknn.knn import vote
from newsknn.models import model_fingerprint


@dataclass(frozen=True)
class Neighbour:
    doc_id: str
    label: str
    similarity: float


@dataclass(frozen=True)
class Prediction:
    """A label, its share of the weighted vote, and the neighbours it came from (best first)."""

    label: str
    label_id: int
    score: float
    neighbors: list[Neighbour]

    def to_dict(self) -> dict:
        return {"label": self.label, "label_id": self.label_id, "score": round(self.score, 6),
                "neighbors": [{"doc_id": n.doc_id, "label": n.label,
                               "similarity": round(n.similarity, 6)} for n in self.neighbors]}


def require_model_dir(model_dir: str | Path) -> Path:
    """The model folder, or a UserError naming it and the command that makes it."""
    model_dir = Path(model_dir)
    if not (model_dir / "modules.json").is_file():
        raise UserError(f"model not found: {model_dir} (run `dvc repro` or `dvc pull`)")
    return model_dir


def require_index_built_by(index: NeighbourIndex, index_dir: str | Path,
                           model_dir: str | Path) -> None:
    """Refuse an index whose recorded model fingerprint is not that of ``model_dir``'s weights."""
    built_by = index.meta.get("model_sha256")
    if built_by and built_by != model_fingerprint(model_dir):
        raise UserError(f"index at {index_dir} was built by another model than {model_dir}; "
                        "rebuild with `dvc repro`")


class KNNClassifier:
    """Gives a text the label its ``k`` nearest indexed training documents vote for.

    ``model`` may be None when only precomputed embeddings are classified (the evaluate stage).
    """

    def __init__(self, index: NeighbourIndex, label_names: Sequence[str], *, k: int = 10,
                 weighting: str = "similarity", model=None, bf16: bool = False,
                 batch_size: int = 32) -> None:
        if k < 1:
            raise UserError(f"knn.k must be >= 1; got {k}")
        self.index, self.label_names = index, list(label_names)
        self.k, self.weighting = k, weighting
        self.model, self.bf16, self.batch_size = model, bf16, batch_size

    @classmethod
    def from_artifacts(cls, model_dir: str | Path, index_dir: str | Path,
                       labels_path: str | Path, *, k: int, weighting: str = "similarity",
                       ef_search: int | None = None, precision: str = "auto",
                       max_seq_length: int | None = None) -> "KNNClassifier":
        """Load model, index and label names, refusing an index the model did not build."""
        from newsknn.models import load_model, use_bf16

        model_dir, labels = require_model_dir(model_dir), read_labels(labels_path)
        index = load_index(index_dir, ef_search)
        model = load_model(str(model_dir), max_seq_length or index.meta.get("max_seq_length"))
        dimension = model.get_embedding_dimension()
        if dimension != index.dimension:
            raise UserError(f"index at {index_dir} holds {index.dimension}-dimensional vectors but "
                            f"the model at {model_dir} makes {dimension}; rebuild with `dvc repro`")
        require_index_built_by(index, index_dir, model_dir)
        return cls(index, labels, k=k, weighting=weighting, model=model,
                   bf16=use_bf16(precision))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Encode texts with the model (truncated at its ``max_seq_length``), one batch pass."""
        from newsknn.models import encode

        if self.model is None:
            raise RuntimeError("this classifier was built without a model; pass embeddings")
        return encode(self.model, texts, bf16=self.bf16, batch_size=self.batch_size,
                      progress=False)

    def predict_embeddings(self, embeddings: np.ndarray, k: int | None = None,
                           n_neighbours: int | None = None) -> list[Prediction]:
        """Classify precomputed query embeddings; report ``n_neighbours`` (default ``k``)."""
        k = k or self.k
        depth = max(k, n_neighbours or k)
        items, sims = self.index.query(embeddings, depth)
        labels = self.index.labels[items]
        predicted, shares = vote(labels, sims, len(self.label_names), k, self.weighting)
        shown = n_neighbours or k
        return [Prediction(self.label_names[label], int(label), float(share), [
            Neighbour(str(self.index.doc_ids[item]), self.label_names[self.index.labels[item]],
                      float(sim)) for item, sim in zip(row_items[:shown], row_sims[:shown])])
            for label, share, row_items, row_sims in zip(predicted, shares, items, sims)]

    def predict_labels(self, embeddings: np.ndarray, k: int | None = None) -> np.ndarray:
        """Only the predicted label ids: the fast path for evaluation."""
        k = k or self.k
        items, sims = self.index.query(embeddings, k)
        return vote(self.index.labels[items], sims, len(self.label_names), k, self.weighting)[0]

    def predict(self, texts: Sequence[str], k: int | None = None,
                n_neighbours: int | None = None) -> list[Prediction]:
        """Classify raw texts."""
        return self.predict_embeddings(self.embed(texts), k, n_neighbours)
