"""Serving: /predict latency and throughput under gunicorn against the bare in-process classifier.

Why: the service wraps ``KNNClassifier.predict`` (encode + index query + vote) in HTTP, Flask,
validation and JSON. This measures what that wrapping costs and what batching buys, in one run:

- bare: ``KNNClassifier.from_artifacts(...).predict`` in this process, with the same params
  (knn, index.ef_search, model.precision/max_seq_length) and the same torch thread count as one
  gunicorn worker;
- served: ``gunicorn --config gunicorn.conf.py app.wsgi:app`` (the project's config; workers and
  torch threads pinned to the values that config would choose, so bare and served match),
  started and stopped here, bound to 127.0.0.1 only.

Texts are "typical" test documents (closest to the median length). Sequential latency gives the
overhead: each text (and each batch) goes to the bare path and over HTTP back to back, the order
alternating, ``--rounds`` times over the texts, so this machine's drift (+-20% over minutes) hits
both paths alike; p50 of each path, and the median of the paired ratios. A bounded thread-pool
client (http.client, keep-alive) then gives requests/s under load for single texts and for
batches of 32. Both paths cut a batch into forward passes of ``NEWSKNN_ENCODE_BATCH`` texts.

Targets: p50 overhead of HTTP + Flask (+ JSON shaping) <= 15% of the bare time for a typical
document; batches of 32 >= 2x the single-request throughput per document.

    .venv/bin/python bench/serve_bench.py [--quick] [--requests 200] [--concurrency 4]
"""

from __future__ import annotations

import http.client
import os
import statistics
import time
from pathlib import Path

import benchlib
from newsknn.errors import exit_on_user_error
import serving

NAME = "serve"


def typical_texts(prepared: Path, count: int) -> tuple[list[str], int]:
    """The ``count`` non-empty test documents whose length is closest to the median; median."""
    from newsknn.data import read_jsonl

    docs = [d.text for d in read_jsonl(prepared / "test.jsonl") if not d.is_empty]
    median = int(statistics.median(len(t) for t in docs))
    return sorted(docs, key=lambda t: abs(len(t) - median))[:count], median


@exit_on_user_error
def main() -> None:
    started = time.perf_counter()
    parser = benchlib.parser(__doc__)
    benchlib.add_serving_args(parser)
    parser.add_argument("--torch-threads", type=int, default=None, help="default CPUs / workers")
    parser.add_argument("--docs", type=int, default=None, help="typical texts (64; quick 8)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=None,
                        help="single-text requests under load (200; quick 16)")
    parser.add_argument("--batch-requests", type=int, default=None,
                        help="batch requests under load (24; quick 4)")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="client threads (2 x workers)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds per load phase (180; quick 30)")
    parser.add_argument("--startup-timeout", type=float, default=180)
    parser.add_argument("--encode-batch", type=int, default=None,
                        help="texts per forward pass in both paths (default: the server's "
                             "setting, NEWSKNN_ENCODE_BATCH)")
    args = parser.parse_args()
    quick = args.quick
    n_docs = args.docs or (8 if quick else 64)
    n_requests = args.requests or (16 if quick else 200)
    n_batches = args.batch_requests or (4 if quick else 24)
    time_limit = args.time_limit or (30 if quick else 180)
    workers = args.workers or min(2, benchlib.cpus())
    torch_threads = args.torch_threads or max(1, benchlib.cpus() // workers)
    concurrency = args.concurrency or 2 * workers
    labels = args.labels or str(Path(args.prepared, "labels.json"))

    from app.config import load_settings
    from newsknn.params import load_params, section

    encode_batch = args.encode_batch or load_settings(
        env={**os.environ, "NEWSKNN_PARAMS": args.params}).encode_batch
    params = load_params(args.params)
    knn, index, model = section(params, "knn"), section(params, "index"), section(params, "model")
    texts, median = typical_texts(Path(args.prepared), n_docs)
    batches = [[texts[(i * args.batch + j) % len(texts)] for j in range(args.batch)]
               for i in range(max(n_batches, 1))]

    server = serving.Server(args.conf or serving.default_conf(), env={
        "NEWSKNN_WORKERS": str(workers), "NEWSKNN_TORCH_THREADS": str(torch_threads),
        "NEWSKNN_PARAMS": args.params, "NEWSKNN_MODEL_DIR": args.model,
        "NEWSKNN_INDEX_DIR": args.index, "NEWSKNN_LABELS": labels,
        "NEWSKNN_ENCODE_BATCH": str(encode_batch), "NEWSKNN_LOG_LEVEL": "warning"},
        extra_args=["--access-logfile", "/dev/null"])
    server.start()  # loads in its workers while this process loads the bare classifier
    try:
        import torch
        from newsknn.classifier import KNNClassifier

        benchlib.limit_threads(torch_threads)
        bare_classifier = KNNClassifier.from_artifacts(
            args.model, args.index, labels, k=int(knn["k"]),
            weighting=knn.get("weighting", "similarity"), ef_search=int(index["ef_search"]),
            precision=model.get("precision", "auto"), max_seq_length=int(model["max_seq_length"]))
        ready_s = server.wait_ready(args.startup_timeout)
        port = server.port

        # warm-up: every worker and the bare model see single texts and a batch
        bare_classifier.batch_size = encode_batch  # as the workers cut batches
        bare_classifier.predict(texts[:2])
        bare_classifier.predict(batches[0])
        serving.load(port, [{"text": t} for t in texts[:2 * workers]] +
                     [{"texts": batches[0]}] * workers, workers, time_limit)

        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=args.startup_timeout)

        def bare(texts_: list[str]) -> float:
            begun = time.perf_counter()
            bare_classifier.predict(texts_)
            return time.perf_counter() - begun

        def served(texts_: list[str]) -> float:
            body = {"text": texts_[0]} if len(texts_) == 1 else {"texts": texts_}
            begun = time.perf_counter()
            status, _ = serving.request(port, "POST", "/predict", body, conn=conn)
            seconds = time.perf_counter() - begun
            if status != 200:
                raise RuntimeError(f"/predict answered {status} during the sequential phase")
            return seconds

        # Paired, sequential: each text (or batch) goes to both paths back to back, the order
        # alternating, so the machine's drift (+-20% here over minutes) hits both alike.
        sequential = {}
        for kind, items in (("single", [[t] for t in texts] * args.rounds),
                            ("batch", batches[:max(2, n_batches // 4)] * args.rounds)):
            timings = {"bare": [], "http": []}
            for i, item in enumerate(items):
                for path in (("bare", "http") if i % 2 == 0 else ("http", "bare")):
                    timings[path].append((bare if path == "bare" else served)(item))
            for path, latencies in timings.items():
                sequential[f"{path}_{kind}"] = serving.summary(latencies)
            sequential[f"paired_overhead_{kind}_percent"] = round(100 * (statistics.median(
                h / b for h, b in zip(timings["http"], timings["bare"])) - 1), 2)
        conn.close()
        paths = {name: sequential[name] for name in
                 ("bare_single", "http_single", "bare_batch", "http_batch")}

        under_load = {}
        for name, bodies, per in (
                ("single", [{"text": texts[i % len(texts)]} for i in range(n_requests)], 1),
                ("batch", [{"texts": b} for b in batches[:n_batches]], args.batch)):
            result = serving.load(port, bodies, concurrency, time_limit)
            under_load[name] = {**serving.summary(result["latencies"], result["wall"], per),
                                "errors": len(result["errors"]), "timed_out": result["timed_out"],
                                "concurrency": concurrency,
                                "first_errors": result["errors"][:3]}
    except BaseException:
        print("gunicorn log (tail):\n" + server.log_text()[-2000:])
        raise
    finally:
        server.stop()
        server.remove_log()

    overhead = 100.0 * (paths["http_single"]["p50_ms"] / paths["bare_single"]["p50_ms"] - 1)
    batch_overhead = 100.0 * (paths["http_batch"]["p50_ms"] / paths["bare_batch"]["p50_ms"] - 1)
    batch_gain = under_load["batch"]["docs_per_second"] / under_load["single"]["docs_per_second"]
    bare_batch_gain = (paths["bare_single"]["p50_ms"] * args.batch) / paths["bare_batch"]["p50_ms"]
    print(f"\nserve: {len(texts)} typical test docs (median {median} chars), batches of "
          f"{args.batch} in forward passes of {encode_batch}; gunicorn {workers} worker(s) x "
          f"{torch_threads} torch thread(s), ready in {ready_s:.1f} s; bare classifier on "
          f"{torch.get_num_threads()} torch thread(s); {args.rounds} rounds of paired requests")
    print(benchlib.table([{"path": name, **facts} for name, facts in paths.items()],
                         ["path", "requests", "p50_ms", "p95_ms"]))
    print(f"\nunder load ({concurrency} client threads, 127.0.0.1):")
    print(benchlib.table([{"request": name, **facts} for name, facts in under_load.items()],
                         ["request", "requests", "errors", "p50_ms", "p95_ms", "rps",
                          "docs_per_second"]))
    checks = [benchlib.ratio_line("serve p50 overhead HTTP+Flask over bare, single text",
                                  overhead, 15.0, at_least=False, unit="%"),
              benchlib.ratio_line(f"serve p50 overhead HTTP+Flask over bare, batch of {args.batch}",
                                  batch_overhead, unit="%"),
              benchlib.ratio_line("serve paired median overhead, single text",
                                  sequential["paired_overhead_single_percent"], unit="%"),
              benchlib.ratio_line(f"serve docs/s batches of {args.batch} / single requests",
                                  batch_gain, 2.0),
              benchlib.ratio_line(f"bare docs/s batch of {args.batch} / single texts (no HTTP: "
                                  "what batching buys the model itself)", bare_batch_gain)]
    benchlib.print_ratios([text for text, _ in checks])
    if any(facts.get("errors") for facts in [*paths.values(), *under_load.values()]):
        print("warning: some requests failed; see the JSON (first_errors)")
    benchlib.write_result(NAME, args, {
        "docs": len(texts), "median_chars": median, "workers": workers,
        "torch_threads": torch_threads, "ready_seconds": round(ready_s, 1),
        "encode_batch": encode_batch, "sequential": sequential, "under_load": under_load,
        "overhead_percent": round(overhead, 2), "batch_overhead_percent": round(batch_overhead, 2),
        "batch_docs_per_second_gain": round(batch_gain, 3),
    }, [facts for _, facts in checks], started)


if __name__ == "__main__":
    main()
