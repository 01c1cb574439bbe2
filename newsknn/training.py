"""Fine-tuning a sentence-transformers model with ``TripletLoss`` on explicit triplets.

Uses the library's own trainer, loss and evaluator; this module only wires them together, measures
dev triplet accuracy before and after training, and logs the loss curve with dvclive.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from newsknn.errors import UserError
from newsknn.models import autocast, device
from newsknn.triplets import DISTANCES


@dataclass(frozen=True)
class FinetuneConfig:
    """The ``finetune`` section of params.yaml, checked."""

    epochs: float
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    margin: float
    distance: str
    max_seq_length: int
    bf16: bool
    seed: int

    def __post_init__(self) -> None:
        if self.distance not in DISTANCES:
            raise UserError(f"finetune.distance must be one of {', '.join(DISTANCES)}; "
                            f"got {self.distance!r}")
        if not self.margin > 0:
            raise UserError(f"finetune.margin must be > 0; got {self.margin!r}")
        if self.distance == "cosine" and self.margin >= 2:
            raise UserError(f"finetune.margin {self.margin} can never be met: cosine distances of "
                            "normalised embeddings lie in [0, 2]; use a margin below 1")


def triplet_columns(records: Sequence[dict]) -> dict[str, list[str]]:
    """The anchor/positive/negative text columns, in the order ``TripletLoss`` reads them."""
    return {role: [record[role] for record in records]
            for role in ("anchor", "positive", "negative")}


def triplet_evaluator(records: Sequence[dict], name: str):
    """A ``TripletEvaluator`` (cosine) over triplet records."""
    from sentence_transformers.sentence_transformer.evaluation import TripletEvaluator

    columns = triplet_columns(records)
    return TripletEvaluator(columns["anchor"], columns["positive"], columns["negative"],
                            name=name, similarity_fn_names=["cosine"], batch_size=32,
                            show_progress_bar=False, write_csv=False)


def triplet_accuracy(model, records: Sequence[dict], name: str = "dev", bf16: bool = False
                     ) -> float:
    """Share of triplets whose anchor is more cosine-similar to the positive than the negative."""
    import torch

    if not records:
        return float("nan")
    with torch.inference_mode(), autocast(bf16):
        metrics = triplet_evaluator(records, name)(model)
    return float(metrics[f"{name}_cosine_accuracy"])


def stable_dvclive_callback(live):
    """transformers' ``DVCLiveCallback`` logging the training arguments without ``output_dir``.

    Why: the trainer writes nothing worth keeping (``save_strategy="no"``), so its output folder is
    a fresh temporary path; logged, it would make the committed params.yaml of every run differ.
    """
    from transformers.integrations import DVCLiveCallback

    class StableDVCLiveCallback(DVCLiveCallback):
        def setup(self, args, state, model):
            self._initialized = True
            if state.is_world_process_zero:
                params = args.to_dict()
                params.pop("output_dir", None)
                self.live.log_params(params)

    return StableDVCLiveCallback(live=live)


def finetune(model, train_records: Sequence[dict], config: FinetuneConfig,
             live_dir: str | Path | None = None, progress: bool = True) -> dict:
    """Train ``model`` in place with ``TripletLoss`` on ``train_records``; return trainer stats."""
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments)
    from sentence_transformers.sentence_transformer.losses import (TripletDistanceMetric,
                                                                   TripletLoss)
    from transformers import set_seed

    if not train_records:
        raise UserError("no training triplets (run `dvc repro make_triplets`)")
    set_seed(config.seed)
    model.max_seq_length = config.max_seq_length
    distance = {"cosine": TripletDistanceMetric.COSINE,
                "euclidean": TripletDistanceMetric.EUCLIDEAN}[config.distance]
    loss = TripletLoss(model, distance_metric=distance, triplet_margin=config.margin)
    dataset = Dataset.from_dict(triplet_columns(train_records))
    steps = max(1, int(len(dataset) * config.epochs / config.batch_size))
    callbacks = []
    if live_dir is not None:
        from dvclive import Live

        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
        callbacks.append(stable_dvclive_callback(live))
    with tempfile.TemporaryDirectory(prefix="newsknn-trainer-") as scratch:
        args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=config.epochs,
            per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio in transformers v5
            bf16=config.bf16,
            use_cpu=device() == "cpu",
            seed=config.seed,
            data_seed=config.seed,
            logging_steps=max(1, steps // 50),
            logging_first_step=True,
            save_strategy="no",
            report_to="none",
            disable_tqdm=not progress,
        )
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset,
                                             loss=loss, callbacks=callbacks)
        result = trainer.train()
    return {"train_loss": float(result.training_loss), "steps": int(result.global_step),
            "seconds": float(result.metrics.get("train_runtime", 0.0)),
            "triplets_per_second": len(dataset) * config.epochs
            / max(result.metrics.get("train_runtime", 1e-9), 1e-9)}
