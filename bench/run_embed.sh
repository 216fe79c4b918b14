#!/usr/bin/env bash
# Side by side, same machine, same inputs, same thread count:
# nanorag (bench_embed) and sentence-transformers (bench/st_bench.py).
#   bench/run_embed.sh [THREADS]        needs: build/, models/, python3 with sentence-transformers
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-$(nproc)}
echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, threads $t, $(date -u +%F), commit $(git rev-parse --short HEAD)"
echo "-- nanorag"
build/bench_embed --threads "$t" --both
echo "-- sentence-transformers"
HF_HUB_OFFLINE=1 python3 bench/st_bench.py models/all-MiniLM-L6-v2 --threads "$t"
