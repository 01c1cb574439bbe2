"""The service's settings: model/kNN knobs from ``params.yaml``, paths and limits from the environment.

The kNN knobs come from the same ``params.yaml`` the pipeline reads, so the served classifier votes
exactly like the ``evaluate`` stage. Artifact paths default to the pipeline's outputs but are
environment variables, because a container mounts or copies them wherever it likes. Everything is
read and checked once, up front, so a bad value stops start-up with one line instead of failing on
the first request.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from newsknn.errors import UserError
from newsknn.knn import VOTES
from newsknn.models import PRECISIONS
from newsknn.params import load_params, require_choice, require_number, section

DEFAULT_PARAMS = "params.yaml"
DEFAULT_MODEL_DIR = "models/finetuned"
DEFAULT_INDEX_DIR = "models/index/finetuned"
DEFAULT_LABELS = "data/prepared/labels.json"


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to load its classifier and to validate requests."""

    params_path: str = DEFAULT_PARAMS
    model_dir: str = DEFAULT_MODEL_DIR
    index_dir: str = DEFAULT_INDEX_DIR
    labels_path: str = DEFAULT_LABELS
    k: int = 10                      # knn.k: neighbours in the vote, and neighbours reported
    weighting: str = "similarity"    # knn.weighting
    ef_search: int = 128             # index.ef_search
    precision: str = "auto"          # model.precision
    max_seq_length: int = 256        # model.max_seq_length: the model's window, in tokens
    max_top_k: int = 50              # requests may ask for top_k in 1..max_top_k
    max_batch: int = 64              # at most this many texts per request
    encode_batch: int = 4            # texts per forward pass inside a request (length-sorted)
    max_text_chars: int = 100_000    # longer texts are cut here before tokenizing (never refused)
    max_body_bytes: int = 1 << 20    # larger request bodies get a 413
    torch_threads: int | None = None  # intra-op threads per worker (None: torch's default)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def env_int(env: Mapping[str, str], name: str, default: int | None, low: int = 1
            ) -> int | None:
    """An integer environment variable, or ``default`` when it is unset or empty."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise UserError(f"{name} must be a whole number; got {raw!r}") from None
    if value < low:
        raise UserError(f"{name} must be >= {low}; got {value}")
    return value


def load_settings(env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read ``params.yaml`` (``NEWSKNN_PARAMS``) and the ``NEWSKNN_*`` variables into Settings.

    ``overrides`` (for tests and embedding the app) win over both; their keys are Settings fields.
    A missing params file or a bad value is a :class:`UserError` naming the key.
    """
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(Settings.__dataclass_fields__)
    if unknown:
        raise UserError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    params_path = overrides.get("params_path") or env.get("NEWSKNN_PARAMS") or DEFAULT_PARAMS
    params = load_params(params_path)
    knn, index, model = section(params, "knn"), section(params, "index"), section(params, "model")
    values: dict[str, Any] = {
        "params_path": str(params_path),
        "model_dir": env.get("NEWSKNN_MODEL_DIR") or DEFAULT_MODEL_DIR,
        "index_dir": env.get("NEWSKNN_INDEX_DIR") or DEFAULT_INDEX_DIR,
        "labels_path": env.get("NEWSKNN_LABELS") or DEFAULT_LABELS,
        "k": require_number(knn.get("k"), "knn.k", low=1, integer=True),
        "weighting": require_choice(knn.get("weighting", "similarity"), "knn.weighting", VOTES),
        "ef_search": require_number(index.get("ef_search"), "index.ef_search", low=1,
                                    integer=True),
        "precision": require_choice(model.get("precision", "auto"), "model.precision",
                                    PRECISIONS),
        "max_seq_length": require_number(model.get("max_seq_length"), "model.max_seq_length",
                                         low=8, integer=True),
        "max_top_k": env_int(env, "NEWSKNN_MAX_TOP_K", 50),
        "max_batch": env_int(env, "NEWSKNN_MAX_BATCH", 64),
        "encode_batch": env_int(env, "NEWSKNN_ENCODE_BATCH", 4),
        "max_text_chars": env_int(env, "NEWSKNN_MAX_TEXT_CHARS", 100_000),
        "max_body_bytes": env_int(env, "NEWSKNN_MAX_BODY_BYTES", 1 << 20, low=1024),
        "torch_threads": env_int(env, "NEWSKNN_TORCH_THREADS", None),
    }
    values.update(overrides)
    settings = Settings(**values)
    if settings.k > settings.max_top_k:
        # The default request must itself be allowed.
        settings = Settings(**dict(values, max_top_k=settings.k))
    return settings
