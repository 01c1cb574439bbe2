"""The prediction service: one classifier per worker process, shared by its request threads.

The classifier is :class:`newsknn.classifier.KNNClassifier`, built by ``from_artifacts`` exactly as
for the pipeline's numbers, so a served prediction is the reported one. Predictions are serialised
by a lock: the Hugging Face fast tokenizer raises "Already borrowed" when two threads encode at once,
and torch already spreads one forward pass over the worker's cores, so running two in parallel would
only make both slower. Requests that do not predict (``/health``, ``/labels``) never take the lock,
which keeps health checks answering while a long batch runs.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol, Sequence

from newsknn import __version__

from app.config import Settings


class Classifier(Protocol):
    """What the app needs from a classifier (KNNClassifier, or a stand-in in tests)."""

    label_names: list[str]
    k: int

    def predict(self, texts: Sequence[str], k: int | None = None,
                n_neighbours: int | None = None) -> list: ...


def load_classifier(settings: Settings):
    """Load model, index and labels through ``KNNClassifier.from_artifacts`` (imports torch).

    Also caps torch's intra-op threads (``NEWSKNN_TORCH_THREADS``; gunicorn.conf.py sets it to
    cores / workers) so several workers do not oversubscribe the CPU, and sets how many texts of a
    request go through the model together (``NEWSKNN_ENCODE_BATCH``). sentence-transformers sorts
    a request's texts by length before cutting them into forward passes, so small passes carry
    little padding; on CPU one post already keeps a core busy, and large passes are slower per
    text (measured on one torch thread, typical test posts: 4 per pass about 25 ms a text, 32 per
    pass about 40 ms; bench/serve_bench.py).
    """
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    from newsknn.classifier import KNNClassifier

    classifier = KNNClassifier.from_artifacts(
        settings.model_dir, settings.index_dir, settings.labels_path, k=settings.k,
        weighting=settings.weighting, ef_search=settings.ef_search,
        precision=settings.precision, max_seq_length=settings.max_seq_length)
    classifier.batch_size = settings.encode_batch
    return classifier


def short(digest: Any, length: int = 12) -> str | None:
    """A short form of a sha256 for humans (like a git short hash)."""
    return str(digest)[:length] if digest else None


class PredictionService:
    """Holds the worker's classifier, answers predictions one at a time, and describes itself."""

    def __init__(self, settings: Settings, classifier: Classifier | None = None) -> None:
        self.settings = settings
        self.classifier = classifier
        self.loaded_at: float | None = time.time() if classifier is not None else None
        self._lock = threading.Lock()
        self._model_sha256: str | None = None

    @property
    def ready(self) -> bool:
        return self.classifier is not None

    def load(self) -> None:
        """Load the classifier from the artifacts named in the settings (a UserError if unusable)."""
        from newsknn.models import model_fingerprint

        classifier = load_classifier(self.settings)
        # from_artifacts has checked the index's model_sha256 against the weights; hash them here
        # only when the index does not record it.
        meta = getattr(classifier.index, "meta", {})
        self._model_sha256 = meta.get("model_sha256") or model_fingerprint(self.settings.model_dir)
        self.classifier = classifier
        self.loaded_at = time.time()

    @property
    def label_names(self) -> list[str]:
        return list(self.classifier.label_names) if self.classifier is not None else []

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[dict]:
        """Predictions for ``texts`` (one model call, under the lock), each as the JSON-ready dict.

        ``top_k`` sets both the neighbours in the vote and the neighbours reported; by default the
        classifier's ``knn.k`` is used for both, as in the evaluate stage.
        """
        if self.classifier is None:
            raise RuntimeError("the classifier is not loaded")
        with self._lock:
            predictions = self.classifier.predict(list(texts), k=top_k, n_neighbours=top_k)
        return [prediction.to_dict() for prediction in predictions]

    def describe(self) -> dict:
        """What is being served: model and index versions (short sha256s), sizes and knobs."""
        settings = self.settings
        info: dict[str, Any] = {
            "status": "ready" if self.ready else "loading",
            "version": __version__,
            "model": {"path": settings.model_dir, "sha256": short(self._model_sha256),
                      "max_seq_length": settings.max_seq_length},
            "index": {"path": settings.index_dir},
            "knn": {"k": settings.k, "weighting": settings.weighting,
                    "ef_search": settings.ef_search, "max_top_k": settings.max_top_k},
            "limits": {"max_batch": settings.max_batch,
                       "encode_batch": settings.encode_batch,
                       "max_text_chars": settings.max_text_chars,
                       "max_body_bytes": settings.max_body_bytes},
        }
        classifier = self.classifier
        if classifier is None:
            return info
        info["labels"] = len(classifier.label_names)
        index = getattr(classifier, "index", None)
        meta = getattr(index, "meta", None) or {}
        info["index"].update({
            "count": len(index) if index is not None else None,
            "dimension": meta.get("dimension"),
            "model_sha256": short(meta.get("model_sha256")),
            "embeddings_sha256": short(meta.get("embeddings_sha256")),
            "built_from": meta.get("which") or meta.get("model"),
        })
        if getattr(classifier, "model", None) is not None:
            info["model"]["precision"] = "bf16" if getattr(classifier, "bf16", False) else "fp32"
            info["model"]["max_seq_length"] = int(classifier.model.max_seq_length)
        info["loaded_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at))
        return info
