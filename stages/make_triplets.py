"""Stage `make_triplets`: training triplets by the configured strategy, and dev triplets.

Reads the prepared train/dev documents and the pretrained embeddings (for mining and for the
class-confusion strategy), writes data/triplets/{train,dev}.jsonl and metrics/triplets.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from newsknn.data import read_jsonl, read_labels, replace_dir_atomically
from newsknn.embeddings import load_split
from newsknn.errors import UserError, exit_on_user_error
from newsknn.knn import exact_search, vote
from newsknn.params import load_params, require_number, section
from newsknn.triplets import (NewsgroupTripletDataset, confusion_from_neighbours,
                              write_records)


def aligned_embeddings(docs, path: Path) -> np.ndarray:
    """The pretrained embedding rows of ``docs``, checked to be the same documents in order."""
    split = load_split(path)
    if list(split.doc_ids) != [doc.doc_id for doc in docs]:
        raise UserError(f"{path} does not match the prepared documents (run `dvc repro`)")
    return split.embeddings


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--embeddings", default="data/embeddings/pretrained")
    parser.add_argument("--out", default="data/triplets")
    parser.add_argument("--metrics", default="metrics/triplets.json")
    args = parser.parse_args()

    params = load_params(args.params)
    config, finetune = section(params, "triplets"), section(params, "finetune")
    max_anchors = config.get("max_anchors")
    if max_anchors is not None:
        max_anchors = require_number(max_anchors, "triplets.max_anchors", low=1, integer=True)
    margin = require_number(finetune.get("margin"), "finetune.margin", low=0, low_inclusive=False)
    options = dict(
        strategy=config.get("strategy"),
        per_anchor=require_number(config.get("per_anchor"), "triplets.per_anchor", low=1,
                                  integer=True),
        seed=require_number(config.get("seed"), "triplets.seed", integer=True),
        hard_k=require_number(config.get("hard_k"), "triplets.hard_k", low=1, integer=True),
        hard_skip=require_number(config.get("hard_skip"), "triplets.hard_skip", low=0,
                                 integer=True),
        confused_mix=require_number(config.get("confused_mix"), "triplets.confused_mix",
                                    low=0, high=1),
        margin=margin, distance=finetune.get("distance"),
        positive=config.get("positive", "random"),
        easy_k=require_number(config.get("easy_k", 5), "triplets.easy_k", low=1, integer=True),
    )
    train = read_jsonl(Path(args.prepared, "train.jsonl"))
    dev = read_jsonl(Path(args.prepared, "dev.jsonl"))
    labels = read_labels(Path(args.prepared, "labels.json"))
    train_emb = aligned_embeddings(train, Path(args.embeddings, "train.npz"))
    dev_emb = aligned_embeddings(dev, Path(args.embeddings, "dev.npz"))

    # Where the pretrained 1-NN goes wrong on dev, group by group: the `confused` strategy's prior.
    train_ok = np.array([not doc.is_empty for doc in train])
    dev_ok = np.array([not doc.is_empty for doc in dev])
    train_labels = np.array([doc.label for doc in train])[train_ok]
    dev_labels = np.array([doc.label for doc in dev])[dev_ok]
    confusion = np.zeros((len(labels), len(labels)))
    if dev_ok.any():
        nearest, sims = exact_search(dev_emb[dev_ok], train_emb[train_ok], k=1)
        predicted, _ = vote(train_labels[nearest], sims, len(labels), k=1)
        confusion = confusion_from_neighbours(dev_labels, predicted, len(labels))

    dataset = NewsgroupTripletDataset(train, embeddings=train_emb, confusion=confusion,
                                      max_anchors=max_anchors, **options)
    dev_set = NewsgroupTripletDataset(dev, strategy="random", per_anchor=1,
                                      seed=options["seed"], distance=options["distance"])

    def fill(folder: Path) -> None:
        write_records(folder / "train.jsonl", dataset.records())
        write_records(folder / "dev.jsonl", dev_set.records())

    replace_dir_atomically(Path(args.out), fill)
    stats = dataset.stats()
    stats["dev_triplets"] = len(dev_set)
    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(stats, indent=2) + "\n")
    print(f"make_triplets: {stats['triplets']} {stats['strategy']} triplets over "
          f"{stats['anchors']} anchors ({stats['skipped_empty']} empty documents skipped, "
          f"mined negatives found for {stats['mined_found_ratio']:.1%}); "
          f"{len(dev_set)} dev triplets")


if __name__ == "__main__":
    main()
