#!/usr/bin/env bash
# Set up newsknn on a fresh machine: a virtualenv in .venv with CPU torch installed first, the
# pinned requirements, the project package, and the dataset linked where params.yaml expects it.
#   NEWSKNN_ARCHIVE=/path/to/20news-bydate.tar.gz bash install.sh   (default: ../shared/data/...)
set -euo pipefail
cd "$(dirname "$0")"

python="${PYTHON:-python3}"
archive="${NEWSKNN_ARCHIVE:-../shared/data/20news-bydate.tar.gz}"

if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# CPU build from this machine's disk (or PyPI); must come before anything that depends on torch.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps -e .

if [ -f "$archive" ]; then
  mkdir -p data/raw
  ln -sfn "$(cd "$(dirname "$archive")" && pwd)/$(basename "$archive")" data/raw/20news-bydate.tar.gz
  echo "install.sh: dataset linked: data/raw/20news-bydate.tar.gz -> $archive"
else
  echo "install.sh: dataset not found at $archive; set NEWSKNN_ARCHIVE=/path/to/20news-bydate.tar.gz" \
       "and run again (or set data.archive in params.yaml)" >&2
  exit 1
fi
echo "install.sh: done. Next: source .venv/bin/activate && dvc repro"
