#!/usr/bin/env bash
# Decoder speed side by side: nanorag's bench_gen and llama.cpp's llama-bench
# (built from the llama-cpp-python sdist by bench/build_llamacpp.sh) on the
# same GGUF files, the same threads, in one run: prefill of a 512-token prompt
# and decode of 128 tokens. Models: the two default models and random-weight
# Llama-3.2-1B-shaped files (Q4_K_M mix and Q8_0) and a 3B-shaped Q4_K_M one
# (NR_BENCH_3B_Q8=1 adds 3B Q8_0) made by bench_make_model.
#
#   bench/run_gen.sh [THREADS] [MODELS...]     (default 2; all models)
#
# Needs a Release build in build/ (bench_gen, bench_make_model). Run it on a
# quiet machine; each model takes ~1-3 minutes.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
t=${1:-2}
shift || true
tmp=${NR_BENCH_DIR:-/tmp/nr-bench}
mkdir -p "$tmp"
cmake --build "$here/build" -j"$(nproc)" --target bench_gen bench_make_model >/dev/null
lb=$("$here/bench/build_llamacpp.sh" "${LLAMACPP_DIR:-/tmp/llamacpp}" | tail -n 1)

models=("$@")
if [ ${#models[@]} = 0 ]; then
    models=("$here/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
            "$here/models/gemma-3-270m/gemma-3-270m-q4_k_m.gguf")
    # The Llama 3 vocabulary goes into the random-weight files so that
    # llama-bench loads them too (scripts/setup.sh --test makes it).
    vocab=$here/models/llama3-tokenizer/llama3-vocab.gguf
    for sm in 1b:q4_k_m 1b:q8_0 3b:q4_k_m ${NR_BENCH_3B_Q8:+3b:q8_0}; do
        f=$tmp/llama32-${sm%%:*}-${sm##*:}.gguf
        [ -f "$f" ] || "$here/build/bench_make_model" "${sm%%:*}" "${sm##*:}" "$f" "$vocab" >/dev/null
        models+=("$f")
    done
fi

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs, threads $t"
echo "commit:  $(git -C "$here" rev-parse --short HEAD), $(date -u +%Y-%m-%dT%H:%MZ)"
for m in "${models[@]}"; do
    echo
    echo "== $(basename "$m")"
    echo "-- nanorag bench_gen"
    "$here/build/bench_gen" -t "$t" -p 512 -n 128 -r 2 "$m"
    echo "-- llama.cpp llama-bench"
    "$lb" -m "$m" -t "$t" -p 512 -n 128 -r 2 -o md 2>/dev/null | grep -E '^\|' || echo "llama-bench failed on $m"
done
