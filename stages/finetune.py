"""Stage `finetune`: TripletLoss fine-tuning of model.base on data/triplets/train.jsonl.

Writes the model to models/finetuned, dev triplet accuracy before/after to metrics/finetune.json
and the loss curve (dvclive) to metrics/finetune_live.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from newsknn.data import replace_dir_atomically
from newsknn.errors import exit_on_user_error
from newsknn.models import load_model, use_bf16
from newsknn.params import load_params, require_number, section
from newsknn.training import FinetuneConfig, finetune, triplet_accuracy
from newsknn.triplets import read_records


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--triplets", default="data/triplets")
    parser.add_argument("--out", default="models/finetuned")
    parser.add_argument("--metrics", default="metrics/finetune.json")
    parser.add_argument("--live", default="metrics/finetune_live")
    args = parser.parse_args()

    params = load_params(args.params)
    base = section(params, "model").get("base")
    raw = section(params, "finetune")
    config = FinetuneConfig(
        epochs=require_number(raw.get("epochs"), "finetune.epochs", low=0, low_inclusive=False),
        batch_size=require_number(raw.get("batch_size"), "finetune.batch_size", low=1,
                                  integer=True),
        learning_rate=require_number(raw.get("learning_rate"), "finetune.learning_rate", low=0,
                                     low_inclusive=False),
        warmup_ratio=require_number(raw.get("warmup_ratio"), "finetune.warmup_ratio", low=0,
                                    high=1),
        margin=require_number(raw.get("margin"), "finetune.margin"),
        distance=raw.get("distance"),
        max_seq_length=require_number(raw.get("max_seq_length"), "finetune.max_seq_length",
                                      low=8, integer=True),
        bf16=use_bf16(raw.get("precision", "auto")),
        seed=require_number(raw.get("seed"), "finetune.seed", integer=True),
    )
    train = read_records(Path(args.triplets, "train.jsonl"))
    dev = read_records(Path(args.triplets, "dev.jsonl"))
    model = load_model(base, config.max_seq_length)

    before = triplet_accuracy(model, dev, bf16=config.bf16)
    shutil.rmtree(args.live, ignore_errors=True)
    started = time.perf_counter()
    stats = finetune(model, train, config, live_dir=args.live)
    wall = time.perf_counter() - started
    after = triplet_accuracy(model, dev, bf16=config.bf16)
    replace_dir_atomically(Path(args.out), lambda folder: model.save(str(folder)))

    metrics = {
        "dev_triplet_accuracy_before": before, "dev_triplet_accuracy_after": after,
        "train_triplets": len(train), "dev_triplets": len(dev),
        "train_loss": stats["train_loss"], "steps": stats["steps"],
        "train_seconds": round(wall, 1), "triplets_per_second": round(stats["triplets_per_second"], 2),
        "precision": "bf16" if config.bf16 else "fp32",
    }
    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    print(f"finetune: dev triplet accuracy {before:.4f} -> {after:.4f}, "
          f"{len(train)} triplets in {wall:.0f} s")


if __name__ == "__main__":
    main()
