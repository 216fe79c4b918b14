#!/usr/bin/env bash
# /api/embed with one short input at concurrency 1, 8 and 64, side by side:
# nanorag serve and sentence-transformers behind a minimal Python HTTP server
# (bench/st_http_server.py), same machine, same request, loopback.
#   bench/run_http.sh [SECONDS]     needs: build/ (nanorag, bench_http), models/,
#                                   python3 with sentence-transformers
#   NR_SERVE_ARGS="--int8" bench/run_http.sh     extra `nanorag serve` options
#   NR_ONLY=1 bench/run_http.sh                  nanorag only
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
tmp=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "== $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores," \
     "$(date -u +%F), commit $(git rev-parse --short HEAD), ${secs} s per level"

# shellcheck disable=SC2086
build/nanorag serve --listen 127.0.0.1:0 --data "$tmp/data" --llm none ${NR_SERVE_ARGS:-} \
    >"$tmp/nr.out" 2>&1 &
pids+=($!)
if [ -z "${NR_ONLY:-}" ]; then
    HF_HUB_OFFLINE=1 python3 bench/st_http_server.py models/all-MiniLM-L6-v2 --port 0 \
        >"$tmp/st.out" 2>&1 &
    pids+=($!)
else
    echo "st_http_server: listening on http://127.0.0.1:0" >"$tmp/st.out"
fi
for _ in $(seq 600); do
    grep -q listening "$tmp/nr.out" 2>/dev/null && grep -q listening "$tmp/st.out" 2>/dev/null &&
        break
    sleep 0.1
done
nr_port=$(sed -n 's/.*listening on http:.*:\([0-9]*\)$/\1/p' "$tmp/nr.out")
st_port=$(sed -n 's/.*listening on http:.*:\([0-9]*\)$/\1/p' "$tmp/st.out")
[ -n "$nr_port" ] && [ -n "$st_port" ] || { cat "$tmp/nr.out" "$tmp/st.out"; exit 1; }

echo "-- nanorag serve ${NR_SERVE_ARGS:-} (/api/embed)"
build/bench_http --port "$nr_port" --seconds "$secs" --concurrency 1,8,64
if [ -z "${NR_ONLY:-}" ]; then
    echo "-- sentence-transformers + http.server (/api/embed)"
    build/bench_http --port "$st_port" --seconds "$secs" --concurrency 1,8,64
fi
