"""Fine-tuning throughput: the project's finetune path (bf16) against the same trainer in fp32.

Why: ``finetune`` is the pipeline's longest stage, and ``finetune.precision: auto`` turns on bf16
mixed precision in the sentence-transformers trainer where the CPU supports it. This measures what
that buys: ``newsknn.training.finetune`` with the ``finetune`` section of params.yaml, on the same
first N triplets of data/triplets/train.jsonl, once with bf16 per ``use_bf16`` and once with
fp32, each run on a freshly loaded ``model.base`` (so neither inherits the other's updated weights).
Runs alternate (A B B A ...) and the best of each counts. Throughput is triplets per second of the
trainer's own ``train_runtime`` (the training loop); whole-call wall time is reported as well.

Target: speed-up >= 1.7x.

    .venv/bin/python bench/train_bench.py [--quick] [--triplets 96] [--rounds 2]
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
from pathlib import Path

import benchlib
from newsknn.errors import exit_on_user_error

NAME = "train"


@exit_on_user_error
def main() -> None:
    started = time.perf_counter()
    parser = benchlib.parser(__doc__)
    parser.add_argument("--triplets", default="data/triplets")
    parser.add_argument("--n", "--triplets-count", dest="n", type=int, default=None,
                        help="triplets per run (96; quick 16)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the untimed one-batch run per precision")
    args = parser.parse_args()
    n = args.n or (16 if args.quick else 96)

    import torch
    from newsknn.models import load_model, use_bf16
    from newsknn.params import load_params, section
    from newsknn.training import FinetuneConfig, finetune
    from newsknn.triplets import read_records

    benchlib.limit_threads(args.threads)
    params = load_params(args.params)
    base = section(params, "model")["base"]
    raw = section(params, "finetune")
    fields = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name != "bf16"]
    config = FinetuneConfig(**{name: raw[name] for name in fields},
                            bf16=use_bf16(raw.get("precision", "auto")))
    records = read_records(Path(args.triplets, "train.jsonl"), n)
    configs = {"project": config, "fp32": dataclasses.replace(config, bf16=False)}

    def run(cfg: FinetuneConfig, data: list[dict]) -> dict:
        model = load_model(base, cfg.max_seq_length)  # fresh weights every run
        begun = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the trainer prints a dict per log step
            stats = finetune(model, data, cfg, progress=False)
        wall = time.perf_counter() - begun
        return {"train_seconds": round(stats["seconds"], 3), "wall_seconds": round(wall, 3),
                "triplets_per_second": round(len(data) * cfg.epochs / stats["seconds"], 3),
                "wall_triplets_per_second": round(len(data) * cfg.epochs / wall, 3),
                "steps": stats["steps"], "train_loss": round(stats["train_loss"], 5)}

    if not args.no_warmup:  # first bf16/fp32 passes pay for kernel selection; not timed
        for cfg in configs.values():
            run(cfg, records[:config.batch_size])
    runs = benchlib.interleaved({name: (lambda cfg=cfg: run(cfg, records))
                                 for name, cfg in configs.items()}, args.rounds)
    best = {name: benchlib.best(results, "triplets_per_second") for name, results in runs.items()}
    speedup = best["project"]["triplets_per_second"] / best["fp32"]["triplets_per_second"]
    wall_speedup = best["project"]["wall_triplets_per_second"] / \
        best["fp32"]["wall_triplets_per_second"]

    print(f"\ntrain: {len(records)} triplets, batch {config.batch_size}, max_seq_length "
          f"{config.max_seq_length}, {config.epochs} epoch(s), {args.rounds} rounds, torch threads "
          f"{torch.get_num_threads()}, fresh {base} each run")
    if not config.bf16:
        print("note: finetune.precision resolves to fp32 here, so both runs are fp32")
    print(benchlib.table([{"path": f"finetune ({'bf16' if config.bf16 else 'fp32'})",
                           **best["project"]},
                          {"path": "finetune fp32", **best["fp32"]}],
                         ["path", "triplets_per_second", "wall_triplets_per_second",
                          "train_seconds", "steps", "train_loss"]))
    lines, ratios = [], []
    for text, facts in (benchlib.ratio_line("train speed-up project/fp32", speedup, 1.7),
                        benchlib.ratio_line("train speed-up project/fp32 (whole call, wall)",
                                            wall_speedup)):
        lines.append(text)
        ratios.append(facts)
    benchlib.print_ratios(lines)
    benchlib.write_result(NAME, args, {
        "triplets": len(records), "base_model": base, "bf16": config.bf16,
        "config": dataclasses.asdict(config), "best": best, "runs": runs,
        "speedup": round(speedup, 3), "wall_speedup": round(wall_speedup, 3),
    }, ratios, started)


if __name__ == "__main__":
    main()
