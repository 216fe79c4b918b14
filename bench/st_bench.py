#!/usr/bin/env python3
"""sentence-transformers on the CPU, same inputs and thread count as
bench_embed, for the side-by-side figures in docs/BENCHMARKS.md.

    python3 bench/st_bench.py [MODEL_DIR] [--threads N] [--queries N] [--batches N]
"""
import argparse
import resource
import statistics
import time

import torch

WORDS = ["data", "model", "search", "query", "memory", "index", "vector", "store", "answer",
         "source", "document", "batch", "thread", "kernel", "cache", "engine", "network",
         "server"]


def make_text(i, ntok):
    return " ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(ntok))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch", type=int, default=32)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer

    m = SentenceTransformer(a.model, device="cpu")
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    q = "how do i reset the password on my home laptop"
    assert len(m.tokenizer(q)["input_ids"]) == 12
    for _ in range(20):
        m.encode([q])
    lat = []
    for _ in range(a.queries):
        t0 = time.perf_counter()
        m.encode([q])
        lat.append((time.perf_counter() - t0) * 1e3)
    lat.sort()
    print("sentence-transformers %s, torch %s, threads %d" % (
        __import__("sentence_transformers").__version__, torch.__version__, torch.get_num_threads()))
    print("query_12tok_ms p50 %.3f p99 %.3f (n=%d)" % (
        statistics.median(lat), lat[int(len(lat) * 0.99)], a.queries))
    texts = [make_text(i, 126) for i in range(a.batch)]
    assert all(len(m.tokenizer(t)["input_ids"]) == 128 for t in texts)
    m.encode(texts, batch_size=a.batch)
    t0 = time.perf_counter()
    for _ in range(a.batches):
        m.encode(texts, batch_size=a.batch)
    dt = time.perf_counter() - t0
    print("chunks_128tok_per_s %.1f (batch %d, %d batches, %.1f ms/batch)" % (
        a.batch * a.batches / dt, a.batch, a.batches, dt * 1e3 / a.batches))
    print("peak_rss_mib loaded %.1f after_runs %.1f" % (
        rss_loaded / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


if __name__ == "__main__":
    main()
