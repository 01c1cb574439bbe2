"""The triplet dataset class: labels, coverage, seeding, mining, and its params."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from newsknn.data import Document
from newsknn.errors import UserError
from newsknn.triplets import (NewsgroupTripletDataset, confusion_from_neighbours, read_records,
                              write_records)

GROUPS = ["comp.a", "comp.b", "rec.c", "sci.d", "talk.e"]


def synthetic(per_group: int = 8, seed: int = 0):
    """Documents around one centre per group (groups 0 and 1 close together), unit embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(GROUPS), 16))
    centres[1] = centres[0] + 0.3 * rng.normal(size=16)
    docs, rows = [], []
    for label, name in enumerate(GROUPS):
        for i in range(per_group):
            docs.append(Document(f"{name}/{i}", f"post {i} of {name}", label, name))
            rows.append(centres[label] + 0.8 * rng.normal(size=16))
    docs.append(Document("rec.c/empty", "  \n", 2, "rec.c"))
    rows.append(rng.normal(size=16))
    docs.append(Document("alone/1", "the only post of its group", 5, "alone"))
    rows.append(rng.normal(size=16))
    rows = np.array(rows, dtype=np.float32)
    return docs, rows / np.linalg.norm(rows, axis=1, keepdims=True)


def build(strategy="random", **kwargs) -> NewsgroupTripletDataset:
    docs, emb = synthetic()
    confusion = np.full((6, 6), 1.0)
    return NewsgroupTripletDataset(docs, strategy=strategy, embeddings=emb, confusion=confusion,
                                   hard_k=3, **kwargs)


@pytest.mark.parametrize("strategy", ["random", "hard", "semi_hard", "confused"])
def test_labels_and_coverage(strategy):
    dataset = build(strategy, per_anchor=2)
    docs = dataset.documents
    assert len(docs) == 5 * 8  # the empty post and the single-post group are left out
    assert dataset.skipped_empty == 1 and dataset.skipped_single == ["alone"]
    for t in dataset.triplets:
        assert t.positive != t.anchor
        assert docs[t.positive].label == docs[t.anchor].label
        assert docs[t.negative].label != docs[t.anchor].label
    assert Counter(t.anchor for t in dataset.triplets) == {i: 2 for i in range(len(docs))}
    record = dataset.records()[0]
    assert record["anchor_label"] == record["positive_label"] != record["negative_label"]
    assert dataset[0]["anchor"] == record["anchor"]


@pytest.mark.parametrize("strategy", ["random", "hard", "semi_hard", "confused"])
def test_seeded(strategy):
    first, again, other = build(strategy, seed=7), build(strategy, seed=7), build(strategy, seed=8)
    assert first.records() == again.records()
    assert first.records() != other.records()


def test_max_anchors_caps():
    dataset = build("random", max_anchors=10)
    assert len(dataset) == 10 and len({t.anchor for t in dataset.triplets}) == 10


def mean_negative_similarity(dataset) -> float:
    emb = dataset.embeddings
    return float(np.mean([emb[t.anchor] @ emb[t.negative] for t in dataset.triplets]))


def test_mined_negatives_are_nearer_than_random():
    random_sim = mean_negative_similarity(build("random"))
    assert mean_negative_similarity(build("hard")) > random_sim + 0.1
    assert mean_negative_similarity(build("semi_hard")) > random_sim


def test_hard_skip_moves_away_from_nearest():
    nearest = mean_negative_similarity(build("hard", hard_skip=0))
    skipped = mean_negative_similarity(build("hard", hard_skip=10))
    assert skipped < nearest


def test_semi_hard_window():
    dataset = build("semi_hard", margin=0.3)
    emb = dataset.embeddings
    found = [t for t in dataset.triplets if t.mined]
    assert found, "no semi-hard negative at all on data built to have them"
    for t in found:
        d_ap = 1 - emb[t.anchor] @ emb[t.positive]
        d_an = 1 - emb[t.anchor] @ emb[t.negative]
        assert d_ap < d_an < d_ap + 0.3 + 1e-6
    assert dataset.stats()["mined_found"] == len(found)


def test_confused_follows_the_confusion_matrix():
    docs, emb = synthetic()
    confusion = np.zeros((6, 6))
    confusion[0, 1] = 1.0  # group 0 is only ever mistaken for group 1
    dataset = NewsgroupTripletDataset(docs, strategy="confused", confusion=confusion,
                                      confused_mix=0.0)
    negatives = Counter(dataset.documents[t.negative].label for t in dataset.triplets
                        if dataset.documents[t.anchor].label == 0)
    assert set(negatives) == {1}
    mixed = NewsgroupTripletDataset(docs, strategy="confused", confusion=confusion,
                                    confused_mix=1.0, per_anchor=20)
    spread = Counter(mixed.documents[t.negative].label for t in mixed.triplets
                     if mixed.documents[t.anchor].label == 0)
    assert set(spread) == {1, 2, 3, 4}


def test_confusion_from_neighbours():
    matrix = confusion_from_neighbours(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0]), 3)
    assert matrix[0].tolist() == [0.0, 0.5, 0.5] and matrix[1].tolist() == [1.0, 0.0, 0.0]


def test_stats():
    stats = build("hard").stats()
    assert stats["triplets"] == 40 and stats["mined_found_ratio"] == 1.0
    assert stats["mean_similarity_anchor_negative"] < stats["mean_similarity_anchor_positive"]
    assert sum(p["count"] for p in stats["top_anchor_negative_groups"]) <= 40


def test_bad_params():
    docs, emb = synthetic()
    with pytest.raises(UserError, match="triplets.strategy must be one of"):
        NewsgroupTripletDataset(docs, strategy="hardest")
    with pytest.raises(UserError, match="needs one pretrained embedding per document"):
        NewsgroupTripletDataset(docs, strategy="hard")
    with pytest.raises(UserError, match="finetune.distance"):
        NewsgroupTripletDataset(docs, distance="manhattan")


def test_easy_positives_are_near_neighbours():
    dataset = build("random", positive="easy", easy_k=2)
    emb, docs = dataset.embeddings, dataset.documents
    for t in dataset.triplets:
        assert t.positive != t.anchor and docs[t.positive].label == docs[t.anchor].label
        same = [i for i in range(len(docs)) if docs[i].label == docs[t.anchor].label
                and i != t.anchor]
        nearest = sorted(same, key=lambda i: -float(emb[t.anchor] @ emb[i]))[:2]
        assert t.positive in nearest
    random_pos = build("random")
    assert np.mean([emb[t.anchor] @ emb[t.positive] for t in dataset.triplets]) > \
        np.mean([emb[t.anchor] @ emb[t.positive] for t in random_pos.triplets])
    with pytest.raises(UserError, match="triplets.positive must be one of"):
        build("random", positive="hardest")


def test_records_round_trip_byte_identically(tmp_path):
    records = build("hard").records()
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(first, records)
    write_records(second, read_records(first))
    assert read_records(first) == records
    assert first.read_bytes() == second.read_bytes()
    assert read_records(first, limit=3) == records[:3]


def test_missing_records_name_the_stage(tmp_path):
    with pytest.raises(UserError, match="dvc repro make_triplets"):
        read_records(tmp_path / "nope.jsonl")
