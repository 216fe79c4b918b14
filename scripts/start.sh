#!/usr/bin/env bash
# README command 1: set up, build, and run the main job on embedded defaults.
# For now the main job is embedding sample text and reporting status; the
# server takes its place when it lands.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo
echo "== nanorag embed (all-MiniLM-L6-v2, first 8 of 384 dimensions shown)"
build/nanorag embed "nanorag runs retrieval-augmented generation on edge GPUs." \
    "What is the capital of France?" | python3 -c '
import json, sys
d = json.load(sys.stdin)
for v in d["embeddings"]:
    print("[" + ", ".join("%.4f" % x for x in v[:8]) + ", ...]")'
echo
echo "== nanorag status"
build/nanorag status
