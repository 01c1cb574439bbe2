"""The miniature end-to-end `dvc repro` (run once by the mini_repo fixture) and the stages' errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run
from newsknn.data import read_jsonl
from newsknn.embeddings import checksum, load_split
from newsknn.models import model_fingerprint


def test_repro_is_complete_and_clean(mini_repo):
    status = run(["dvc", "status"], cwd=mini_repo)
    assert "up to date" in status.stdout, status.stdout
    shown = run(["dvc", "metrics", "show"], cwd=mini_repo).stdout
    for key in ("finetuned.test.k1.accuracy", "pretrained.test.k1.accuracy",
                "dev_triplet_accuracy_after"):
        assert key in shown, shown


def test_embeddings_match_documents(mini_repo):
    for which in ("pretrained", "finetuned"):
        for split in ("train", "dev", "test"):
            rows = load_split(mini_repo / f"data/embeddings/{which}/{split}.npz")
            docs = read_jsonl(mini_repo / f"data/prepared/{split}.jsonl")
            assert list(rows.doc_ids) == [d.doc_id for d in docs]
            assert rows.embeddings.dtype == np.float32
            assert np.allclose(np.linalg.norm(rows.embeddings, axis=1), 1, atol=1e-3)
    pre = load_split(mini_repo / "data/embeddings/pretrained/test.npz").embeddings
    fine = load_split(mini_repo / "data/embeddings/finetuned/test.npz").embeddings
    assert not np.allclose(pre, fine), "fine-tuning changed nothing"


def test_index_metadata(mini_repo):
    meta = json.loads((mini_repo / "models/index/finetuned/meta.json").read_text())
    usable = [d for split in ("train", "dev")
              for d in read_jsonl(mini_repo / f"data/prepared/{split}.jsonl") if not d.is_empty]
    assert meta["count"] == len(usable) and meta["left_out_empty"] > 0
    assert meta["dimension"] == 384 and meta["params"]["M"] == 8
    assert meta["model_sha256"] == model_fingerprint(mini_repo / "models/finetuned")
    rows = [load_split(mini_repo / f"data/embeddings/finetuned/{s}.npz") for s in ("train", "dev")]
    ids = {d.doc_id for d in usable}
    kept = np.vstack([r.embeddings[np.isin(r.doc_ids, list(ids))] for r in rows])
    assert meta["embeddings_sha256"] == checksum(kept)


def test_metrics(mini_repo):
    evaluate = json.loads((mini_repo / "metrics/evaluate.json").read_text())
    for which in ("finetuned", "pretrained"):
        test = evaluate[which]["test"]
        assert 0 < test["k1"]["accuracy"] <= 1 and len(test["k3"]["per_class_f1"]) == 20
        assert evaluate[which]["index_vs_exact"]["recall_at_10"] >= 0.95
    finetune = json.loads((mini_repo / "metrics/finetune.json").read_text())
    assert finetune["train_triplets"] == 64 and finetune["steps"] == 8
    triplets = json.loads((mini_repo / "metrics/triplets.json").read_text())
    config = yaml.safe_load((mini_repo / "params.yaml").read_text())["triplets"]
    assert triplets["strategy"] == config["strategy"] and triplets["triplets"] == 64
    assert triplets["positive"] == config["positive"]
    for plot in ("confusion_finetuned.csv", "per_class_f1.csv", "confusion.png"):
        assert (mini_repo / "metrics/plots" / plot).stat().st_size > 0
    assert (mini_repo / "metrics/finetune_live/plots/metrics/loss.tsv").is_file()
    logged = yaml.safe_load((mini_repo / "metrics/finetune_live/params.yaml").read_text())
    finetune_params = yaml.safe_load((mini_repo / "params.yaml").read_text())["finetune"]
    assert float(logged["learning_rate"]) == float(finetune_params["learning_rate"])
    assert "output_dir" not in logged  # a temporary path: it would differ on every run


def stage(repo: Path, script: str, params: dict, *extra: str, check: bool = False):
    path = repo / "bad-params.yaml"
    path.write_text(yaml.safe_dump(params))
    try:
        return run([sys.executable, f"stages/{script}", "--params", str(path), *extra],
                   cwd=repo, check=check, timeout=300)
    finally:
        path.unlink()


def test_same_seed_same_triplets(mini_repo, tmp_path):
    params = yaml.safe_load((mini_repo / "params.yaml").read_text())
    outputs = []
    for name, seed in (("a", 42), ("b", 42), ("c", 7)):
        params["triplets"]["seed"] = seed
        stage(mini_repo, "make_triplets.py", params, "--out", str(tmp_path / name),
              "--metrics", str(tmp_path / f"{name}.json"), check=True)
        outputs.append((tmp_path / name / "train.jsonl").read_bytes())
    assert outputs[0] == outputs[1] != outputs[2]


@pytest.mark.parametrize("script,section,key,value,message", [
    ("make_triplets.py", "triplets", "strategy", "hardest", "triplets.strategy must be one of"),
    ("make_triplets.py", "finetune", "margin", -0.5, "finetune.margin must be > 0"),
    ("finetune.py", "finetune", "margin", -0.5, "finetune.margin must be > 0"),
    ("finetune.py", "finetune", "distance", "manhattan", "finetune.distance must be one of"),
    ("finetune.py", "model", "base", "models/no-such-model", "model folder not found"),
    ("finetune.py", "model", "base", "sentence-transformers/distilbert-base-nli-mean-tokens",
     "cannot load model"),
    ("embed.py", "model", "precision", "fp8", "model.precision must be one of"),
    ("build_hnsw_index.py", "index", "M", 0, "index.M must be >= 2"),
    ("evaluate.py", "knn", "k", 0, "knn.k must be >= 1"),
])
def test_bad_params_stop_with_one_line(mini_repo, tmp_path, script, section, key, value,
                                       message):
    params = yaml.safe_load((mini_repo / "params.yaml").read_text())
    params[section][key] = value
    extra = {"embed.py": ["pretrained", "--out", str(tmp_path / "e")],
             "build_hnsw_index.py": ["finetuned", "--out", str(tmp_path / "i")],
             "finetune.py": ["--out", str(tmp_path / "m"), "--metrics", str(tmp_path / "f.json"),
                             "--live", str(tmp_path / "live")],
             "make_triplets.py": ["--out", str(tmp_path / "t"),
                                  "--metrics", str(tmp_path / "t.json")],
             "evaluate.py": ["--metrics", str(tmp_path / "ev.json"),
                             "--plots", str(tmp_path / "p")]}[script]
    result = stage(mini_repo, script, params, *extra)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir()), "a failed stage left output behind"


def test_short_finetune_raises_train_triplet_accuracy(mini_repo):
    from newsknn.models import load_model
    from newsknn.training import FinetuneConfig, finetune, triplet_accuracy

    with open(mini_repo / "data/triplets/train.jsonl") as handle:
        records = [json.loads(line) for line in handle][:48]
    model = load_model("all-MiniLM-L6-v2", max_seq_length=32)
    before = triplet_accuracy(model, records, "train")
    config = FinetuneConfig(epochs=3, batch_size=8, learning_rate=1e-4, warmup_ratio=0.1,
                            margin=0.3, distance="cosine", max_seq_length=32, bf16=False, seed=1)
    stats = finetune(model, records, config, progress=False)
    after = triplet_accuracy(model, records, "train")
    assert after > before, (before, after)
    assert stats["steps"] == 18


def test_exp_run_switches_strategy(mini_repo):
    default = yaml.safe_load((mini_repo / "params.yaml").read_text())["triplets"]["strategy"]
    assert default != "random"
    run(["dvc", "exp", "run", "--temp", "-n", "random-mini", "-S", "triplets.strategy=random"],
        cwd=mini_repo, timeout=900)
    shown = json.loads(run(["dvc", "exp", "show", "--json"], cwd=mini_repo).stdout)
    text = json.dumps(shown)
    assert "random-mini" in text
    assert '"strategy": "random"' in text  # the experiment ran with the switched param
    # the workspace itself is untouched by a --temp experiment
    triplets = json.loads((mini_repo / "metrics/triplets.json").read_text())
    assert triplets["strategy"] == default
