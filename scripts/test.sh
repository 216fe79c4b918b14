#!/usr/bin/env bash
# README command 2 (and what CI runs): set up, then the whole test suite:
#   1. the release build's tests (ctest), fixtures against sentence-transformers
#      and Hugging Face references;
#   2. the same tests under AddressSanitizer + UndefinedBehaviorSanitizer;
#   3. the aarch64 cross build, kernel tests (NEON) under qemu-user;
#   4. a CUDA compile check when nvcc is present (no GPU needed);
#   5. the retrieval evaluation on Debian-packaged docs (scripts/eval/run.sh).
# Ends with one summary line; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test || { echo "tests: 0 passed, 1 failed (setup)"; exit 1; }

passed=0
failed=0
failures=""
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Run one step; count its ctest tests (or the step itself as one test).
step() {
    local name=$1 rc line total bad
    shift
    echo
    echo "==== $name"
    "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
    if [ -n "$line" ]; then
        total=$(echo "$line" | sed -E 's/.*out of ([0-9]+).*/\1/')
        bad=$(echo "$line" | sed -E 's/.*passed, ([0-9]+) tests? failed.*/\1/')
        passed=$((passed + total - bad))
        failed=$((failed + bad))
        [ "$bad" = 0 ] && [ "$rc" != 0 ] && failed=$((failed + 1))
    elif [ "$rc" = 0 ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    [ "$rc" = 0 ] || failures="$failures $name"
}

step release bash -c 'ctest --test-dir build --output-on-failure -j2'
step sanitizers bash -c 'cmake -S . -B build-asan -DNR_SANITIZE=ON -DNR_CUDA=OFF \
        -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build build-asan -j"$(nproc)" >/dev/null &&
    ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j2'
step aarch64 scripts/test_aarch64.sh
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
    step cuda-build bash -c 'PATH=$PATH:/usr/local/cuda/bin cmake -S . -B build-cuda \
        -DNR_CUDA=ON >/dev/null && cmake --build build-cuda -j"$(nproc)" >/dev/null &&
        build-cuda/nanorag status --no-model'
fi
# Retrieval round trip on a real corpus: Debian documentation packages
# (txt, md, html, pdf) installed and assembled by scripts/eval/setup_corpus.sh,
# ingested by the release build, 66 questions searched in every mode; fails if
# ingest or search fails or a question's passage is in no stored chunk.
step eval bash -c 'NANORAG=build/nanorag scripts/eval/run.sh'
step format bash -c 'cmake --build build --target format-check'

echo
[ -n "$failures" ] && echo "failed steps:$failures"
echo "tests: $passed passed, $failed failed"
[ $failed = 0 ] && [ -z "$failures" ]
