#!/usr/bin/env python3
"""Retrieval-quality evaluation of nanorag on the Debian-documentation corpus.

    scripts/eval/run_eval.py --nanorag build-eval/nanorag --corpus DIR --data DIR

1. `nanorag ingest` of the corpus into a fresh data dir (unless --reuse and
   the dir already holds a store), with the ingest summary printed;
2. every question of questions.jsonl checked against the store: each of its
   relevant passages must be contained in at least one stored chunk, else the
   question is broken and the run fails (exit 3) after reporting all of them;
3. `nanorag search --json -k 10` for every question in each mode (vector,
   bm25, hybrid), and per mode:
     recall@5  = share of questions with at least one relevant chunk among
                 the first 5 hits ("hit rate at 5");
     strict recall@5 = mean over questions of the share of their relevant
                 passages (the "relevant" entries) matched by a top-5 hit;
     MRR@10    = mean over questions of 1/rank of the first relevant hit
                 within the first 10 (0 when there is none).
   A hit is relevant to an entry when the hit's source ends with the entry's
   source_suffix and its text contains the entry's phrase, both compared with
   whitespace runs collapsed to one space and case folded.

Python 3 standard library only. Per-question results go to --out (JSON).
"""
import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time

MODES = ("vector", "bm25", "hybrid")
HERE = os.path.dirname(os.path.abspath(__file__))


def norm(s):
    return re.sub(r"\s+", " ", s).strip().casefold()


def load_questions(path):
    qs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            q = json.loads(line)
            if not q.get("q") or not q.get("relevant"):
                sys.exit(f"{path}:{n}: a question needs 'q' and 'relevant'")
            for r in q["relevant"]:
                r["_phrase"] = norm(r["contains"])
            q["line"] = n
            qs.append(q)
    return qs


def matches(rel, source, text_norm):
    return source.endswith(rel["source_suffix"]) and rel["_phrase"] in text_norm


def ingest(nanorag, corpus, data, threads):
    if os.path.exists(data):
        shutil.rmtree(data)
    cmd = [nanorag, "ingest", "--data", data, "--quiet"]
    if threads:
        cmd += ["--threads", str(threads)]
    cmd.append(corpus)
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.monotonic()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - t0
    for line in p.stderr.splitlines():
        if line.startswith("failed"):
            print("  " + line)
    summary = [l for l in p.stdout.splitlines() if l.startswith("added ")]
    if summary:
        print("  " + summary[-1])
    if p.returncode not in (0, 1):  # 1: some files failed (reported above)
        sys.exit(f"ingest failed (exit {p.returncode}):\n{p.stderr[-2000:]}")
    info = {"wall_s": wall, "summary": summary[-1] if summary else ""}
    m = re.search(r"added (\d+), unchanged (\d+), replaced (\d+), failed (\d+); (\d+) chunks in "
                  r"([\d.]+) s \(([\d.]+) chunks/s, (\d+)% of the time embedding\)",
                  info["summary"])
    if m:
        added, _, _, failed, chunks, secs, cps, emb = m.groups()
        info.update(files=int(added), failed=int(failed), chunks=int(chunks),
                    seconds=float(secs), chunks_per_s=float(cps), embed_share=int(emb) / 100)
        info["files_per_s"] = info["files"] / info["seconds"] if info["seconds"] else 0.0
        print(f"  ingest: {info['files']} files, {info['failed']} failed, {info['chunks']} chunks "
              f"in {info['seconds']:.1f} s: {info['files_per_s']:.2f} files/s, "
              f"{info['chunks_per_s']:.1f} chunks/s, {emb}% of the time embedding "
              f"(process wall time {wall:.1f} s)")
    return info


def check_store(data, qs):
    """Return the questions whose relevant passages no stored chunk contains."""
    db = sqlite3.connect(f"file:{os.path.join(data, 'nanorag.db')}?mode=ro", uri=True)
    rows = db.execute("SELECT d.source, c.text FROM chunks c JOIN documents d "
                      "ON d.id = c.document_id").fetchall()
    n_docs = db.execute("SELECT count(*) FROM documents").fetchone()[0]
    db.close()
    chunks = [(s, norm(t)) for s, t in rows]
    broken = []
    for q in qs:
        for r in q["relevant"]:
            r["_n_chunks"] = sum(1 for s, t in chunks if matches(r, s, t))
            if r["_n_chunks"] == 0:
                broken.append((q, r))
    return broken, n_docs, len(chunks)


def search(nanorag, data, query, mode, k):
    cmd = [nanorag, "search", "--data", data, "-k", str(k), "--mode", mode, "--json", query]
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        sys.exit(f"search failed (exit {p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    return json.loads(p.stdout)["hits"]


def fmt_of(q):
    suf = q["relevant"][0]["source_suffix"]
    return os.path.splitext(suf)[1].lstrip(".") or "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nanorag", default=os.path.join(HERE, "../../build-eval/nanorag"))
    base = os.environ.get("NANORAG_EVAL_DIR", "/var/tmp/nanorag-eval")
    ap.add_argument("--corpus", default=os.path.join(base, "corpus"))
    ap.add_argument("--data", default=os.path.join(base, "data"))
    ap.add_argument("--questions", default=os.path.join(HERE, "questions.jsonl"))
    ap.add_argument("--out", default=os.path.join(base, "results.json"))
    ap.add_argument("--reuse", action="store_true", help="keep an existing store (no ingest)")
    ap.add_argument("--check-only", action="store_true", help="ingest + question check only")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()

    qs = load_questions(a.questions)
    print(f"questions: {len(qs)} from {a.questions}")
    if a.reuse and os.path.exists(os.path.join(a.data, "nanorag.db")):
        print(f"reusing the store in {a.data} (no ingest)")
        info = {}
    else:
        info = ingest(a.nanorag, a.corpus, a.data, a.threads)

    broken, n_docs, n_chunks = check_store(a.data, qs)
    print(f"store: {n_docs} documents, {n_chunks} chunks")
    if broken:
        for q, r in broken:
            print(f"BROKEN line {q['line']}: no chunk of *{r['source_suffix']} contains "
                  f"{r['contains']!r}", file=sys.stderr)
        print(f"{len({id(q) for q, _ in broken})} broken question(s)", file=sys.stderr)
        sys.exit(3)
    if a.check_only:
        return

    k = 10
    per_q = []
    t0 = time.monotonic()
    for i, q in enumerate(qs, 1):
        res = {"line": q["line"], "q": q["q"], "format": fmt_of(q)}
        for mode in MODES:
            hits = search(a.nanorag, a.data, q["q"], mode, k)
            first = 0
            found = set()
            for rank, h in enumerate(hits[:k], 1):
                tn = norm(h.get("text") or "")
                rel = [j for j, r in enumerate(q["relevant"]) if matches(r, h["source"], tn)]
                if rel and not first:
                    first = rank
                if rank <= 5:
                    found.update(rel)
            res[mode] = {"first": first,
                         "strict5": len(found) / len(q["relevant"]),
                         "top": [f"{os.path.basename(h['source'])}#{h.get('page', 0)}"
                                 for h in hits[:3]]}
        per_q.append(res)
        if sys.stdout.isatty():
            print(f"\r  searched {i}/{len(qs)} questions x {len(MODES)} modes", end="", flush=True)
    print(f"\r  searched {len(qs)} questions x {len(MODES)} modes in "
          f"{time.monotonic() - t0:.0f} s")

    def metrics(rows, mode):
        n = len(rows)
        r5 = sum(1 for r in rows if 0 < r[mode]["first"] <= 5) / n
        s5 = sum(r[mode]["strict5"] for r in rows) / n
        mrr = sum(1 / r[mode]["first"] for r in rows if r[mode]["first"]) / n
        return r5, s5, mrr

    table = {m: metrics(per_q, m) for m in MODES}
    print()
    print(f"| mode | recall@5 | strict recall@5 | MRR@10 |  ({len(qs)} questions)")
    print("|---|---|---|---|")
    for m in MODES:
        r5, s5, mrr = table[m]
        print(f"| {m} | {r5:.3f} | {s5:.3f} | {mrr:.3f} |")
    print()
    fmts = sorted({r["format"] for r in per_q})
    print("recall@5 / MRR@10 by the format of the answering document:")
    print("| format | questions | " + " | ".join(MODES) + " |")
    print("|---|---|" + "---|" * len(MODES))
    for f in fmts:
        rows = [r for r in per_q if r["format"] == f]
        cells = []
        for m in MODES:
            r5, _, mrr = metrics(rows, m)
            cells.append(f"{r5:.2f} / {mrr:.2f}")
        print(f"| {f} | {len(rows)} | " + " | ".join(cells) + " |")
    print()
    h5, _, hm = table["hybrid"]
    for m in ("vector", "bm25"):
        r5, _, mrr = table[m]
        d5, dm = h5 - r5, hm - mrr
        verdict = "hybrid does not lose" if d5 >= 0 and dm >= 0 else "HYBRID LOSES"
        print(f"hybrid vs {m}: recall@5 {d5:+.3f}, MRR@10 {dm:+.3f} -> {verdict}")
    worse = [r for r in per_q
             if r["hybrid"]["first"] == 0 and (r["vector"]["first"] or r["bm25"]["first"])]
    for r in worse:
        print(f"  hybrid misses line {r['line']} ({r['q']!r}): vector rank "
              f"{r['vector']['first'] or '-'}, bm25 rank {r['bm25']['first'] or '-'}")

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"ingest": info, "documents": n_docs, "chunks": n_chunks,
                   "metrics": {m: dict(zip(("recall@5", "strict_recall@5", "mrr@10"), table[m]))
                               for m in MODES},
                   "questions": per_q}, f, indent=1)
    print(f"per-question results: {a.out}")


if __name__ == "__main__":
    main()
