#!/usr/bin/env python3
"""The `nanorag` command as a user runs it: embed (arguments, stdin, --file,
--raw), status (--json), and clear errors on bad input.

    python3 tests/test_cli.py path/to/nanorag
Compares vectors with tests/fixtures/embed_ref.json (sentence-transformers).
"""
import json
import os
import struct
import tempfile

from nr_check import ROOT, check, cos, finish, run

REF = json.load(open(os.path.join(ROOT, "tests", "fixtures", "embed_ref.json"), encoding="utf-8"))


def ref_vec(text):
    return REF["vectors"][REF["texts"].index(text)]


texts = ["What is the capital of France?", "Hello, world!", "Café crème brûlée à la française, s'il vous plaît."]

r = run(["embed"] + texts)
check("embed args exits 0", r.returncode == 0, r.stderr.decode(errors="replace"))
doc = json.loads(r.stdout) if r.returncode == 0 else {"embeddings": []}
check("embed args: one vector per text", len(doc["embeddings"]) == 3)
check("embed args: dim 384", doc.get("dim") == 384 and all(len(v) == 384 for v in doc["embeddings"]))
check("embed args: equal to sentence-transformers",
      all(cos(v, ref_vec(t)) >= 0.9999 for v, t in zip(doc["embeddings"], texts)))

r2 = run(["embed"], stdin=("\n".join(texts) + "\n").encode())
doc2 = json.loads(r2.stdout) if r2.returncode == 0 else {"embeddings": []}
check("embed stdin lines = args", r2.returncode == 0 and doc2["embeddings"] == doc["embeddings"],
      r2.stderr.decode(errors="replace"))

with tempfile.TemporaryDirectory() as d:
    p = os.path.join(d, "lines.txt")
    with open(p, "w", encoding="utf-8") as f:
        f.write("\r\n".join(texts))  # CRLF and no final newline
    r3 = run(["embed", "--file", p])
    doc3 = json.loads(r3.stdout) if r3.returncode == 0 else {"embeddings": []}
    check("embed --file = args", doc3["embeddings"] == doc["embeddings"])
    r4 = run(["embed", "--file", p, "--raw"])
    raw = r4.stdout
    check("embed --raw size", r4.returncode == 0 and len(raw) == 3 * 384 * 4, str(len(raw)))
    if len(raw) == 3 * 384 * 4:
        vals = struct.unpack("<%df" % (3 * 384), raw)
        flat = [x for v in doc["embeddings"] for x in v]
        check("embed --raw equals JSON", max(abs(a - b) for a, b in zip(vals, flat)) < 1e-6)
    # many lines: streamed in groups, order kept
    many = [REF["texts"][i % len(REF["texts"])].replace("\n", " ").replace("\r", " ")
            for i in range(150)]
    with open(p, "w", encoding="utf-8") as f:
        f.write("\n".join(many) + "\n")
    r5 = run(["embed", "--file", p])
    doc5 = json.loads(r5.stdout) if r5.returncode == 0 else {"embeddings": []}
    check("embed 150 lines: count", len(doc5["embeddings"]) == 150)
    check("embed 150 lines: order kept",
          len(doc5["embeddings"]) == 150 and
          cos(doc5["embeddings"][5], ref_vec(REF["texts"][5])) > 0.9999)
    # invalid UTF-8 on stdin: no crash, one vector
    r6 = run(["embed"], stdin=b"\xff\xfe\xc3 bad bytes \xe2\x82\n")
    check("embed invalid UTF-8 ok", r6.returncode == 0 and len(json.loads(r6.stdout)["embeddings"]) == 1)

# errors name what was wrong
r = run(["embed", "--model", "/nonexistent/model", "x"])
check("bad --model: exit 1 and message", r.returncode == 1 and b"model" in r.stderr, r.stderr.decode())
check("bad --model: no path leaked", b"/nonexistent" not in r.stderr, r.stderr.decode())
r = run(["embed", "--threads", "abc", "x"])
check("bad --threads: message names option", r.returncode != 0 and b"--threads" in r.stderr)
r = run(["embed", "--file", "/nonexistent/file.txt"])
check("missing --file: exit 1", r.returncode == 1)
r = run(["frobnicate"])
check("unknown command: exit 2", r.returncode == 2)

r = run(["status", "--json"])
st = json.loads(r.stdout) if r.returncode == 0 else {}
check("status --json parses", r.returncode == 0, r.stderr.decode(errors="replace"))
check("status: cpu", "simd" in st.get("cpu", {}) and st["cpu"].get("threads", 0) >= 1)
check("status: memory", st.get("memory", {}).get("total_mib", 0) > 0)
check("status: gpu section", "cuda_build" in st.get("gpu", {}))
emb = st.get("embedder", {})
check("status: embedder device/precision/memory",
      emb.get("device") == "cpu" and emb.get("precision") == "fp32" and emb.get("weights_mib", 0) > 10
      and emb.get("query_ms_p50", 0) > 0, json.dumps(emb))
r = run(["status"])
check("status text", r.returncode == 0 and b"embedder" in r.stdout)

# the generator and the index sections: status never creates a store; after
# an ingest it reports the vectors and where vector search runs
with tempfile.TemporaryDirectory() as d:
    data = os.path.join(d, "data")
    r = run(["status", "--json", "--data", data])
    st = json.loads(r.stdout) if r.returncode == 0 else {}
    ix = st.get("index", {})
    check("status: no store yet, none created", ix.get("vectors") == 0 and "no store" in
          ix.get("note", "") and not os.path.exists(data), json.dumps(ix))
    gen = st.get("generator", {})
    check("status: generator model, quantization, memory and speed",
          gen.get("arch") == "llama" and gen.get("quantization") == "q4_1" and
          gen.get("weights_mapped_mib", 0) > 50 and gen.get("kv_mib_per_4k", 0) > 0 and
          gen.get("decode_tokens_per_s", 0) > 0, json.dumps(gen))
    doc = os.path.join(d, "note.md")
    with open(doc, "w") as f:
        f.write("# Routers\n\nHold the reset button for ten seconds to restore the defaults.\n")
    r = run(["ingest", "--data", data, "--quiet", doc])
    r = run(["status", "--json", "--data", data, "--llm", "none", "--device", "cuda"])
    st = json.loads(r.stdout) if r.returncode == 0 else {}
    ix = st.get("index", {})
    check("status: index vectors, device, memory (cuda asked, CPU here, the reason given)",
          ix.get("vectors", 0) >= 1 and ix.get("memory_mib", 0) > 0 and
          ix.get("device") in ("cpu", "cuda") and (ix.get("device") == "cuda" or ix.get("note")),
          json.dumps(ix))
    check("status --llm none: no generator section", "generator" not in st, list(st))

finish()
