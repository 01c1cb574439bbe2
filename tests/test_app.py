"""The prediction service: request rules with Flask's test client and a stand-in classifier, then a
real gunicorn (the project's gunicorn.conf.py) over the miniature pipeline's artifacts, through HTTP.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, tool_env
from newsknn.classifier import Neighbour, Prediction
from newsknn.data import read_jsonl
from newsknn.errors import UserError
from serving import children, maps_torch, run_until_exit, start_server

from app import create_app
from app.artifacts import check_artifacts, declared_dimension
from app.config import Settings, load_settings

# --- unit tests: the Flask app with a stand-in classifier --------------------------------------

NAMES = [f"group.{i}" for i in range(20)]


class FakeClassifier:
    """Predicts label ``len(text) % 20`` and records what it was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.label_names, self.k, self.fail = list(NAMES), 3, fail
        self.calls: list[tuple[list[str], int | None, int | None]] = []

    def predict(self, texts, k=None, n_neighbours=None):
        self.calls.append((list(texts), k, n_neighbours))
        if self.fail:
            raise RuntimeError("simulated fault")
        shown = n_neighbours or k or self.k
        return [Prediction(NAMES[len(t) % 20], len(t) % 20, 1.0,
                           [Neighbour(f"doc/{i}", NAMES[0], 0.5) for i in range(shown)])
                for t in texts]


UNIT_LIMITS = {"max_batch": 4, "max_top_k": 50, "max_text_chars": 50, "max_body_bytes": 4096}


@pytest.fixture
def fake() -> FakeClassifier:
    return FakeClassifier()


@pytest.fixture
def client(fake):
    app = create_app({"params_path": str(ROOT / "params.yaml"), "TESTING": True, **UNIT_LIMITS},
                     classifier=fake)
    return app.test_client()


JSON = "application/json"


def bad_requests(max_batch: int, max_body: int) -> list[tuple[str, str, object, str | None, int,
                                                            str]]:
    """(id, method+path, body, content type, status, text the error must contain)."""
    return [
        ("invalid-json", "POST /predict", '{"text": ', JSON, 400, "not valid JSON"),
        ("not-utf8", "POST /predict", b'{"text": "\xff\xfe"}', JSON, 400, "UTF-8"),
        ("deeply-nested", "POST /predict", "[" * 3000, JSON, 400, "not valid JSON"),
        ("text-plain", "POST /predict", '{"text": "a"}', "text/plain", 415, "application/json"),
        ("form", "POST /predict", "text=a", "application/x-www-form-urlencoded", 415,
         "application/json"),
        ("no-content-type", "POST /predict", '{"text": "a"}', None, 415, "application/json"),
        ("empty-body", "POST /predict", "", JSON, 400, "empty"),
        ("array-body", "POST /predict", '["a"]', JSON, 400, "JSON object"),
        ("string-body", "POST /predict", '"a"', JSON, 400, "JSON object"),
        ("missing-text", "POST /predict", "{}", JSON, 400, "missing field text"),
        ("unknown-field", "POST /predict", '{"txt": "a"}', JSON, 400, "unknown field(s): txt"),
        ("text-number", "POST /predict", '{"text": 5}', JSON, 400, "got number"),
        ("text-null", "POST /predict", '{"text": null}', JSON, 400, "got null"),
        ("text-array", "POST /predict", '{"text": ["a"]}', JSON, 400, "got array"),
        ("text-empty", "POST /predict", '{"text": ""}', JSON, 400, "empty"),
        ("text-whitespace", "POST /predict", '{"text": " \\n\\t "}', JSON, 400,
         "only whitespace"),
        ("text-and-texts", "POST /predict", '{"text": "a", "texts": ["b"]}', JSON, 400,
         "not both"),
        ("texts-string", "POST /predict", '{"texts": "a"}', JSON, 400, "array of strings"),
        ("texts-empty", "POST /predict", '{"texts": []}', JSON, 400, "texts is empty"),
        ("batch-too-large", "POST /predict", json.dumps({"texts": ["a"] * (max_batch + 1)}), JSON,
         400, f"at most {max_batch}"),
        ("batch-bad-element", "POST /predict", '{"texts": ["a", 3]}', JSON, 400,
         "texts[1] must be a string"),
        ("batch-empty-element", "POST /predict", '{"texts": ["a", "  "]}', JSON, 400,
         "texts[1] is empty"),
        ("top-k-zero", "POST /predict", '{"text": "a", "top_k": 0}', JSON, 400, "between 1 and"),
        ("top-k-too-big", "POST /predict", '{"text": "a", "top_k": 51}', JSON, 400,
         "between 1 and 50"),
        ("top-k-string", "POST /predict", '{"text": "a", "top_k": "3"}', JSON, 400,
         "whole number"),
        ("top-k-bool", "POST /predict", '{"text": "a", "top_k": true}', JSON, 400,
         "whole number"),
        ("top-k-float", "POST /predict", '{"text": "a", "top_k": 2.5}', JSON, 400,
         "whole number"),
        ("body-too-large", "POST /predict", json.dumps({"text": "x" * max_body}), JSON, 413,
         "larger than the limit"),
        ("get-no-query", "GET /predict", None, None, 400, "missing query parameter"),
        ("get-empty-query", "GET /predict?query=", None, None, 400, "empty"),
        ("get-blank-query", "GET /predict?query=%20%20", None, None, 400, "only whitespace"),
        ("get-unknown-param", "GET /predict?q=space", None, None, 400, "unknown query"),
        ("get-repeated-query", "GET /predict?query=a&query=b", None, None, 400, "give it once"),
        ("get-top-k-word", "GET /predict?query=a&top_k=three", None, None, 400, "whole number"),
        ("get-top-k-zero", "GET /predict?query=a&top_k=0", None, None, 400, "between 1 and"),
        ("unknown-route", "GET /nope", None, None, 404, "no route /nope"),
        ("root", "GET /", None, None, 404, "/predict"),
        ("delete-predict", "DELETE /predict", None, None, 405, "use GET"),
        ("put-predict", "PUT /predict", '{"text": "a"}', JSON, 405, "not allowed"),
        ("post-health", "POST /health", "{}", JSON, 405, "not allowed"),
        ("post-labels", "POST /labels", "{}", JSON, 405, "not allowed"),
    ]


UNIT_CASES = bad_requests(UNIT_LIMITS["max_batch"], UNIT_LIMITS["max_body_bytes"])


@pytest.mark.parametrize("case", UNIT_CASES, ids=[case[0] for case in UNIT_CASES])
def test_bad_input_is_a_json_4xx(client, fake, case):
    _, route, body, content_type, status, needle = case
    method, path = route.split(" ", 1)
    headers = {"Content-Type": content_type} if content_type else {}
    reply = client.open(path, method=method, data=body, headers=headers)
    assert reply.status_code == status, reply.get_data(as_text=True)
    assert reply.mimetype == JSON
    message = reply.get_json()["error"]
    assert needle in message
    assert "Traceback" not in message
    assert fake.calls == []  # nothing reached the model
    if status == 405:
        assert "Allow" in reply.headers


def test_single_batch_and_get(client, fake):
    reply = client.post("/predict", json={"text": "hello"})
    assert reply.status_code == 200
    assert list(reply.get_json()) == ["label", "label_id", "score", "neighbors"]
    assert reply.get_json()["label"] == NAMES[5] and len(reply.get_json()["neighbors"]) == 3

    reply = client.post("/predict", json={"texts": ["a", "bb", "ccc"], "top_k": 7})
    predictions = reply.get_json()["predictions"]
    assert [p["label_id"] for p in predictions] == [1, 2, 3]
    assert all(len(p["neighbors"]) == 7 for p in predictions)
    assert fake.calls[-1] == (["a", "bb", "ccc"], 7, 7)

    reply = client.get("/predict?query=four&top_k=2")
    assert reply.status_code == 200 and reply.get_json()["label_id"] == 4
    assert fake.calls[-1] == (["four"], 2, 2)
    # no top_k: the classifier's own knn.k decides, as in the evaluate stage
    client.post("/predict", json={"text": "x"})
    assert fake.calls[-1][1:] == (None, None)


def test_over_long_text_is_cut_not_refused(client, fake):
    reply = client.post("/predict", json={"texts": ["y" * 500, "short"]})
    assert reply.status_code == 200
    assert [len(t) for t in fake.calls[-1][0]] == [UNIT_LIMITS["max_text_chars"], 5]


def test_labels_openapi_and_health_with_stand_in(client):
    labels = client.get("/labels").get_json()
    assert labels["count"] == 20 and labels["labels"][14] == {"label_id": 14,
                                                              "label": "group.14"}
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {"/predict", "/health", "/labels", "/openapi.json"}
    assert set(doc["paths"]["/predict"]) == {"get", "post"}
    batch = doc["components"]["schemas"]["PredictBatch"]["properties"]
    assert batch["texts"]["maxItems"] == UNIT_LIMITS["max_batch"]
    assert batch["top_k"]["maximum"] == 50
    for path, operations in doc["paths"].items():
        for operation in operations.values():
            assert "200" in operation["responses"], (path, operation)
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "ready"


def test_not_ready_answers_503():
    app = create_app({"params_path": str(ROOT / "params.yaml"), "LOAD_CLASSIFIER": False})
    client = app.test_client()
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["status"] == "loading"
    for reply in (client.post("/predict", json={"text": "a"}), client.get("/labels")):
        assert reply.status_code == 503 and "loading" in reply.get_json()["error"]
    # input is still checked first: a bad request stays a 400
    assert client.post("/predict", json={"text": ""}).status_code == 400


def test_server_fault_is_a_bland_json_500(caplog):
    app = create_app({"params_path": str(ROOT / "params.yaml")},
                     classifier=FakeClassifier(fail=True))
    reply = app.test_client().post("/predict", json={"text": "a"})
    assert reply.status_code == 500
    assert reply.get_json() == {"error": "internal server error (logged); the request was not "
                                         "at fault"}
    assert "simulated fault" in caplog.text  # logged with its traceback, not sent


def test_settings_from_params_and_environment(tmp_path):
    settings = load_settings(env={"NEWSKNN_PARAMS": str(ROOT / "params.yaml")})
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert settings.k == params["knn"]["k"]
    assert settings.ef_search == params["index"]["ef_search"]
    assert settings.max_seq_length == params["model"]["max_seq_length"]
    assert (settings.max_batch, settings.encode_batch, settings.max_top_k,
            settings.max_text_chars, settings.max_body_bytes) == (64, 4, 50, 100_000, 1 << 20)
    assert settings.model_dir == "models/finetuned"
    assert settings.index_dir == "models/index/finetuned"
    assert settings.labels_path == "data/prepared/labels.json"
    custom = load_settings(env={"NEWSKNN_PARAMS": str(ROOT / "params.yaml"),
                                "NEWSKNN_MODEL_DIR": "/m", "NEWSKNN_INDEX_DIR": "/i",
                                "NEWSKNN_LABELS": "/l.json", "NEWSKNN_MAX_BATCH": "8",
                                "NEWSKNN_ENCODE_BATCH": "2"})
    assert (custom.model_dir, custom.index_dir, custom.labels_path, custom.max_batch,
            custom.encode_batch) == ("/m", "/i", "/l.json", 8, 2)
    with pytest.raises(UserError, match="NEWSKNN_ENCODE_BATCH must be >= 1"):
        load_settings(env={"NEWSKNN_PARAMS": str(ROOT / "params.yaml"),
                           "NEWSKNN_ENCODE_BATCH": "0"})
    with pytest.raises(UserError, match="NEWSKNN_MAX_BATCH must be a whole number"):
        load_settings(env={"NEWSKNN_PARAMS": str(ROOT / "params.yaml"),
                           "NEWSKNN_MAX_BATCH": "lots"})
    with pytest.raises(UserError, match="params file not found"):
        load_settings(env={"NEWSKNN_PARAMS": str(tmp_path / "missing.yaml")})
    broken = tmp_path / "params.yaml"
    broken.write_text(yaml.safe_dump(dict(params, knn={"k": 0})))
    with pytest.raises(UserError, match="knn.k must be >= 1"):
        load_settings(env={"NEWSKNN_PARAMS": str(broken)})


def test_app_package_does_not_import_torch():
    """gunicorn's master imports app.* for its start-up check; torch must stay out of it."""
    code = ("import sys, app, app.artifacts, app.config, app.server_errors; "
            "sys.exit('torch' in sys.modules or 'sentence_transformers' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=tool_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


# --- the master's artifact check, on the miniature pipeline's outputs --------------------------

def mini_settings(repo: Path, **changes) -> Settings:
    settings = load_settings(env={"NEWSKNN_PARAMS": str(repo / "params.yaml")})
    paths = {"model_dir": str(repo / "models/finetuned"),
             "index_dir": str(repo / "models/index/finetuned"),
             "labels_path": str(repo / "data/prepared/labels.json")}
    values = settings.as_dict()
    values.update(paths)
    values.update(changes)
    return Settings(**values)


def test_artifact_check(mini_repo, tmp_path):
    summary = check_artifacts(mini_settings(mini_repo))
    assert summary["dimension"] == declared_dimension(mini_repo / "models/finetuned") == 384
    assert summary["labels"] == 20

    with pytest.raises(UserError, match=r"built by another model.*dvc repro"):
        check_artifacts(mini_settings(mini_repo,
                                      index_dir=str(mini_repo / "models/index/pretrained")))
    # a model making another dimension: its configs say so, no torch needed to find out
    other = tmp_path / "other-model"
    shutil.copytree(mini_repo / "models/finetuned", other,
                    ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    pooling = json.loads((other / "1_Pooling/config.json").read_text())
    key = "embedding_dimension" if "embedding_dimension" in pooling else \
        "word_embedding_dimension"
    (other / "1_Pooling/config.json").write_text(json.dumps(dict(pooling, **{key: 768})))
    with pytest.raises(UserError, match=r"holds 384-dimensional vectors but the model .* makes "
                                        r"768; rebuild with `dvc repro`"):
        check_artifacts(mini_settings(mini_repo, model_dir=str(other)))
    bad_labels = tmp_path / "labels.json"
    bad_labels.write_text('["only", "two"]')
    with pytest.raises(UserError, match="names only 2 labels"):
        check_artifacts(mini_settings(mini_repo, labels_path=str(bad_labels)))


# --- a real gunicorn over the miniature pipeline's artifacts --------------------------------------

SERVED_SEQ_LENGTH = 256  # a params copy with the full model window, so a big batch takes seconds


@pytest.fixture(scope="module")
def served_params(mini_repo, tmp_path_factory) -> Path:
    params = yaml.safe_load((mini_repo / "params.yaml").read_text())
    params["model"]["max_seq_length"] = SERVED_SEQ_LENGTH
    path = tmp_path_factory.mktemp("served") / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def server(mini_repo, served_params, tmp_path_factory):
    """One worker with four threads: one thread can be busy while the others answer."""
    srv = start_server(mini_repo, tmp_path_factory.mktemp("server-logs"), {
        "NEWSKNN_PARAMS": str(served_params), "NEWSKNN_WORKERS": "1", "NEWSKNN_THREADS": "4"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def in_process(mini_repo, served_params):
    """The classifier the evaluate stage would use, loaded in this process with the same params,
    cutting batches into forward passes like the server (bf16 results depend a little on padding).
    """
    from newsknn.classifier import KNNClassifier

    params = yaml.safe_load(served_params.read_text())
    classifier = KNNClassifier.from_artifacts(
        mini_repo / "models/finetuned", mini_repo / "models/index/finetuned",
        mini_repo / "data/prepared/labels.json", k=params["knn"]["k"],
        weighting=params["knn"]["weighting"], ef_search=params["index"]["ef_search"],
        precision=params["model"]["precision"], max_seq_length=params["model"]["max_seq_length"])
    classifier.batch_size = load_settings(env={"NEWSKNN_PARAMS": str(served_params)}).encode_batch
    return classifier


@pytest.fixture(scope="module")
def sample_texts(mini_repo) -> list[str]:
    """About ten test posts, spread over the groups."""
    docs = [doc for doc in read_jsonl(mini_repo / "data/prepared/test.jsonl") if not doc.is_empty]
    return [doc.text for doc in docs[::max(1, len(docs) // 10)][:10]]


def test_routes_over_http(server, mini_repo, served_params):
    meta = json.loads((mini_repo / "models/index/finetuned/meta.json").read_text())
    health = server.get("/health")
    assert health.status == 200
    info = health.json
    assert info["status"] == "ready"
    assert info["index"]["count"] == meta["count"]
    assert info["index"]["dimension"] == meta["dimension"]
    assert info["index"]["model_sha256"] == meta["model_sha256"][:12]
    assert info["index"]["embeddings_sha256"] == meta["embeddings_sha256"][:12]
    assert info["model"]["sha256"] == meta["model_sha256"][:12]
    assert info["model"]["max_seq_length"] == SERVED_SEQ_LENGTH
    assert info["knn"]["k"] == yaml.safe_load(served_params.read_text())["knn"]["k"]
    assert info["limits"]["encode_batch"] == Settings.encode_batch

    labels = json.loads((mini_repo / "data/prepared/labels.json").read_text())
    reply = server.get("/labels")
    assert reply.status == 200
    assert [item["label"] for item in reply.json["labels"]] == labels

    doc = server.get("/openapi.json")
    assert doc.status == 200 and "/predict" in doc.json["paths"]

    k = info["knn"]["k"]
    one = server.post_json("/predict", {"text": "The shuttle reached orbit after the launch."})
    assert one.status == 200 and one.headers["content-type"] == JSON
    body = one.json
    assert body["label"] in labels and labels[body["label_id"]] == body["label"]
    assert 0 < body["score"] <= 1 and len(body["neighbors"]) == k
    assert set(body["neighbors"][0]) == {"doc_id", "label", "similarity"}
    sims = [n["similarity"] for n in body["neighbors"]]
    assert sims == sorted(sims, reverse=True)

    got = server.get("/predict?query=engine%20oil%20and%20tires&top_k=5")
    assert got.status == 200 and len(got.json["neighbors"]) == 5
    batch = server.post_json("/predict", {"texts": ["hockey playoffs", "encryption keys"],
                                          "top_k": 2})
    assert batch.status == 200
    assert [len(p["neighbors"]) for p in batch.json["predictions"]] == [2, 2]


SERVER_CASES = bad_requests(64, 1 << 20) + [
    ("very-deeply-nested", "POST /predict", "[" * 500_000, JSON, 400, "not valid JSON"),
    ("url-too-long", "GET /predict?query=" + "a" * 9000, None, None, 414, "POST"),
]


@pytest.mark.parametrize("case", SERVER_CASES, ids=[case[0] for case in SERVER_CASES])
def test_bad_input_over_http(server, case):
    _, route, body, content_type, status, needle = case
    method, path = route.split(" ", 1)
    reply = server.request(method, path, body, {"Content-Type": content_type}
                           if content_type else {})
    assert reply.status == status, reply.body[:300]
    assert reply.headers["content-type"] == JSON
    assert needle in reply.json["error"]
    assert "Traceback" not in reply.body.decode("utf-8", "replace")


def raw_exchange(port: int, data: bytes, timeout: float = 30) -> bytes:
    """Send raw bytes, return what the server answers (up to its first 64 KiB)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received or len(received) < 20:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, rest = received.partition(b"\r\n\r\n")
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length")), b"0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
        return head + b"\r\n\r\n" + rest


def test_declared_oversize_and_broken_chunking_over_http(server):
    # A body announced as 5 MB is refused from its Content-Length, before it is sent.
    answer = raw_exchange(server.port, b"POST /predict HTTP/1.1\r\nHost: t\r\n"
                          b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n"
                          b'{"text": "aaaa')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"error"' in answer
    # Broken chunked encoding: the server cannot read the body -> 400, not 500.
    answer = raw_exchange(server.port, b"POST /predict HTTP/1.1\r\nHost: t\r\n"
                          b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"zz\r\nabc\r\n0\r\n\r\n")
    assert answer.split(b"\r\n")[0].split(b" ")[1] == b"400", answer[:200]
    assert b'"error"' in answer and b"Traceback" not in answer


def same_prediction(served: dict, local: dict) -> None:
    assert served["label"] == local["label"] and served["label_id"] == local["label_id"]
    assert [n["doc_id"] for n in served["neighbors"]] == [n["doc_id"] for n in local["neighbors"]]
    assert served["score"] == pytest.approx(local["score"], abs=2e-3)
    for a, b in zip(served["neighbors"], local["neighbors"]):
        assert a["similarity"] == pytest.approx(b["similarity"], abs=2e-3)


def test_served_predictions_equal_in_process_ones(server, in_process, sample_texts):
    assert len(sample_texts) >= 8
    local = [p.to_dict() for p in in_process.predict(sample_texts)]
    batch = server.post_json("/predict", {"texts": sample_texts})
    assert batch.status == 200
    for served, expected in zip(batch.json["predictions"], local):
        same_prediction(served, expected)
    for text in sample_texts[:4]:
        expected = in_process.predict([text])[0].to_dict()
        reply = server.post_json("/predict", {"text": text})
        assert reply.status == 200
        same_prediction(reply.json, expected)


def test_concurrent_requests_all_answered(server, in_process):
    """32 client threads, 200 requests (single, batch, GET and health): all 200, none lost."""
    texts = ["the space shuttle launch", "my car needs new brakes", "god and religion",
             "windows drivers crash", "the goalie saved the puck", "gun control law",
             "selling my old bike", "encryption and the clipper chip"]
    expected = {t: p.label for t, p in zip(texts, in_process.predict(texts))}

    def one(i: int):
        text = texts[i % len(texts)]
        kind = i % 4
        if kind == 0:
            reply = server.post_json("/predict", {"text": text})
            return reply.status, [reply.json.get("label")], [expected[text]]
        if kind == 1:
            pair = [text, texts[(i + 1) % len(texts)]]
            reply = server.post_json("/predict", {"texts": pair})
            return reply.status, [p["label"] for p in reply.json["predictions"]], \
                [expected[t] for t in pair]
        if kind == 2:
            reply = server.get("/predict?query=" + text.replace(" ", "%20"))
            return reply.status, [reply.json.get("label")], [expected[text]]
        reply = server.get("/health")
        return reply.status, [reply.json["status"]], ["ready"]

    total = 200
    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        futures = [pool.submit(one, i) for i in range(total)]
        done, not_done = concurrent.futures.wait(futures, timeout=240)
        for future in not_done:
            future.cancel()
    assert not not_done, f"{len(not_done)} requests unanswered after 240 s\n{server.logs()}"
    results = [future.result() for future in done]
    assert len(results) == total
    assert [status for status, _, _ in results] == [200] * total
    for _, got, want in results:
        assert got == want


def test_health_answers_during_a_long_batch(server, sample_texts):
    """While one thread encodes a full batch, /health (another thread) still answers at once."""
    words = " ".join(sample_texts * 20).split()
    texts = [" ".join(words[i * 37:i * 37 + 400]) for i in range(32)]  # >= 256 tokens each
    outcome: dict = {}

    def long_batch() -> None:
        started = time.monotonic()
        outcome["reply"] = server.post_json("/predict", {"texts": texts}, timeout=180)
        outcome["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=long_batch)
    worker.start()
    checks = []
    deadline = time.monotonic() + 180
    while worker.is_alive() and time.monotonic() < deadline:
        started = time.monotonic()
        reply = server.get("/health", timeout=30)
        checks.append((reply.status, time.monotonic() - started, worker.is_alive()))
        time.sleep(0.05)
    worker.join(timeout=180)
    assert outcome["reply"].status == 200
    assert len(outcome["reply"].json["predictions"]) == len(texts)
    during = [(status, seconds) for status, seconds, busy in checks if busy]
    assert during, f"the batch ({outcome['seconds']:.2f} s) ended before any health check"
    assert all(status == 200 for status, _ in during)
    assert max(seconds for _, seconds in during) < 2.0, during


def test_master_never_imports_torch(server):
    """By default (no NEWSKNN_PRELOAD) the model lives in the worker; the master has no libtorch
    mapped."""
    workers = children(server.process.pid)
    assert len(workers) == 1
    assert not maps_torch(server.process.pid)
    assert maps_torch(workers[0])


@pytest.mark.parametrize("workers,torch_threads", [("1", "2"), ("2", "1")])
def test_preloaded_server_answers_without_hanging(mini_repo, served_params, in_process,
                                                  sample_texts, tmp_path, workers, torch_threads):
    """NEWSKNN_PRELOAD=1: the master holds the model, the forked workers answer single texts and
    batches concurrently (their torch thread pools start after the fork, the pytorch#49555
    risk), within bounded time, and agree with the in-process classifier."""
    srv = start_server(mini_repo, tmp_path, {
        "NEWSKNN_PARAMS": str(served_params), "NEWSKNN_PRELOAD": "1",
        "NEWSKNN_WORKERS": workers, "NEWSKNN_TORCH_THREADS": torch_threads})
    try:
        srv.wait_ready()
        assert maps_torch(srv.process.pid)  # the model really was loaded before the fork
        assert len(children(srv.process.pid)) == int(workers)
        bodies = [{"texts": sample_texts}] * 4 + [{"text": t} for t in sample_texts] * 2
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda body: srv.post_json("/predict", body, timeout=60),
                                    bodies, timeout=180))
        assert [reply.status for reply in replies] == [200] * len(bodies), srv.logs()
        local = [p.to_dict() for p in in_process.predict(sample_texts)]
        for served, expected in zip(replies[0].json["predictions"], local):
            same_prediction(served, expected)
    finally:
        srv.stop()


# --- start-up with unusable artifacts: one line, non-zero, fast -------------------------------

STARTUP_FAILURES = [
    ("missing-model", {"NEWSKNN_MODEL_DIR": "models/nothing-here"},
     "model not found: models/nothing-here"),
    ("missing-index", {"NEWSKNN_INDEX_DIR": "models/index/nothing-here"},
     "index not found: models/index/nothing-here"),
    ("index-of-another-model", {"NEWSKNN_INDEX_DIR": "models/index/pretrained"},
     "index at models/index/pretrained was built by another model than models/finetuned"),
    ("missing-labels", {"NEWSKNN_LABELS": "data/prepared/none.json"},
     "labels not found: data/prepared/none.json"),
    ("bad-setting", {"NEWSKNN_MAX_BATCH": "many"}, "NEWSKNN_MAX_BATCH must be a whole number"),
    ("bad-preload-switch", {"NEWSKNN_PRELOAD": "maybe"}, "NEWSKNN_PRELOAD must be 1 or 0"),
    ("bad-workers", {"NEWSKNN_WORKERS": "two"}, "NEWSKNN_WORKERS must be a whole number"),
    ("no-threads", {"NEWSKNN_THREADS": "0"}, "NEWSKNN_THREADS must be >= 1; got 0"),
    ("preloaded-missing-model", {"NEWSKNN_PRELOAD": "1", "NEWSKNN_MODEL_DIR": "models/nothing-here"},
     "model not found: models/nothing-here"),
]


@pytest.mark.parametrize("case", STARTUP_FAILURES, ids=[case[0] for case in STARTUP_FAILURES])
def test_unusable_artifacts_stop_startup_with_one_line(mini_repo, case):
    _, env, message = case
    started = time.monotonic()
    result = run_until_exit(mini_repo, env, timeout=60)
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert elapsed < 60
    errors = [line for line in output.splitlines() if "error:" in line]
    assert len(errors) == 1, output
    assert errors[0].startswith("error: ") and message in errors[0], output
    if "_DIR" in str(env) or "_LABELS" in str(env):  # an artifact: the fix is to build it
        assert "dvc repro" in errors[0]
    assert "Traceback" not in output
    assert "Booting worker" not in output  # stopped in the master, before any fork


def test_worker_that_cannot_load_stops_the_server_not_a_crash_loop(mini_repo, tmp_path):
    """A failure only the worker can see (here: an unreadable model config, with an index that
    records no model hash) ends the whole server with the one-line reason, instead of workers
    being respawned forever."""
    model = tmp_path / "model"
    shutil.copytree(mini_repo / "models/finetuned", model)
    (model / "config.json").write_text('{"broken": ')
    index = tmp_path / "index"
    shutil.copytree(mini_repo / "models/index/finetuned", index)
    meta = json.loads((index / "meta.json").read_text())
    meta.pop("model_sha256", None)
    (index / "meta.json").write_text(json.dumps(meta))
    started = time.monotonic()
    result = run_until_exit(mini_repo, {"NEWSKNN_MODEL_DIR": str(model),
                                        "NEWSKNN_INDEX_DIR": str(index),
                                        "NEWSKNN_WORKERS": "1"}, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 4, output  # gunicorn: "App failed to load."
    assert time.monotonic() - started < 120
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"cannot load model '{model}'" in errors[0], output
    assert output.count("Booting worker") == 1  # no respawn
    assert "Traceback" not in output
