"""Stage `prepare`: read the bydate archive, strip it like scikit-learn, split train into train/dev.

Writes data/prepared/{train,dev,test}.jsonl, data/prepared/labels.json and metrics/prepare.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from newsknn.data import (
    DEV_SPLITS, build_documents, label_counts, read_archive, read_sklearn_download,
    replace_dir_atomically, split_dev, write_jsonl,
)
from newsknn.errors import UserError, exit_on_user_error
from newsknn.params import load_params, require_choice, require_number, section


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/prepared")
    parser.add_argument("--metrics", default="metrics/prepare.json")
    args = parser.parse_args()

    data = section(load_params(args.params), "data")
    source = require_choice(data.get("source", "archive"), "data.source", ["archive", "sklearn"])
    how = require_choice(data.get("dev_split"), "data.dev_split", DEV_SPLITS)
    ratio = require_number(data.get("dev_ratio"), "data.dev_ratio", low=0, high=0.5)
    seed = require_number(data.get("seed"), "data.seed", integer=True)
    expected = data.get("expect") or {}
    if set(expected) != {"train", "test", "groups"}:
        raise UserError("data.expect must give the expected counts: train, test and groups")

    if source == "archive":
        origin = data.get("archive")
        if not origin:
            raise UserError("data.archive must name the 20news-bydate.tar.gz file")
        posts = read_archive(origin)
    else:
        origin = "scikit-learn's download"
        posts = read_sklearn_download()
    documents, labels = build_documents(posts, expected, str(origin))
    train, dev = split_dev(documents["train"], ratio, how, seed)
    splits = {"train": train, "dev": dev, "test": documents["test"]}

    def fill(folder: Path) -> None:
        for name, docs in splits.items():
            write_jsonl(folder / f"{name}.jsonl", docs)
        (folder / "labels.json").write_text(json.dumps(labels, indent=1) + "\n")

    replace_dir_atomically(Path(args.out), fill)

    summary = {
        name: {"documents": len(docs), "empty_after_stripping": sum(d.is_empty for d in docs),
               "smallest_group": int(label_counts(docs, len(labels)).min()) if docs else 0}
        for name, docs in splits.items()
    }
    summary["groups"] = len(labels)
    Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
    Path(args.metrics).write_text(json.dumps(summary, indent=2) + "\n")
    for name, info in summary.items():
        if isinstance(info, dict):
            print(f"{name}: {info['documents']} documents, "
                  f"{info['empty_after_stripping']} empty after stripping")


if __name__ == "__main__":
    main()
