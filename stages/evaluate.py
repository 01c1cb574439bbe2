"""Stage `evaluate`: the kNN classifier over each model's index on dev and on the full test set.

Writes metrics/evaluate.json (accuracy, macro-F1, per-class F1 for k=1 and the weighted k-vote,
fine-tuned and pretrained side by side, and hnswlib against exact search) and the plots under
metrics/plots/ (confusion matrices, per-class F1, a PNG of both).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from newsknn.classifier import KNNClassifier
from newsknn.data import read_labels
from newsknn.embeddings import EmbeddedSplit, checksum, concatenate, load_split, load_usable
from newsknn.errors import UserError, exit_on_user_error
from newsknn.evaluation import (classification_scores, confusion, queries_per_second,
                                recall_with_ties)
from newsknn.index import build_exact, load_index
from newsknn.knn import VOTES
from newsknn.params import load_params, require_choice, require_number, section
from newsknn.plots import save_confusion_png

MODELS = ("finetuned", "pretrained")
RECALL_K = 10


def scores_for(classifier: KNNClassifier, queries: EmbeddedSplit, labels: list[str], k: int
               ) -> tuple[dict, dict]:
    """Scores for k=1 and the k-vote, and the predictions behind them."""
    scores, predictions = {}, {}
    for rule, rule_k in (("k1", 1), (f"k{k}", k)):
        predicted = classifier.predict_labels(queries.embeddings, rule_k)
        scores[rule] = classification_scores(queries.labels, predicted, labels)
        predictions[rule] = (queries.labels, predicted)
    return scores, predictions


def evaluate_model(which: str, args, labels: list[str], k: int, weighting: str,
                   ef_search: int) -> tuple[dict, dict]:
    """Scores of one model's classifier, and its test predictions (for the plots).

    Dev (model selection) is scored with exact search over the train split alone; test with the
    hnswlib index over train and dev, i.e. the classifier that is served.
    """
    folder, prepared = Path(args.embeddings, which), Path(args.prepared)
    index = load_index(Path(args.index, which), ef_search)
    train = load_usable(folder, prepared, "train")
    indexed = concatenate([train, load_usable(folder, prepared, "dev")])
    if list(indexed.doc_ids) != list(index.doc_ids):
        raise UserError(f"index {which} does not match its embeddings (run `dvc repro`)")
    if index.meta.get("embeddings_sha256") != checksum(indexed.embeddings):
        raise UserError(f"index {which} was built from other embeddings (run `dvc repro`)")
    dev_classifier = KNNClassifier(build_exact(train.embeddings, train.doc_ids, train.labels),
                                   labels, k=k, weighting=weighting)
    classifier = KNNClassifier(index, labels, k=k, weighting=weighting)
    exact = build_exact(indexed.embeddings, indexed.doc_ids, indexed.labels)
    exact_classifier = KNNClassifier(exact, labels, k=k, weighting=weighting)

    result: dict = {"indexed_documents": len(index)}
    dev = load_split(folder / "dev.npz")
    if len(dev):
        dev_scores, _ = scores_for(dev_classifier, dev, labels, k)
        result["dev"] = {rule: {key: value for key, value in scores.items()
                                if key != "per_class_f1"} for rule, scores in dev_scores.items()}
    test = load_split(folder / "test.npz")
    result["test"], predictions = scores_for(classifier, test, labels, k)

    approx_items, _ = index.query(test.embeddings, RECALL_K)
    exact_items, exact_sims = exact.query(test.embeddings, RECALL_K)
    approx_accuracy = result["test"][f"k{k}"]["accuracy"]
    exact_accuracy = float(np.mean(exact_classifier.predict_labels(test.embeddings) == test.labels))
    result["index_vs_exact"] = {
        f"recall_at_{RECALL_K}": round(recall_with_ties(approx_items, exact_items, exact_sims,
                                                        test.embeddings, indexed.embeddings), 5),
        "accuracy_hnsw": approx_accuracy,
        "accuracy_exact": exact_accuracy,
        "accuracy_difference_points": round(100 * (approx_accuracy - exact_accuracy), 3),
        "hnsw": queries_per_second(index, test.embeddings, k),
        "exact": queries_per_second(exact, test.embeddings, k),
    }
    return result, predictions


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--embeddings", default="data/embeddings")
    parser.add_argument("--index", default="models/index")
    parser.add_argument("--metrics", default="metrics/evaluate.json")
    parser.add_argument("--plots", default="metrics/plots")
    args = parser.parse_args()

    params = load_params(args.params)
    knn = section(params, "knn")
    k = require_number(knn.get("k"), "knn.k", low=1, integer=True)
    weighting = require_choice(knn.get("weighting"), "knn.weighting", VOTES)
    ef_search = require_number(section(params, "index").get("ef_search"), "index.ef_search",
                               low=1, integer=True)
    labels = read_labels(Path(args.prepared, "labels.json"))

    metrics, predictions = {"k": k, "weighting": weighting}, {}
    for which in MODELS:
        metrics[which], predictions[which] = evaluate_model(which, args, labels, k, weighting,
                                                            ef_search)
        test = metrics[which]["test"]
        print(f"evaluate@{which}: test accuracy k=1 {test['k1']['accuracy']:.4f}, "
              f"k={k} {test[f'k{k}']['accuracy']:.4f}; dev k=1 "
              f"{metrics[which].get('dev', {}).get('k1', {}).get('accuracy', float('nan')):.4f}; "
              f"recall@{RECALL_K} {metrics[which]['index_vs_exact'][f'recall_at_{RECALL_K}']}")
    main_rule = f"k{k}"
    metrics["gain_points"] = {
        rule: round(100 * (metrics["finetuned"]["test"][rule]["accuracy"]
                           - metrics["pretrained"]["test"][rule]["accuracy"]), 2)
        for rule in ("k1", main_rule)}

    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
    plots = Path(args.plots)
    plots.mkdir(parents=True, exist_ok=True)
    matrices = {}
    for which in MODELS:
        truth, predicted = predictions[which][main_rule]
        matrices[which] = confusion(truth, predicted, len(labels))
        with open(plots / f"confusion_{which}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["actual", "predicted"])
            writer.writerows((labels[t], labels[p]) for t, p in zip(truth, predicted))
    with open(plots / "per_class_f1.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["label", "f1", "pretrained_f1"])
        for name in labels:
            writer.writerow([name,
                             round(metrics["finetuned"]["test"][main_rule]["per_class_f1"][name], 4),
                             round(metrics["pretrained"]["test"][main_rule]["per_class_f1"][name], 4)])
    save_confusion_png(plots / "confusion.png", matrices, labels, {
        which: metrics[which]["test"][main_rule]["accuracy"] for which in MODELS}, main_rule)


if __name__ == "__main__":
    main()
