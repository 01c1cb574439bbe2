"""Stage `build_hnsw_index@<which>`: an hnswlib index over one model's training embeddings.

It indexes the whole official training set, the train and dev splits together: dev serves model
selection (evaluate scores it with exact search over the train split alone), and the final
classifier then uses every labelled post. Documents empty after stripping are left out. Writes
models/index/<which>/ (index.bin, items.npz, meta.json with model, dimension, count, params and
the embeddings' checksum).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from newsknn.data import replace_dir_atomically
from newsknn.embeddings import concatenate, load_usable, read_meta
from newsknn.errors import exit_on_user_error
from newsknn.index import IndexParams, build_hnsw, save_index
from newsknn.params import load_params, require_number, section


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("which", choices=["pretrained", "finetuned"])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--embeddings", default="data/embeddings")
    parser.add_argument("--out", default="models/index")
    args = parser.parse_args()

    raw = section(load_params(args.params), "index")
    params = IndexParams(
        M=require_number(raw.get("M"), "index.M", low=2, integer=True),
        ef_construction=require_number(raw.get("ef_construction"), "index.ef_construction",
                                       low=1, integer=True),
        ef_search=require_number(raw.get("ef_search"), "index.ef_search", low=1, integer=True),
        seed=require_number(raw.get("seed", 42), "index.seed", integer=True),
    )
    folder = Path(args.embeddings, args.which)
    meta = read_meta(folder)
    parts = [load_usable(folder, args.prepared, split) for split in ("train", "dev")]
    n_docs = sum(meta["counts"][split] for split in ("train", "dev"))  # rows the embed stage wrote
    usable = concatenate(parts)
    started = time.perf_counter()
    index = build_hnsw(usable.embeddings, usable.doc_ids, usable.labels, params, {
        "which": args.which, "model": meta["model"], "model_sha256": meta.get("model_sha256"),
        "max_seq_length": meta["max_seq_length"], "left_out_empty": n_docs - len(usable),
        "splits": ["train", "dev"]})
    seconds = time.perf_counter() - started
    replace_dir_atomically(Path(args.out, args.which), lambda out: save_index(index, out))
    print(f"build_hnsw_index@{args.which}: {len(usable)} items ({n_docs - len(usable)} empty "
          f"left out), M={params.M} ef_construction={params.ef_construction}, {seconds:.1f} s")


if __name__ == "__main__":
    main()
