"""Small pure helpers shared by the benchmarks: arguments, machine facts, timing, ratios, results.

Why one module: every benchmark must report the same machine facts, label its ratio lines the same
way and write its JSON where readers expect it (``metrics/bench/<name>.json``; ``--quick`` smoke runs
go to ``metrics/bench/quick/`` so they never overwrite real results). Paths are relative to the
current directory, like the pipeline's stages, so a benchmark can be pointed at another checkout's
artifacts by running it from there.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
if str(PROJECT_ROOT) not in sys.path:  # `python bench/x.py` from anywhere finds newsknn and app
    sys.path.insert(1, str(PROJECT_ROOT))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # no "Loading weights" bars per run
LOAD_AT_START = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares."""
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for a smoke run; results go to metrics/bench/quick/")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=None,
                        help="result JSON (default metrics/bench[/quick]/<name>.json)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/BLAS threads in this process (default: library defaults)")
    return parser


def add_serving_args(parser: argparse.ArgumentParser) -> None:
    """The artifact and gunicorn options of the benchmarks that start the service."""
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--model", default="models/finetuned")
    parser.add_argument("--index", default="models/index/finetuned")
    parser.add_argument("--labels", default=None, help="default <prepared>/labels.json")
    parser.add_argument("--conf", default=None, help="gunicorn config (default gunicorn.conf.py)")
    parser.add_argument("--workers", type=int, default=None, help="default min(2, CPUs)")


def limit_threads(threads: int | None) -> None:
    """Cap the BLAS/OpenMP pools and, if torch is imported, its intra-op threads (None: defaults).

    Import torch (and faiss) before calling, so their pools are seen and capped too.
    """
    if not threads:
        return
    from threadpoolctl import threadpool_limits

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    threadpool_limits(threads)


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of a process, from /proc/<pid>/status (VmRSS); None if unreadable."""
    return proc_status_kb(pid, "VmRSS")


def proc_status_kb(pid: int | str, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpus() -> int:
    """CPUs this process may use (respects taskset/cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine_info() -> dict:
    """Facts that make a timing interpretable: CPU, cores, load, library versions, date."""
    info: dict = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  "hostname": platform.node(), "platform": platform.platform(),
                  "python": platform.python_version(), "cores": os.cpu_count(),
                  "cores_usable": cpus()}
    try:
        text = Path("/proc/cpuinfo").read_text()
        info["cpu_model"] = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                                  if line.startswith("model name")), None)
        info["cpu_flags_bf16"] = sorted({flag for flag in ("avx512_bf16", "amx_bf16")
                                         if flag in text})
    except OSError:
        info["cpu_model"] = None
    try:
        info["load_average_at_start"] = LOAD_AT_START  # 1/5/15-min; > cores means contention
        info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    from importlib import metadata

    versions = {}
    for package in ("torch", "numpy", "sentence-transformers", "transformers", "hnswlib",
                    "faiss-cpu", "gunicorn", "flask"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    info["versions"] = versions
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    try:
        info["git_commit"] = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def ratio_line(label: str, value: float | None, target: float | None = None,
               at_least: bool = True, unit: str = "x") -> tuple[str, dict]:
    """A clearly labelled ratio line for the console, and the same facts for the JSON."""
    if value is None:
        return f"{label}: n/a", {"label": label, "value": None, "target": target, "met": None}
    text = f"{label}: {value:.2f}{unit}" if unit else f"{label}: {value:.5f}"
    met = None
    if target is not None:
        met = bool(value >= target) if at_least else bool(value <= target)
        text += f" (target {'>=' if at_least else '<='} {target:g}{unit}) " + \
            ("ok" if met else "BELOW TARGET" if at_least else "ABOVE TARGET")
    return text, {"label": label, "value": round(float(value), 6), "target": target,
                  "at_least": at_least, "met": met}


def table(rows: Sequence[dict], columns: Sequence[str]) -> str:
    """A plain fixed-width text table of ``rows`` (dicts) over ``columns``."""
    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.0f}" if abs(value) >= 100 else f"{value:.4g}"
        return "-" if value is None else str(value)

    cells = [[cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(r[i]) for r in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def interleaved(runners: dict[str, Callable[[], dict]], rounds: int) -> dict[str, list[dict]]:
    """Run each runner ``rounds`` times, alternating the order (A B, B A, ...) so drifting load on
    a noisy machine hits every contender alike; return each runner's list of results."""
    names, results = list(runners), {name: [] for name in runners}
    for round_ in range(rounds):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            results[name].append(runners[name]())
    return results


def best(results: Iterable[dict], key: str, highest: bool = True) -> dict:
    """The result with the best ``key`` (the least disturbed run)."""
    return (max if highest else min)(results, key=lambda r: r[key])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of ``values``, linear interpolation; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def result_path(name: str, args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out)
    return Path("metrics/bench/quick" if args.quick else "metrics/bench", f"{name}.json")


def write_result(name: str, args: argparse.Namespace, payload: dict, ratios: Sequence[dict],
                 started: float) -> Path:
    """Write ``{benchmark, quick, args, machine, ratios, ...payload}`` and print where it went."""
    path = result_path(name, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    if args.quick and path.parent.name == "quick" and not (path.parent / ".gitignore").exists():
        (path.parent / ".gitignore").write_text("# smoke-run results of bench/*.py --quick\n*\n")
    document = {"benchmark": name, "quick": bool(args.quick),
                "args": {key: value for key, value in vars(args).items()},
                "machine": machine_info(), "ratios": list(ratios),
                "seconds_total": round(time.perf_counter() - started, 1), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    print(f"\nwrote {path}")
    return path


def print_ratios(lines: Sequence[str]) -> None:
    print()
    for line in lines:
        print(line)
