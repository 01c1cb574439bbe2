"""Encoding throughput: the project's embed path against plain fp32 ``SentenceTransformer.encode``.

Why: every embedding the pipeline writes (``embed@*``) and every served prediction goes through
``newsknn.models.encode``, whose docstring claims that bf16 autocast roughly doubles CPU throughput
while moving cosine similarities by well under 0.001. This checks both claims in one run: the same
model object (``model.base`` loaded by ``load_model`` with ``model.max_seq_length``), the same
longest test documents (so nearly every one fills the token window), the same batch size; the two
paths alternate over the rounds and the best round of each counts, so machine noise hits both.

Targets: speed-up >= 2x, cosine agreement between the two embeddings of each document >= 0.999.

Then each path encodes the first 64 documents once more under torch.profiler, and the table of
CPU time per operator kind (matrix products, attention, GELU, layer norm, copies/casts) shows
where the speed-up comes from and what limits it: bf16 speeds up only what oneDNN runs in bf16.

    .venv/bin/python bench/encode_bench.py [--quick] [--docs 300] [--rounds 3]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import benchlib
from newsknn.errors import exit_on_user_error

NAME = "encode"


OPERATOR_KINDS = (  # the kind reported <- aten operator names (or, ending in *, name prefixes)
    ("matrix products", ("addmm", "mm", "bmm", "baddbmm", "linear", "matmul")),
    ("attention", ("scaled_dot_product*", "_scaled_dot_product*", "softmax", "_softmax")),
    ("gelu", ("gelu",)),
    ("layer norm", ("layer_norm", "native_layer_norm")),
    ("copies and casts", ("copy_", "_to_copy", "to", "clone", "contiguous")),
)


def operator_seconds(run) -> dict[str, float]:
    """Self CPU seconds of one ``run()`` by operator kind (others: everything else)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    seconds = {kind: 0.0 for kind, _ in OPERATOR_KINDS}
    seconds["other"] = 0.0
    for event in prof.key_averages():
        name = event.key.removeprefix("aten::")
        kind = next((kind for kind, names in OPERATOR_KINDS if any(
            name.startswith(n[:-1]) if n.endswith("*") else name == n for n in names)), "other")
        seconds[kind] += event.self_cpu_time_total / 1e6
    seconds["total"] = sum(seconds.values())
    return {kind: round(value, 3) for kind, value in seconds.items()}


@exit_on_user_error
def main() -> None:
    started = time.perf_counter()
    parser = benchlib.parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--model", default=None, help="model to encode with (default model.base)")
    parser.add_argument("--docs", type=int, default=None, help="longest N test docs (300; quick 24)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default=None,
                        help="project path precision (default model.precision from params)")
    args = parser.parse_args()
    n_docs = args.docs or (24 if args.quick else 300)

    import numpy as np
    import torch
    from newsknn.data import read_jsonl
    from newsknn.models import encode, load_model, use_bf16
    from newsknn.params import load_params, section

    benchlib.limit_threads(args.threads)
    model_params = section(load_params(args.params), "model")
    max_seq_length = int(model_params["max_seq_length"])
    batch_size = int(model_params.get("encode_batch_size", 32))
    precision = args.precision or model_params.get("precision", "auto")
    bf16 = use_bf16(precision)
    docs = [doc for doc in read_jsonl(Path(args.prepared, "test.jsonl")) if not doc.is_empty]
    texts = [doc.text for doc in sorted(docs, key=lambda d: len(d.text), reverse=True)[:n_docs]]
    model = load_model(args.model or model_params["base"], max_seq_length)
    tokenize = getattr(model, "preprocess", None) or model.tokenize
    tokens = tokenize(texts)["attention_mask"].sum(dim=1).float()  # after truncation

    def project_on(texts_: list[str]):
        return lambda: encode(model, texts_, bf16=bf16, batch_size=batch_size, progress=False)

    def baseline_on(texts_: list[str]):
        return lambda: model.encode(texts_, batch_size=batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=False)

    project, baseline = project_on(texts), baseline_on(texts)

    rows: dict[str, np.ndarray] = {}

    def timed(name, fn):
        def run() -> dict:
            begun = time.perf_counter()
            rows[name] = fn()
            seconds = time.perf_counter() - begun
            return {"seconds": round(seconds, 4), "docs_per_second": round(len(texts) / seconds, 2)}
        return run

    warm = texts[:batch_size]  # first calls pay for kernel selection and allocator growth
    encode(model, warm, bf16=bf16, batch_size=batch_size, progress=False)
    model.encode(warm, batch_size=batch_size, show_progress_bar=False)
    runs = benchlib.interleaved({"project": timed("project", project),
                                 "baseline_fp32": timed("baseline_fp32", baseline)}, args.rounds)
    best = {name: benchlib.best(results, "docs_per_second") for name, results in runs.items()}

    profile = {"project": operator_seconds(project_on(texts[:64])),
               "baseline_fp32": operator_seconds(baseline_on(texts[:64]))}

    a, b = rows["project"].astype(np.float64), rows["baseline_fp32"].astype(np.float64)
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    speedup = best["project"]["docs_per_second"] / best["baseline_fp32"]["docs_per_second"]
    round_speedups = [p["docs_per_second"] / b["docs_per_second"]
                      for p, b in zip(runs["project"], runs["baseline_fp32"])]

    label = f"project encode ({'bf16' if bf16 else 'fp32'} autocast)"
    print(f"encode: {len(texts)} longest test docs, mean {tokens.mean():.0f} tokens "
          f"(max_seq_length {max_seq_length}), batch {batch_size}, {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()}")
    if not bf16:
        print(f"note: precision {precision!r} resolves to fp32 here (no avx512_bf16/amx_bf16), "
              "so both paths run fp32")
    print(benchlib.table([{"path": label, **best["project"]},
                          {"path": "SentenceTransformer.encode fp32", **best["baseline_fp32"]}],
                         ["path", "docs_per_second", "seconds"]))
    lines, ratios = [], []
    for text, facts in (benchlib.ratio_line("encode speed-up project/fp32", speedup, 2.0),
                        benchlib.ratio_line("encode speed-up, median of the rounds' ratios",
                                            statistics.median(round_speedups)),
                        benchlib.ratio_line("encode cosine agreement min", float(cos.min()), 0.999,
                                            unit=""),
                        benchlib.ratio_line("encode cosine agreement mean", float(cos.mean()),
                                            unit="")):
        lines.append(text)
        ratios.append(facts)
    kinds = list(profile["baseline_fp32"])
    print(f"\nCPU seconds by operator kind, first {min(64, len(texts))} docs (torch.profiler):")
    print(benchlib.table([{"operator": kind, "fp32": profile["baseline_fp32"][kind],
                           "project": profile["project"].get(kind, 0.0),
                           "speed-up": (round(profile["baseline_fp32"][kind]
                                              / profile["project"][kind], 2)
                                        if profile["project"].get(kind) else None)}
                          for kind in kinds], ["operator", "fp32", "project", "speed-up"]))
    benchlib.print_ratios(lines)
    benchlib.write_result(NAME, args, {
        "docs": len(texts), "mean_tokens": round(float(tokens.mean()), 1),
        "max_seq_length": max_seq_length, "batch_size": batch_size, "bf16": bf16,
        "precision": precision, "model": args.model or model_params["base"],
        "best": best, "runs": runs, "speedup": round(speedup, 3),
        "round_speedups": [round(r, 3) for r in round_speedups],
        "cosine": {"min": float(cos.min()), "mean": float(cos.mean())},
        "profile_seconds": profile,
    }, ratios, started)


if __name__ == "__main__":
    main()
