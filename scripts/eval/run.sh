#!/usr/bin/env bash
# The whole retrieval evaluation in one command:
#
#   scripts/eval/run.sh [run_eval.py options, e.g. --reuse]
#
# 1. setup_corpus.sh: Debian doc packages -> $NANORAG_EVAL_DIR/corpus
#    (default /var/tmp/nanorag-eval; outside the repository)
# 2. build nanorag (CPU build in build-eval/, unless $NANORAG is set)
# 3. run_eval.py: fresh ingest, question check, search in three modes, table
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
base="${NANORAG_EVAL_DIR:-/var/tmp/nanorag-eval}"
"$root/scripts/eval/setup_corpus.sh" "$base/corpus"
if [ -z "${NANORAG:-}" ]; then
    cmake -S "$root" -B "$root/build-eval" -DNR_CUDA=OFF >/dev/null
    cmake --build "$root/build-eval" -j"$(nproc)" --target nanorag >/dev/null
    NANORAG="$root/build-eval/nanorag"
fi
exec python3 "$root/scripts/eval/run_eval.py" --nanorag "$NANORAG" --corpus "$base/corpus" \
    --data "$base/data" --out "$base/results.json" "$@"
