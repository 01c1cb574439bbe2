"""A torch-free check of the served artifacts, cheap enough for gunicorn's master process.

Why it exists: if a worker found the model or index missing, it would die at boot and gunicorn would
log tracebacks (or, with some failures, respawn workers in a loop). Checking in the master before
any worker is forked turns every such mistake into one line and a non-zero exit. It must not import
torch: PyTorch's intra-op thread pool deadlocks in processes forked after the parent used it
(pytorch#49555, gunicorn#2478), so the model itself is only ever loaded in the workers.

The checks mirror :meth:`newsknn.classifier.KNNClassifier.from_artifacts` (which the workers run and
which stays authoritative): model folder, labels file, a readable and consistent index, the index's
dimension, and that the index was built by this model (weights' sha256 in the index meta.json).
"""

from __future__ import annotations

import json
from pathlib import Path

from newsknn.data import read_labels
from newsknn.errors import UserError
from newsknn.index import load_index
from newsknn.classifier import require_index_built_by, require_model_dir

from app.config import Settings


def declared_dimension(model_dir: str | Path) -> int | None:
    """The embedding size a sentence-transformers folder declares, read from its JSON configs.

    Best effort without torch: the last Dense layer's ``out_features``, else a single-mode Pooling
    layer's dimension. None when the folder does not say plainly (the worker then checks).
    """
    model_dir = Path(model_dir)
    try:
        modules = json.loads((model_dir / "modules.json").read_text())
    except (OSError, ValueError):
        return None
    for module in reversed(modules if isinstance(modules, list) else []):
        kind = str(module.get("type", "")) if isinstance(module, dict) else ""
        if not ("Dense" in kind or "Pooling" in kind):
            continue
        try:
            config = json.loads((model_dir / module.get("path", "") / "config.json").read_text())
        except (OSError, ValueError):
            return None
        if "Dense" in kind:
            return int(config["out_features"]) if "out_features" in config else None
        modes = config.get("pooling_mode")
        legacy = [key for key, on in config.items() if key.startswith("pooling_mode_") and on]
        single = (isinstance(modes, str) and "_" not in modes) or (modes is None and
                                                                   len(legacy) == 1)
        size = config.get("embedding_dimension", config.get("word_embedding_dimension"))
        return int(size) if single and isinstance(size, int) else None
    return None


def check_artifacts(settings: Settings) -> dict:
    """Raise a one-line UserError naming the path and the fix if the artifacts cannot be served.

    Returns a short summary (for the master's start-up log line).
    """
    model_dir = require_model_dir(settings.model_dir)
    labels = read_labels(settings.labels_path)
    index = load_index(settings.index_dir, settings.ef_search)
    if len(index) and int(index.labels.max()) >= len(labels):
        raise UserError(f"index at {settings.index_dir} uses label ids up to "
                        f"{int(index.labels.max())} but {settings.labels_path} names only "
                        f"{len(labels)} labels; rebuild with `dvc repro`")
    dimension = declared_dimension(model_dir)
    if dimension is not None and dimension != index.dimension:
        raise UserError(f"index at {settings.index_dir} holds {index.dimension}-dimensional vectors "
                        f"but the model at {model_dir} makes {dimension}; rebuild with `dvc repro`")
    require_index_built_by(index, settings.index_dir, model_dir)
    return {"model": str(model_dir), "index": str(settings.index_dir), "count": len(index),
            "dimension": index.dimension, "labels": len(labels)}
