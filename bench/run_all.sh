#!/usr/bin/env bash
# Run every benchmark in turn; extra arguments (e.g. --quick) go to each script.
# Run from the repository root (or from a directory holding the pipeline's outputs and params.yaml):
#   bash bench/run_all.sh            # full sizes -> metrics/bench/*.json
#   bash bench/run_all.sh --quick    # smoke run  -> metrics/bench/quick/*.json
# PYTHON overrides the interpreter (default: the project's .venv). A failing benchmark does not
# stop the others; the exit code says whether any failed.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
failed=()
for name in encode train index serve memory; do
    echo "=== ${name}_bench.py $*"
    if ! "$python" "$here/${name}_bench.py" "$@"; then
        failed+=("$name")
        echo "=== ${name}_bench.py FAILED"
    fi
done
echo
echo "=== ratio lines"
out="metrics/bench"
for arg in "$@"; do [ "$arg" = "--quick" ] && out="metrics/bench/quick"; done
"$python" - "$out" <<'PY'
import json, sys
from pathlib import Path

for name in ("encode", "train", "index", "serve", "memory"):
    path = Path(sys.argv[1], f"{name}.json")
    if not path.is_file():
        continue
    for ratio in json.loads(path.read_text())["ratios"]:
        target = "" if ratio["target"] is None else \
            f"  (target {'>=' if ratio.get('at_least', True) else '<='} {ratio['target']}: " \
            f"{'ok' if ratio['met'] else 'MISSED'})"
        print(f"{ratio['label']}: {ratio['value']}{target}")
PY
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
