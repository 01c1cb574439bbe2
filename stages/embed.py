"""Stage `embed@<which>`: encode the prepared train, dev and test documents with one model.

``pretrained`` uses ``model.base``; ``finetuned`` uses models/finetuned. Rows are unit-length float32
(bf16 autocast where supported), written to data/embeddings/<which>/{train,dev,test}.npz with the
doc ids and labels, plus meta.json. The pretrained train/dev embeddings also feed triplet mining.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from newsknn.data import read_jsonl, replace_dir_atomically
from newsknn.embeddings import EmbeddedSplit, save_split, write_meta
from newsknn.errors import exit_on_user_error
from newsknn.models import (encode, load_model, model_fingerprint, resolve_model_source,
                            use_bf16)
from newsknn.params import load_params, require_choice, require_number, section

SPLITS = ("train", "dev", "test")


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", choices=["pretrained", "finetuned"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--finetuned", default="models/finetuned")
    parser.add_argument("--out", default="data/embeddings")
    args = parser.parse_args()

    model_params = section(load_params(args.params), "model")
    name = model_params.get("base") if args.which == "pretrained" else args.finetuned
    max_seq_length = require_number(model_params.get("max_seq_length"), "model.max_seq_length",
                                    low=8, integer=True)
    batch_size = require_number(model_params.get("encode_batch_size"),
                                "model.encode_batch_size", low=1, integer=True)
    precision = require_choice(model_params.get("precision"), "model.precision",
                               ["auto", "bf16", "fp32"])
    bf16 = use_bf16(precision)
    splits = {split: read_jsonl(Path(args.prepared, f"{split}.jsonl")) for split in SPLITS}
    model = load_model(name, max_seq_length)
    source = resolve_model_source(name)
    fingerprint = model_fingerprint(source) if Path(source).is_dir() else None

    def fill(folder: Path) -> None:
        timings = {}
        for split, docs in splits.items():
            started = time.perf_counter()
            print(f"embed@{args.which}: encoding {len(docs)} {split} documents")
            rows = encode(model, [doc.text for doc in docs], bf16=bf16, batch_size=batch_size)
            timings[split] = round(time.perf_counter() - started, 2)
            save_split(folder / f"{split}.npz", EmbeddedSplit(
                rows, [doc.doc_id for doc in docs], [doc.label for doc in docs]))
        write_meta(folder, {
            "which": args.which, "model": str(name), "max_seq_length": max_seq_length,
            "model_sha256": fingerprint,
            "precision": "bf16" if bf16 else "fp32",
            "dimension": model.get_embedding_dimension(),
            "counts": {split: len(docs) for split, docs in splits.items()},
            "seconds": timings,
        })
        print(f"embed@{args.which}: " + ", ".join(
            f"{split} {len(splits[split])} docs in {timings[split]} s" for split in SPLITS))

    replace_dir_atomically(Path(args.out, args.which), fill)


if __name__ == "__main__":
    main()
