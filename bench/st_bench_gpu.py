#!/usr/bin/env python3
"""sentence-transformers fp16 on the GPU, on the inputs of bench_gpu_embed,
for the side-by-side figures of issue 6 (docs/GPU.md).

    python3 bench/st_bench_gpu.py [MODEL_DIR] [--queries N] [--batches N]

MODEL_DIR is a sentence-transformers directory. When it has no
model.safetensors (the device machine gets only the tokenizer and config
files), the model is built from config.json with random weights: speed does
not depend on weight values (docs/../shared ANCHORS use the same method).
Prints: 12-token query p50/p99 end to end; 128-token chunks/s per batch size
and the best; 10,000-chunk ingest wall time and torch's peak GPU memory.
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time

import torch

WORDS = ["data", "model", "search", "query", "memory", "index", "vector", "store", "answer",
         "source", "document", "batch", "thread", "kernel", "cache", "engine", "network",
         "server"]


def make_text(i, ntok):
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(ntok))


def model_dir(src):
    if os.path.exists(os.path.join(src, "model.safetensors")):
        return src, "real weights"
    from transformers import BertConfig, BertModel
    tmp = tempfile.mkdtemp(prefix="st_minilm_")
    for root, _, files in os.walk(src):
        for f in files:
            if f.endswith((".json", ".txt")):
                rel = os.path.relpath(os.path.join(root, f), src)
                os.makedirs(os.path.join(tmp, os.path.dirname(rel)), exist_ok=True)
                shutil.copy(os.path.join(root, f), os.path.join(tmp, rel))
    torch.manual_seed(0)
    BertModel(BertConfig.from_pretrained(src)).save_pretrained(tmp)
    return tmp, "random weights, the model's exact config"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--batches", type=int, default=5)
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    path, what = model_dir(a.model)
    m = SentenceTransformer(path, device="cuda")
    m.half()
    print("sentence-transformers %s fp16, torch %s, %s, %s" % (
        __import__("sentence_transformers").__version__, torch.__version__,
        torch.cuda.get_device_name(0), what))
    q = "how do i reset the password on my home laptop"
    assert len(m.tokenizer(q)["input_ids"]) == 12
    for _ in range(50):
        m.encode([q])
    lat = []
    for _ in range(a.queries):
        t0 = time.perf_counter()
        m.encode([q])
        torch.cuda.synchronize()
        lat.append((time.perf_counter() - t0) * 1e3)
    lat.sort()
    print("st query_12tok_ms p50 %.3f p99 %.3f (n=%d)" % (
        statistics.median(lat), lat[int(len(lat) * 0.99)], a.queries))
    texts = [make_text(i, 126) for i in range(10000)]
    assert all(len(m.tokenizer(t)["input_ids"]) == 128 for t in texts[:64])
    best, best_bs = 0.0, 0
    for bs in (256, 512, 1024, 2048):
        n = 8192
        m.encode(texts[:bs], batch_size=bs)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.batches):
            m.encode(texts[:n], batch_size=bs)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        cps = n * a.batches / dt
        print("st batch %5d: %9.0f chunks/s" % (bs, cps))
        if cps > best:
            best, best_bs = cps, bs
    print("st best: %.0f chunks/s at batch %d" % (best, best_bs))
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    m.encode(texts, batch_size=best_bs)
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print("st ingest 10000 chunks: %.1f ms wall, %.0f chunks/s, torch peak GPU memory %.1f MiB" % (
        dt * 1e3, 10000 / dt, torch.cuda.max_memory_allocated() / 1048576))


if __name__ == "__main__":
    main()
