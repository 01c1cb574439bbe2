"""Memory: resident memory of the gunicorn service per worker, without and with ``preload_app``.

Why: gunicorn.conf.py keeps ``preload_app`` off by default so each worker loads its own model after
the fork, because PyTorch's intra-op thread pool can deadlock in a child forked after the parent
used it (pytorch#49555, gunicorn#2478). Preloading (``NEWSKNN_PRELOAD=1``) lets the workers share
the model's pages copy-on-write. This measures what the default costs: the project's config as
is, then the same with ``NEWSKNN_PRELOAD=1``, each warmed with a few /predict requests per worker, then RSS
(/proc/<pid>/status) of the master and each worker, summed. RSS counts shared pages in every
process, so PSS (shared pages split between their users, /proc/<pid>/smaps_rollup) is reported
too: it is the sum that adds up. A preload server that does not become ready, or whose workers do
not answer within the timeouts, is reported as hung (the pytorch#49555 failure), not waited on.

    .venv/bin/python bench/memory_bench.py [--quick] [--workers 2] [--warm 3]
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import benchlib
from newsknn.errors import exit_on_user_error
import serving

NAME = "memory"
PID_LOG_FORMAT = "<pid> %(p)s %(s)s"  # %(p)s is "<pid>" of the worker that answered


def warm(server: serving.Server, bodies: list[dict], workers: int, per_worker: int,
         time_limit: float) -> dict:
    """Send bursts of concurrent requests until every worker has answered ``per_worker`` of them
    (read from the access log) or ``time_limit`` passes; answers per worker pid."""
    deadline = time.monotonic() + time_limit
    served: Counter = Counter()
    errors: list[str] = []
    while time.monotonic() < deadline:
        result = serving.load(server.port, bodies[:2 * workers], 2 * workers,
                              max(1.0, deadline - time.monotonic()),
                              timeout=max(1.0, min(60.0, deadline - time.monotonic())))
        errors += result["errors"]
        served = Counter(int(pid) for pid in re.findall(r"<pid> <(\d+)> 200", server.log_text()))
        _, worker_pids = server.pids()
        if worker_pids and all(served[pid] >= per_worker for pid in worker_pids):
            break
        if result["timed_out"] or (errors and not result["latencies"]):
            break
    return {"per_worker": {str(pid): served[pid] for pid in server.pids()[1]},
            "errors": len(errors), "timeouts": sum("timed out" in e or "Timeout" in e
                                                   for e in errors), "first_errors": errors[:3]}


def measure(mode: str, mode_env: dict[str, str], args, env: dict, bodies: list[dict]) -> dict:
    """Start the server in one mode, warm it, read its memory, stop it."""
    facts: dict = {"mode": mode, "env": mode_env}
    server = serving.Server(args.conf or serving.default_conf(), env={**env, **mode_env},
                            extra_args=["--access-logformat", PID_LOG_FORMAT])
    server.start()
    try:
        try:
            facts["ready_seconds"] = round(server.wait_ready(args.startup_timeout), 1)
        except (TimeoutError, RuntimeError) as exc:
            facts["status"] = "hung: not ready" if isinstance(exc, TimeoutError) else "failed"
            facts["error"] = str(exc)[-600:]
            return facts
        warmed = warm(server, bodies, args.workers, args.warm, args.warm_timeout)
        facts["warm"] = warmed
        answered = list(warmed["per_worker"].values())
        if not answered or min(answered) == 0:
            hung = warmed["timeouts"] or not warmed["errors"]
            facts["status"] = "hung: a worker never answered /predict" if hung \
                else f"failed: {warmed['errors']} request error(s)"
        elif min(answered) < args.warm:
            facts["status"] = "ok (some workers warmed with fewer requests)"
        else:
            facts["status"] = "ok"
        master, workers = server.pids()
        facts["master"] = serving.memory(master)
        facts["workers"] = [serving.memory(pid) for pid in workers]
        every = [facts["master"], *facts["workers"]]
        for key in ("rss_mb", "pss_mb"):
            if all(entry.get(key) is not None for entry in every):
                facts[f"total_{key}"] = round(sum(entry[key] for entry in every), 1)
                facts[f"per_worker_{key}"] = round(
                    sum(entry[key] for entry in facts["workers"]) / max(1, len(workers)), 1)
        return facts
    finally:
        server.stop()
        facts["log_tail"] = server.log_text()[-1500:] if not str(
            facts.get("status", "")).startswith("ok") else None
        server.remove_log()


@exit_on_user_error
def main() -> None:
    started = time.perf_counter()
    parser = benchlib.parser(__doc__)
    benchlib.add_serving_args(parser)
    parser.add_argument("--warm", type=int, default=None,
                        help="/predict answers per worker before measuring (3; quick 1)")
    parser.add_argument("--warm-timeout", type=float, default=None,
                        help="seconds to warm all workers; longer counts as hung (120; quick 60)")
    parser.add_argument("--startup-timeout", type=float, default=180)
    args = parser.parse_args()
    args.workers = args.workers or min(2, benchlib.cpus())
    args.warm = args.warm or (1 if args.quick else 3)
    args.warm_timeout = args.warm_timeout or (60 if args.quick else 120)

    from newsknn.data import read_jsonl

    texts = [d.text for d in read_jsonl(Path(args.prepared, "test.jsonl"))[:64] if not d.is_empty]
    bodies = [{"text": texts[i % len(texts)]} for i in range(64)]
    env = {"NEWSKNN_WORKERS": str(args.workers), "NEWSKNN_PARAMS": args.params,
           "NEWSKNN_MODEL_DIR": args.model, "NEWSKNN_INDEX_DIR": args.index,
           "NEWSKNN_LABELS": args.labels or str(Path(args.prepared, "labels.json")),
           "NEWSKNN_LOG_LEVEL": "warning"}
    results = [measure("no-preload (default)", {"NEWSKNN_PRELOAD": "0"}, args, env, bodies),
               measure("preload (NEWSKNN_PRELOAD=1)", {"NEWSKNN_PRELOAD": "1"}, args, env,
                       bodies)]

    print(f"\nmemory: {args.workers} worker(s), each warmed with >= {args.warm} /predict "
          "answers; MB (RSS counts shared pages in every process; PSS splits them)")
    rows = [{"mode": r["mode"], "status": r.get("status"), "ready_s": r.get("ready_seconds"),
             "master_rss": r.get("master", {}).get("rss_mb"),
             "per_worker_rss": r.get("per_worker_rss_mb"), "total_rss": r.get("total_rss_mb"),
             "per_worker_pss": r.get("per_worker_pss_mb"), "total_pss": r.get("total_pss_mb")}
            for r in results]
    print(benchlib.table(rows, list(rows[0])))
    base, pre = results
    checks = []
    for key, label in (("total_rss_mb", "RSS"), ("total_pss_mb", "PSS")):
        value = pre[key] / base[key] if pre.get(key) and base.get(key) else None
        checks.append(benchlib.ratio_line(f"memory total {label} preload/no-preload", value))
    if not str(pre.get("status", "")).startswith("ok"):
        print(f"note: preload {pre.get('status')} (cf. pytorch#49555); see the JSON log_tail")
    benchlib.print_ratios([text for text, _ in checks])
    benchlib.write_result(NAME, args, {"workers": args.workers, "modes": results},
                          [facts for _, facts in checks], started)


if __name__ == "__main__":
    main()
