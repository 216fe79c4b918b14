#!/usr/bin/env bash
# Build llama.cpp's llama-bench (CPU only) from the source that PyPI's
# llama-cpp-python sdist carries, for side-by-side decode/prefill figures
# (bench/run_gen.sh). Not part of the test suite: a reference to measure
# against, never linked into nanorag. The sdist is checksum-verified.
#
#   bench/build_llamacpp.sh [OUT_DIR]     (default /tmp/llamacpp)
#
# Prints the path of llama-bench at the end.
set -euo pipefail
out=${1:-/tmp/llamacpp}
ver=0.3.36
sum=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
mkdir -p "$out"
tgz=$out/llama_cpp_python-$ver.tar.gz
if [ ! -f "$tgz" ] || ! echo "$sum  $tgz" | sha256sum -c --status; then
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$out" "llama-cpp-python==$ver"
fi
echo "$sum  $tgz" | sha256sum -c --status || { echo "build_llamacpp: checksum mismatch" >&2; exit 1; }
src=$out/llama_cpp_python-$ver/vendor/llama.cpp
[ -d "$src" ] || tar xzf "$tgz" -C "$out"
cmake -S "$src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_CUDA=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DBUILD_SHARED_LIBS=OFF >"$out/configure.log"
cmake --build "$out/build" -j"$(nproc)" --target llama-bench >"$out/build.log"
echo "$out/build/bin/llama-bench"
