#!/usr/bin/env bash
# Cross-build the CPU build for aarch64 and run the kernel, vector index and
# base tests under qemu-user, so the NEON kernels are checked against the
# scalar reference on every x86 CI run (the product targets a Jetson Orin).
#
#   scripts/test_aarch64.sh [BUILD_DIR]      (default: build-aarch64)
#
# It builds the whole CPU build (everything must cross-compile); set
# TEST_AARCH64_TARGETS="test_base test_kern test_index test_quant" to build only those while
# iterating.
#
# Needs: gcc-aarch64-linux-gnu, qemu-user, and the arm64 multiarch -dev
# package of every library CMakeLists.txt finds with pkg-config
# (libjansson-dev:arm64, libutf8proc-dev:arm64, ...). Exits non-zero if any
# step or test fails, or if test_kern, test_index or test_quant did not test the NEON
# variant.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$here/build-aarch64}
jobs=$(nproc 2>/dev/null || echo 2)

for tool in aarch64-linux-gnu-gcc qemu-aarch64 cmake; do
    command -v "$tool" >/dev/null || { echo "test_aarch64: $tool not found" >&2; exit 1; }
done

mkdir -p "$build"
if ! cmake -S "$here" -B "$build" -DCMAKE_TOOLCHAIN_FILE="$here/cmake/aarch64-linux-gnu.cmake" \
        -DNR_CUDA=OFF -DCMAKE_BUILD_TYPE=Release >"$build/configure.log" 2>&1; then
    cat "$build/configure.log" >&2
    echo "test_aarch64: cross-configure failed; are the arm64 -dev packages of every" \
         "pkg-config module in CMakeLists.txt installed (e.g. libjansson-dev:arm64)?" >&2
    exit 1
fi
if [ -n "${TEST_AARCH64_TARGETS:-}" ]; then
    # shellcheck disable=SC2086 # a list of target names
    cmake --build "$build" -j "$jobs" --target $TEST_AARCH64_TARGETS
else
    cmake --build "$build" -j "$jobs"
fi

# Loader and libc both from the cross sysroot: the arm64 multiarch libc6 in
# /lib/aarch64-linux-gnu is another glibc revision, and mixing it with the
# sysroot's loader makes pthread_create hang (see cmake/aarch64-linux-gnu.cmake).
run() {
    echo "== qemu-aarch64 $1"
    timeout 1800 qemu-aarch64 -L /usr/aarch64-linux-gnu \
        -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib "$build/$1" | tee "$build/$1.log"
}
run test_base
run test_kern
run test_index
run test_quant
# Tokenizers and sampling: byte handling (char is unsigned on aarch64), PCRE2's JIT there.
run test_tok
run test_sample
# The NEON variants must have been tested, not just the scalar fallback.
for t in test_kern test_index test_quant; do
    grep -q '^variants tested: .*neon' "$build/$t.log" || {
        echo "test_aarch64: $t did not exercise the neon variant" >&2
        exit 1
    }
done
echo "test_aarch64: ok"
