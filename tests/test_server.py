#!/usr/bin/env python3
"""`nanorag serve` as clients see it: a real server on a free loopback port,
driven by the official `ollama` and `openai` Python clients (from .venv,
scripts/setup.sh --test) and by plain http.client.

    python3 tests/test_server.py path/to/nanorag

Covers: models listing, embed single/batch through both APIs (vectors equal
`nanorag embed` and sentence-transformers' fixture), float and base64,
dimensions, truncate; document upload (multipart and JSON), list, get,
delete, collections, search; coalesced concurrent embeds; every route with
malformed JSON, wrong types, missing fields, out-of-range numbers, oversized
bodies, unknown models, bad ids, unknown routes and wrong methods (4xx with
a JSON error); Host / Origin / API-key checks; metrics; and, when the
server has a generator, generate/chat streamed and not, an aborted stream
freeing its slot, and overload answered 503 with Retry-After at once.
"""
import base64
import http.client
import json
import math
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import nr_check
from nr_check import NR, ROOT, check, cos, finish, skip

VENV_PY = os.path.join(ROOT, ".venv", "bin", "python")

try:
    import ollama
    import openai
except ImportError:
    # the clients live in .venv (scripts/setup.sh --test): run there
    if os.path.exists(VENV_PY) and not os.environ.get("NR_TEST_REEXEC"):
        os.environ["NR_TEST_REEXEC"] = "1"
        os.execv(VENV_PY, [VENV_PY] + sys.argv)
    check("the ollama and openai clients are installed (scripts/setup.sh --test)", False)
    finish()

REF = json.load(open(os.path.join(ROOT, "tests", "fixtures", "embed_ref.json"), encoding="utf-8"))
LLM = os.environ.get("NR_TEST_LLM", os.path.join(ROOT, "models", "smollm2-135m-instruct",
                                                  "SmolLM2-135M-Instruct.Q4_1.gguf"))
nr_check.detail_max = 500  # a failure shows the start of a response, not all of it


class Server:
    """One `nanorag serve` process on port 0 (the kernel picks a free one)."""

    def __init__(self, *args, data=None):
        self.tmp = tempfile.TemporaryDirectory()
        self.data = data or os.path.join(self.tmp.name, "data")
        self.proc = subprocess.Popen([NR, "serve", "--listen", "127.0.0.1:0", "--data", self.data]
                                     + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        if "listening on" not in line:
            err = self.proc.stderr.read().decode(errors="replace")
            raise RuntimeError("server did not start: " + line + err)
        self.port = int(line.rsplit(":", 1)[1])
        self.url = "http://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.terminate()
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = "killed after 30 s"
        if rc != 0 and rc != -9:
            print("---- server stderr (exit %s):\n%s" % (rc, self.proc.stderr.read().decode(
                errors="replace")[-4000:]))
        self.tmp.cleanup()
        return rc


def req(srv, method, path, body=None, headers=None, timeout=120):
    """(status, headers dict (lowercase), body bytes)."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=timeout)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, data


def raw_req(srv, data):
    """Send raw bytes (possibly cut off by the server) and parse what comes back:
    (status, body bytes); (0, b"") when nothing came."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    try:
        s.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered before reading the whole body, as it should
    out = b""
    try:
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    if not out.startswith(b"HTTP/1."):
        return 0, b""
    head, _, body = out.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def f32(v):
    return [struct.unpack("f", struct.pack("f", x))[0] for x in v]


def jreq(srv, method, path, body=None, headers=None):
    st, h, data = req(srv, method, path, body, headers)
    try:
        return st, h, json.loads(data)
    except ValueError:
        return st, h, data


def is_json_error(data):
    """{"error": "msg"} or OpenAI's {"error": {"message": "msg"}} with a non-empty message."""
    try:
        e = json.loads(data)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    if isinstance(e, dict):
        e = e.get("message")
    return isinstance(e, str) and len(e) > 0


def expect_error(srv, name, method, path, body, status, headers=None, needle=None):
    st, h, data = req(srv, method, path, body, headers)
    ok = st == status and is_json_error(data) and (needle is None or needle in data.decode())
    check("%s -> %d" % (name, status), ok, "%d %s" % (st, data[:300]))
    return h


def multipart(fields):
    """fields: list of (name, filename or None, bytes). Returns (body, content type)."""
    b = "----nanorag-test-7d1f"
    out = b""
    for name, fn, data in fields:
        out += b"--" + b.encode() + b"\r\n"
        disp = 'form-data; name="%s"' % name + ('; filename="%s"' % fn if fn else "")
        out += b"Content-Disposition: " + disp.encode() + b"\r\n"
        if fn:
            out += b"Content-Type: application/octet-stream\r\n"
        out += b"\r\n" + data + b"\r\n"
    out += b"--" + b.encode() + b"--\r\n"
    return out, "multipart/form-data; boundary=" + b


# ---------------------------------------------------------------- basics

srv = Server("--llm", "none")
st, h, data = req(srv, "GET", "/")
check("GET / answers like Ollama", st == 200 and data == b"Ollama is running")
st, h, data = req(srv, "HEAD", "/")
check("HEAD / 200 without a body", st == 200 and data == b"")
st, h, j = jreq(srv, "GET", "/health")
check("GET /health", st == 200 and j.get("status") == "ok")
st, h, j = jreq(srv, "GET", "/api/version")
check("GET /api/version", st == 200 and isinstance(j.get("version"), str))

oc = ollama.Client(host=srv.url)
oa = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)

tags = oc.list()
names = [m.model for m in tags.models]
check("ollama list() shows the embedder", "all-MiniLM-L6-v2" in names, names)
show = oc.show("all-minilm")
check("ollama show(all-minilm)", "embedding" in (show.capabilities or []), show)
ps = oc.ps()
check("ollama ps()", len(ps.models) >= 1)
models = [m.id for m in oa.models.list()]
check("openai models.list()", "all-MiniLM-L6-v2" in models, models)

# ---------------------------------------------------------------- embeddings

texts = ["What is the capital of France?", "Hello, world!",
         "Café crème brûlée à la française, s'il vous plaît."]
cli = json.loads(subprocess.run([NR, "embed"] + texts, capture_output=True, check=True).stdout)
cli_vecs = cli["embeddings"]
ref = [REF["vectors"][REF["texts"].index(t)] for t in texts]

r = oc.embed(model="all-minilm", input=texts)
check("ollama embed batch: 3 vectors of 384", len(r.embeddings) == 3 and
      all(len(v) == 384 for v in r.embeddings))
check("ollama embed batch == nanorag embed", [list(v) for v in r.embeddings] == cli_vecs)
check("ollama embed batch ~ sentence-transformers (cos >= 0.9999)",
      all(cos(a, b) >= 0.9999 for a, b in zip(r.embeddings, ref)))
check("ollama embed: prompt_eval_count > 0", (r.prompt_eval_count or 0) > 0)
r1 = oc.embed(model="all-minilm:latest", input=texts[0])
check("ollama embed single == nanorag embed", list(r1.embeddings[0]) == cli_vecs[0])
r2 = oc.embeddings(model="all-MiniLM-L6-v2", prompt=texts[1])
check("ollama embeddings (legacy) == nanorag embed", list(r2.embedding) == cli_vecs[1])
rd = oc.embed(model="all-minilm", input=texts[0], dimensions=64)
v = rd.embeddings[0]
check("ollama embed dimensions=64: 64 dims, unit norm",
      len(v) == 64 and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5)

e = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts)  # client asks for base64
check("openai embeddings (base64) == nanorag embed (as float32)",
      [f32(d.embedding) for d in e.data] == [f32(v) for v in cli_vecs])
check("openai embeddings usage", e.usage.prompt_tokens > 0)
ef = oa.embeddings.create(model="all-MiniLM-L6-v2", input=texts[2], encoding_format="float")
check("openai embeddings (float) == nanorag embed", ef.data[0].embedding == cli_vecs[2])
st, h, j = jreq(srv, "POST", "/v1/embeddings",
                {"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "base64"})
raw = base64.b64decode(j["data"][0]["embedding"]) if st == 200 else b""
check("base64 is 384 little-endian float32", len(raw) == 384 * 4)

long_text = "word " * 600
expect_error(srv, "ollama embed truncate=false past the window", "POST", "/api/embed",
             {"model": "all-minilm", "input": long_text, "truncate": False}, 400, needle="tokens")
st, h, j = jreq(srv, "POST", "/api/embed", {"model": "all-minilm", "input": long_text})
check("ollama embed truncates by default", st == 200 and len(j["embeddings"][0]) == 384)

# concurrent requests are coalesced and each gets its own vectors
pool_texts = [REF["texts"][i] for i in range(2, 34)]
results = [None] * len(pool_texts)


def worker(i):
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    c.request("POST", "/api/embed", json.dumps({"model": "all-minilm", "input": pool_texts[i]}))
    results[i] = json.loads(c.getresponse().read())["embeddings"][0]
    c.close()


_, _, before = req(srv, "GET", "/metrics")
threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(pool_texts))]
for t in threads:
    t.start()
for t in threads:
    t.join()
check("32 concurrent embeds: each matches its reference (cos >= 0.9999)",
      all(r is not None and cos(r, REF["vectors"][REF["texts"].index(t)]) >= 0.9999
          for r, t in zip(results, pool_texts)))
_, _, metrics = req(srv, "GET", "/metrics")
metrics = metrics.decode()


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


passes = metric(metrics, "nanorag_embed_passes_total") - metric(before.decode(),
                                                                  "nanorag_embed_passes_total")
check("metrics: request counters per route", 'nanorag_http_requests_total{route="api_embed",'
      'code="2xx"}' in metrics)
check("metrics: latency histogram", 'nanorag_http_request_seconds_bucket{route="api_embed"'
      in metrics)
check("metrics: embeddings, queues, memory", all(k in metrics for k in (
    "nanorag_embed_texts_total", "nanorag_queue_depth{", "nanorag_memory_bytes{")) and
      metric(metrics, "nanorag_embed_texts_per_second") > 0)
print("     (32 concurrent embeds took %d embedder passes)" % passes)
check("concurrent embeds were coalesced (fewer passes than requests)", 0 < passes < 32, passes)

# ---------------------------------------------------------------- documents

doc_text = ("Jetson Orin Nano has 8 GB of memory shared by the CPU and the GPU. "
            "The quokka is a small marsupial that lives on Rottnest Island.")
st, h, j = jreq(srv, "POST", "/v1/documents", {"text": doc_text, "title": "Facts",
                                               "collection": "notes", "metadata": {"lang": "en"}})
check("JSON upload -> 201 added", st == 201 and j.get("status") == "added" and j["chunks"] >= 1, j)
doc1 = j.get("id")
st, h, j = jreq(srv, "POST", "/v1/documents", {"text": doc_text, "title": "Facts",
                                               "collection": "notes", "metadata": {"lang": "en"}})
check("same JSON upload again -> unchanged, same id", st == 200 and j.get("status") ==
      "unchanged" and j.get("id") == doc1, j)
md = b"# Wombats\n\nWombats produce cube-shaped droppings.\n\n## Habitat\n\nThey dig burrows.\n"
body, ct = multipart([("file", "../../etc/wombats.md", md), ("collection", None, b"animals"),
                      ("metadata", None, b'{"kind": "animal"}')])
st, h, j = jreq(srv, "POST", "/v1/documents", body, {"Content-Type": ct})
check("multipart upload -> 201, directory part of the name dropped",
      st == 201 and j.get("source") == "wombats.md" and j.get("collection") == "animals", j)
doc2 = j.get("id")
st, h, j = jreq(srv, "GET", "/v1/documents")
ids = [d["id"] for d in j.get("documents", [])]
check("list documents", st == 200 and doc1 in ids and doc2 in ids, j)
st, h, j = jreq(srv, "GET", "/v1/documents?collection=animals")
check("list documents of a collection", st == 200 and [d["id"] for d in j["documents"]] == [doc2])
st, h, j = jreq(srv, "GET", "/v1/documents/%d?text=1" % doc1)
check("get document: metadata, title, text", st == 200 and j.get("title") == "Facts" and
      j.get("metadata") == {"lang": "en"} and j.get("text") == doc_text, j)
st, h, j = jreq(srv, "GET", "/v1/collections")
cols = {c["name"]: c for c in j.get("collections", [])}
check("collections", st == 200 and cols.get("notes", {}).get("documents") == 1 and
      cols.get("animals", {}).get("documents") == 1, j)

for mode in ("vector", "bm25", "hybrid"):
    st, h, j = jreq(srv, "POST", "/v1/search", {"query": "quokka marsupial", "k": 3, "mode": mode})
    hit = j["hits"][0] if st == 200 and j.get("hits") else {}
    check("search %s finds the passage with its offsets" % mode,
          hit.get("doc_id") == doc1 and doc_text[hit["start"]:hit["end"]] == hit["text"] and
          "quokka" in hit["snippet"], j)
st, h, j = jreq(srv, "POST", "/v1/search", {"query": "burrows", "collection": "notes"})
check("search restricted to a collection", st == 200 and
      all(x["doc_id"] == doc1 for x in j["hits"]), j)
st, h, j = jreq(srv, "POST", "/v1/search", {"query": "droppings", "filters": {"kind": "animal"}})
check("search with a metadata filter", st == 200 and len(j["hits"]) >= 1 and
      all(x["doc_id"] == doc2 for x in j["hits"]), j)
st, h, j = jreq(srv, "DELETE", "/v1/documents/%d" % doc2)
check("delete document", st == 200 and j.get("deleted") == doc2)
expect_error(srv, "get a deleted document", "GET", "/v1/documents/%d" % doc2, None, 404)
expect_error(srv, "delete it again", "DELETE", "/v1/documents/%d" % doc2, None, 404)
st, h, j = jreq(srv, "POST", "/v1/search", {"query": "wombats cube droppings", "mode": "vector"})
check("a deleted document leaves the index", st == 200 and
      all(x["doc_id"] != doc2 for x in j["hits"]), j)

# where vector search runs: serve asks for "auto" unless told; without a
# usable GPU (or below the mirror's threshold) the CPU index answers, with a
# reason, and every search is counted on the device that ran it
st, h, j = jreq(srv, "GET", "/v1/status")
ix = j.get("index", {}) if st == 200 else {}
want_asked = os.environ.get("NANORAG_DEVICE") or "auto"
check("status: the index device asked for is the default (%s)" % want_asked,
      ix.get("device_asked") == want_asked, ix)
check("status: vector index on the CPU here, the reason given",
      ix.get("device") == "cpu" and ix.get("gpu_bytes") == 0 and ix.get("note"), ix)
check("status: index counts and bytes", ix.get("vectors", 0) >= 1 and ix.get("bytes", 0) > 0 and
      ix.get("gpu_min_vectors") == 50000, ix)
_, _, m = req(srv, "GET", "/metrics")
m = m.decode()
check("metrics: vector searches by device", (metric(m, 'nanorag_vector_searches_total{device="cpu"}')
                                             or 0) >= 3 and
      metric(m, 'nanorag_vector_searches_total{device="cuda"}') == 0 and
      'nanorag_memory_bytes{component="index_gpu"} 0' in m, ix)

# ---------------------------------------------------------------- bad requests

E = "all-minilm"
json_routes = ["/api/embed", "/api/embeddings", "/api/show", "/api/generate", "/api/chat",
               "/v1/embeddings", "/v1/chat/completions", "/v1/completions", "/v1/search",
               "/v1/documents", "/v1/tokenize", "/v1/ask"]
for route in json_routes:
    expect_error(srv, "%s malformed JSON" % route, "POST", route, '{"model": "x",', 400)
    expect_error(srv, "%s body not an object" % route, "POST", route, '[1, 2]', 400)
    expect_error(srv, "%s empty body" % route, "POST", route, "", 400)
    expect_error(srv, "%s invalid UTF-8" % route, "POST", route, b'{"model": "\xff\xfe"}', 400)
    big = b'{"input": "' + b"a" * (2 << 20) + b'"}'
    st, data = raw_req(srv, b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                       b"application/json\r\nContent-Length: %d\r\n\r\n" %
                       (route.encode(), len(big)) + big)
    check("%s 2 MiB body -> 413" % route, st == 413 and b"limit" in data, st)
    st, data = raw_req(srv, b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: "
                       b"chunked\r\nConnection: close\r\n\r\n" % route.encode() +
                       b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in
                                [big[i:i + 65536] for i in range(0, len(big), 65536)]) +
                       b"0\r\n\r\n")
    check("%s 2 MiB chunked body -> 413" % route, st == 413 and b"limit" in data, st)

cases = [
    ("/api/embed", {"input": "x"}, 400, "model"),
    ("/api/embed", {"model": 5, "input": "x"}, 400, "model"),
    ("/api/embed", {"model": E}, 400, "input"),
    ("/api/embed", {"model": E, "input": 5}, 400, "input"),
    ("/api/embed", {"model": E, "input": [1, 2]}, 400, "input"),
    ("/api/embed", {"model": E, "input": []}, 400, "input"),
    ("/api/embed", {"model": E, "input": ["x"] * 257}, 413, "input"),
    ("/api/embed", {"model": E, "input": "x", "truncate": "yes"}, 400, "truncate"),
    ("/api/embed", {"model": E, "input": "x", "dimensions": 0}, 400, "dimensions"),
    ("/api/embed", {"model": E, "input": "x", "dimensions": 385}, 400, "dimensions"),
    ("/api/embed", {"model": E, "input": "x", "dimensions": -1}, 400, "dimensions"),
    ("/api/embed", {"model": E, "input": "x", "dimensions": 1e308}, 400, "dimensions"),
    ("/api/embed", {"model": E, "input": "x", "dimensions": None}, 400, "dimensions"),
    ("/api/embed", {"model": E, "input": "x", "dimensions": "8"}, 400, "dimensions"),
    ("/api/embed", {"model": E, "input": "x", "options": 3}, 400, "options"),
    ("/api/embed", {"model": "nonexistent-model", "input": "x"}, 404, "not found"),
    ("/api/embeddings", {"model": E}, 400, "prompt"),
    ("/api/embeddings", {"model": E, "prompt": ["a"]}, 400, "prompt"),
    ("/api/embeddings", {"model": "llama9:70b", "prompt": "a"}, 404, "not found"),
    ("/api/show", {}, 400, "model"),
    ("/api/show", {"model": "nonexistent-model"}, 404, "not found"),
    ("/v1/embeddings", {"input": "x"}, 400, "model"),
    ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}, 404, "does not exist"),
    ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": [[1, 2]]}, 400, "token"),
    ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": "x", "encoding_format": "int8"},
     400, "encoding_format"),
    ("/v1/embeddings", {"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 10**20}, 400,
     "dimensions"),
    ("/v1/search", {}, 400, "query"),
    ("/v1/search", {"query": ""}, 400, "query"),
    ("/v1/search", {"query": 7}, 400, "query"),
    ("/v1/search", {"query": "x", "k": 0}, 400, "'k'"),
    ("/v1/search", {"query": "x", "k": -1}, 400, "'k'"),
    ("/v1/search", {"query": "x", "k": 201}, 400, "'k'"),
    ("/v1/search", {"query": "x", "k": 1e308}, 400, "'k'"),
    ("/v1/search", {"query": "x", "k": 2.5}, 400, "'k'"),
    ("/v1/search", {"query": "x", "k": "5"}, 400, "'k'"),
    ("/v1/search", {"query": "x", "k": None}, 400, "'k'"),
    ("/v1/search", {"query": "x", "mode": "fuzzy"}, 400, "mode"),
    ("/v1/search", {"query": "x", "collection": "../etc"}, 400, "collection"),
    ("/v1/search", {"query": "x", "min_score": 2}, 400, "min_score"),
    ("/v1/search", {"query": "x", "doc_id": 0}, 400, "doc_id"),
    ("/v1/search", {"query": "x", "filters": {"a": 1, "b": 2}}, 400, "filters"),
    ("/v1/search", {"query": "x", "filters": {"a": [1]}}, 400, "filter"),
    ("/v1/documents", {"title": "no text"}, 400, "text"),
    ("/v1/documents", {"text": 5}, 400, "text"),
    ("/v1/documents", {"text": "x", "collection": "bad name!"}, 400, "collection"),
    ("/v1/documents", {"text": "x", "metadata": [1]}, 400, "metadata"),
    ("/v1/documents", {"text": "x", "format": "pdf"}, 400, "format"),
    ("/v1/documents", {"text": "   "}, 422, "empty"),
    ("/v1/tokenize", {"model": E}, 400, "text"),
    ("/v1/tokenize", {"model": "nonexistent-model", "text": "x"}, 404, "not found"),
]
for route, body, status, needle in cases:
    expect_error(srv, "%s %s" % (route, json.dumps(body)[:60]), "POST", route, body, status,
                 needle=needle)

body, ct = multipart([("collection", None, b"x")])
expect_error(srv, "multipart upload without a file", "POST", "/v1/documents", body, 400,
             {"Content-Type": ct}, "file")
body, ct = multipart([("file", "a.bin", b"\x00\x01\x02binary\x00" * 10)])
expect_error(srv, "multipart upload of a binary file", "POST", "/v1/documents", body, 422,
             {"Content-Type": ct}, "binary")
body, ct = multipart([("file", "a.txt", b"hello"), ("path", None, b"/etc/passwd")])
expect_error(srv, "multipart upload with an unknown field (no server paths)", "POST",
             "/v1/documents", body, 400, {"Content-Type": ct}, "unknown form field")

for bad in ("abc", "0", "01", "-1", "1.5", "99999999999999999999", "1%20"):
    expect_error(srv, "document id '%s'" % bad, "GET", "/v1/documents/" + bad, None, 400)
expect_error(srv, "document id past the last", "GET", "/v1/documents/987654", None, 404)
expect_error(srv, "nested path under an id", "GET", "/v1/documents/1/chunks", None, 404)
expect_error(srv, "unknown route", "GET", "/api/pull", None, 404)
expect_error(srv, "unknown route POST", "POST", "/v2/whatever", "{}", 404)
h = expect_error(srv, "wrong method on /api/embed", "GET", "/api/embed", None, 405)
check("405 names the allowed method", h.get("allow") == "POST", h.get("allow"))
expect_error(srv, "wrong method on /api/tags", "POST", "/api/tags", "{}", 405)
expect_error(srv, "list: bad limit", "GET", "/v1/documents?limit=0", None, 400)
expect_error(srv, "list: bad collection", "GET", "/v1/documents?collection=%2Fetc", None, 400)

# a header block beyond the cap: 431 (or the connection closed), never a crash
try:
    st, h, data = req(srv, "GET", "/health", headers={"X-Big": "a" * (100 << 10)})
except (ConnectionError, http.client.HTTPException):
    st = 431
check("100 KiB header refused (431)", st in (413, 431), st)

# random bodies on every JSON route (fixed seed): never a 5xx other than 503,
# every error a JSON error, the server alive afterwards (RELIABILITY A4)
import random  # noqa: E402
rnd = random.Random(5)
FKEYS = ["model", "input", "prompt", "query", "k", "mode", "collection", "doc_id", "filters",
         "min_score", "text", "title", "metadata", "source", "format", "messages", "options",
         "stream", "dimensions", "truncate", "encoding_format", "question", "history",
         "max_tokens", "n", "stop", "name", "role", "content"]


def fval(d=0):
    kinds = [lambda: rnd.choice([0, -1, 1, 2**63, -2**63, 1e308, -1e308, 0.5, 256, 257, 10**20]),
             lambda: rnd.choice(["", "all-minilm", "x" * rnd.randrange(300), "\u0000", "héllo",
                                 "../../etc/passwd", "vector", "base64", "user", "markdown"]),
             lambda: None, lambda: rnd.choice([True, False]), lambda: rnd.randrange(-5, 300),
             lambda: [fval(d + 1) for _ in range(rnd.randrange(5))],
             lambda: {rnd.choice(FKEYS): fval(d + 1) for _ in range(rnd.randrange(4))}]
    return kinds[rnd.randrange(len(kinds) if d < 3 else 5)]()


fuzz_bad = []
for i in range(400):
    route = rnd.choice(json_routes)
    body = {rnd.choice(FKEYS): fval() for _ in range(rnd.randrange(6))}
    if rnd.random() < 0.4:
        body["model"] = rnd.choice(["all-minilm", "all-MiniLM-L6-v2"])
    data = json.dumps(body).encode()
    if rnd.random() < 0.15:
        data = bytearray(data)
        for _ in range(rnd.randrange(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        data = bytes(data)
    st, h, out = req(srv, "POST", route, data)
    if (st >= 500 and st != 503) or (st not in (200, 201) and not is_json_error(out)):
        fuzz_bad.append((st, route, data[:120], out[:120]))
check("400 random bodies: no 5xx, every error JSON", not fuzz_bad, fuzz_bad[:3])
st, h, _ = req(srv, "GET", "/health")
check("alive after the random bodies", st == 200)

# a client that never finishes its headers is dropped after 10 s of silence,
# and does not hold up anyone else meanwhile (RELIABILITY F17)
slow = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
slow.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
t0 = time.time()
st, h, _ = req(srv, "GET", "/health")
check("a stalled client does not block others", st == 200 and time.time() - t0 < 1.0)
try:
    got = slow.recv(4096)
except (ConnectionResetError, socket.timeout):
    got = b""
dt = time.time() - t0
check("stalled headers: connection dropped after ~10 s (%.1f s)" % dt,
      got in (b"",) or got.startswith(b"HTTP/1.1 408"), (got[:60], dt))
check("stalled headers: dropped in 8-20 s", 8 <= dt <= 20, dt)
slow.close()

# ---------------------------------------------------------------- Host / Origin

port = srv.port
for host, want in (("localhost:%d" % port, 200), ("127.0.0.1:%d" % port, 200),
                   ("[::1]:%d" % port, 200), ("evil.example:%d" % port, 403),
                   ("127.0.0.1.evil.example", 403)):
    st, h, data = req(srv, "GET", "/api/tags", headers={"Host": host})
    check("Host %s -> %d" % (host, want), st == want and (want == 200 or is_json_error(data)),
          st)
for origin, want in (("http://localhost:3000", 200), ("http://127.0.0.1", 200),
                     ("https://evil.example", 403), ("null", 403), ("file://", 403)):
    st, h, data = req(srv, "GET", "/api/tags", headers={"Origin": origin})
    check("Origin %s -> %d" % (origin, want), st == want, st)

st, h, data = req(srv, "POST", "/api/generate", {"model": "x", "prompt": "hi"})
check("no generator: generation routes answer 503", st == 503 and is_json_error(data), st)
rc = srv.stop()
check("server stops cleanly on SIGTERM", rc == 0, rc)

# ---------------------------------------------------------------- API key, listen

srv = Server("--api-key", "s3cret", "--llm", "none", "--allow-host", "nanorag.lan")
expect_error(srv, "no key", "GET", "/api/tags", None, 401)
expect_error(srv, "wrong key", "GET", "/api/tags", None, 401, {"Authorization": "Bearer s3cre"})
expect_error(srv, "key without Bearer", "GET", "/api/tags", None, 401,
             {"Authorization": "s3cret"})
expect_error(srv, "unknown route without a key", "GET", "/nope", None, 401)
st, h, _ = req(srv, "GET", "/api/tags", headers={"Authorization": "Bearer s3cret"})
check("right key -> 200", st == 200)
st, h, _ = req(srv, "GET", "/health")
check("/health needs no key", st == 200)
st, h, _ = req(srv, "GET", "/api/tags", headers={"Authorization": "Bearer s3cret",
                                                  "Host": "nanorag.lan:8080"})
check("--allow-host name accepted", st == 200)
c = ollama.Client(host=srv.url, headers={"Authorization": "Bearer s3cret"})
check("ollama client with the key", len(c.embed(model=E, input="x").embeddings[0]) == 384)
c = openai.OpenAI(base_url=srv.url + "/v1", api_key="s3cret", max_retries=0)
check("openai client with the key", len(c.embeddings.create(model=E, input="x").data) == 1)
try:
    openai.OpenAI(base_url=srv.url + "/v1", api_key="nope", max_retries=0).models.list()
    check("openai client with a wrong key raises 401", False)
except openai.AuthenticationError:
    check("openai client with a wrong key raises 401", True)
srv.stop()

srv = Server("--llm", "none", "--max-connections", "4")
socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]
time.sleep(0.2)
expect_error(srv, "a 5th connection past --max-connections 4", "GET", "/api/tags", None, 503)
for s_ in socks:
    s_.close()
time.sleep(0.2)
st, h, _ = req(srv, "GET", "/api/tags")
check("connections free again -> 200", st == 200, st)
srv.stop()

with tempfile.TemporaryDirectory() as cwd:
    r = subprocess.run([NR, "serve", "--listen", "0.0.0.0:0", "--llm", "none"],
                       capture_output=True, timeout=60, cwd=cwd,
                       env={k: v for k, v in os.environ.items()
                            if k not in ("NANORAG_API_KEY", "NANORAG_DATA")})
    check("non-loopback listen without a key is refused, before a store is created",
          r.returncode != 0 and b"API key" in r.stderr and not os.listdir(cwd),
          (r.stderr, os.listdir(cwd)))
for bad in (["--device", "tpu"], ["--gpu-index-min", "-1"], ["--gpu-index-min", "x"]):
    r = subprocess.run([NR, "serve", "--listen", "127.0.0.1:0", "--llm", "none"] + bad,
                       capture_output=True, timeout=60)
    check("serve %s is refused, naming the option" % " ".join(bad),
          r.returncode != 0 and bad[0].encode() in r.stderr, r.stderr)

# ---------------------------------------------------------------- generation


def ndjson(srv, path, body):
    st, h, data = req(srv, "POST", path, body)
    return st, h, [json.loads(x) for x in data.decode().splitlines() if x.strip()]


def generation_tests(srv, model):
    G = {"temperature": 0, "num_predict": 12}  # the rest: server defaults, as OpenAI requests get
    msgs = [{"role": "user", "content": "Name three colours."}]
    oc = ollama.Client(host=srv.url)
    oa = openai.OpenAI(base_url=srv.url + "/v1", api_key="unused", max_retries=0)

    g1 = oc.generate(model=model, prompt="The capital of France is", options=G)
    g2 = oc.generate(model=model, prompt="The capital of France is", options=G)
    check("generate (greedy) is deterministic and not empty", g1.response == g2.response and
          len(g1.response) > 0, (g1.response, g2.response))
    check("generate: done_reason, counts and ns timings",
          g1.done and g1.done_reason in ("stop", "length") and 0 < g1.eval_count <= 12 and
          g1.prompt_eval_count > 0 and g1.total_duration >= g1.eval_duration > 0, g1)
    parts = list(oc.generate(model=model, prompt="The capital of France is", options=G,
                             stream=True))
    check("generate stream: pieces join to the same text, last is done",
          "".join(p.response for p in parts) == g1.response and parts[-1].done and
          all(not p.done for p in parts[:-1]), [p.response for p in parts])

    c1 = oc.chat(model=model, messages=msgs, options=G)
    parts = list(oc.chat(model=model, messages=msgs, options=G, stream=True))
    check("chat stream == chat", "".join(p.message.content for p in parts) == c1.message.content
          and len(c1.message.content) > 0 and parts[-1].done_reason == c1.done_reason,
          (c1.message.content, [p.message.content for p in parts]))
    o1 = oa.chat.completions.create(model=model, messages=msgs, temperature=0, max_tokens=12)
    check("openai chat (greedy) == ollama chat", o1.choices[0].message.content ==
          c1.message.content, (o1.choices[0].message.content, c1.message.content))
    check("openai chat: finish_reason and usage", o1.choices[0].finish_reason in
          ("stop", "length") and o1.usage.completion_tokens == c1.eval_count, o1)
    chunks = list(oa.chat.completions.create(model=model, messages=msgs, temperature=0,
                                             max_tokens=12, stream=True,
                                             stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    check("openai chat stream == not streamed, usage chunk last",
          text == o1.choices[0].message.content and chunks[-1].usage is not None, text)
    st, h, data = req(srv, "POST", "/v1/chat/completions", {"model": model, "messages": msgs,
                                                            "max_tokens": 4, "stream": True})
    check("SSE: data: lines ending with data: [DONE]", st == 200 and
          h.get("content-type", "").startswith("text/event-stream") and
          data.decode().rstrip().endswith("data: [DONE]"), data[-200:])
    cp = oa.completions.create(model=model, prompt="The capital of France is", temperature=0,
                               max_tokens=12)
    raw = oc.generate(model=model, prompt="The capital of France is", raw=True, options=G)
    check("openai completions == ollama raw generate", cp.choices[0].text == raw.response,
          (cp.choices[0].text, raw.response))

    # ask with citations
    st, h, j = jreq(srv, "POST", "/v1/documents", {"text": "The Zorblat festival takes place "
                                                   "every March in the town of Quillby. "
                                                   "Visitors eat blue pancakes.",
                                                   "title": "Zorblat"})
    st, h, lines = ndjson(srv, "/v1/ask", {"question": "When is the Zorblat festival?",
                                           "options": {"num_predict": 24}})
    last = lines[-1] if lines else {}
    check("ask streams answer pieces then the sources", st == 200 and len(lines) >= 2 and
          all(x.get("type") == "answer" for x in lines[:-1]) and last.get("type") == "sources",
          lines[-2:])
    check("ask: the uploaded passage is source [1]", any(
        x["doc_id"] == j.get("id") and x["number"] == 1 for x in last.get("sources", [])), last)
    st, h, a = jreq(srv, "POST", "/v1/ask", {"question": "When is the Zorblat festival?",
                                            "stream": False, "options": {"num_predict": 24}})
    check("ask (not streamed) gives the same answer",
          st == 200 and a.get("answer") == "".join(x["text"] for x in lines[:-1]), a)

    # bad generation requests
    for path, body, status in [
            ("/api/generate", {"prompt": "x"}, 400),
            ("/api/generate", {"model": "llama9:70b", "prompt": "x"}, 404),
            ("/api/generate", {"model": "all-minilm", "prompt": "x"}, 400),
            ("/api/generate", {"model": model, "prompt": 5}, 400),
            ("/api/generate", {"model": model, "prompt": "x", "stream": "no"}, 400),
            ("/api/generate", {"model": model, "prompt": "x", "options": []}, 400),
            ("/api/generate", {"model": model, "prompt": "x", "options": {"temperature": "hot"}},
             400),
            ("/api/generate", {"model": model, "prompt": "x", "options": {"num_predict": 1e308}},
             400),
            ("/api/generate", {"model": model, "prompt": "x", "options": {"top_p": 2}}, 400),
            ("/api/generate", {"model": model, "prompt": "x", "options": {"stop": [1]}}, 400),
            ("/api/generate", {"model": model, "prompt": "x", "images": ["aGk="]}, 400),
            ("/api/generate", {"model": model, "prompt": "x" * 300000}, 413),
            ("/api/chat", {"model": model}, 400),
            ("/api/chat", {"model": model, "messages": "hi"}, 400),
            ("/api/chat", {"model": model, "messages": []}, 400),
            ("/api/chat", {"model": model, "messages": [{"role": "wizard", "content": "x"}]}, 400),
            ("/api/chat", {"model": model, "messages": [{"role": "user"}]}, 400),
            ("/api/chat", {"model": model, "messages": [{"role": "user", "content": 3}]}, 400),
            ("/api/chat", {"model": model, "messages": msgs, "tools": [{"type": "function"}]},
             400),
            ("/v1/chat/completions", {"messages": msgs}, 400),
            ("/v1/chat/completions", {"model": "gpt-4o", "messages": msgs}, 404),
            ("/v1/chat/completions", {"model": model, "messages": msgs, "n": 2}, 400),
            ("/v1/chat/completions", {"model": model, "messages": msgs, "temperature": 3}, 400),
            ("/v1/chat/completions", {"model": model, "messages": msgs, "max_tokens": 0}, 400),
            ("/v1/chat/completions", {"model": model, "messages": msgs, "max_tokens": -1}, 400),
            ("/v1/chat/completions", {"model": model, "messages": msgs, "stop": ["a"] * 20}, 400),
            ("/v1/completions", {"model": model}, 400),
            ("/v1/completions", {"model": model, "prompt": ["a", "b"]}, 400),
            ("/v1/ask", {}, 400),
            ("/v1/ask", {"question": ""}, 400),
            ("/v1/ask", {"question": "x", "k": 0}, 400),
            ("/v1/ask", {"question": "x", "history": "no"}, 400)]:
        expect_error(srv, "%s %s" % (path, json.dumps(body)[:70]), "POST", path, body, status)

    # overload (1 slot, no queue): 503 + Retry-After at once; an aborted stream frees the slot
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=120)
    c.request("POST", "/api/chat", json.dumps({"model": model, "messages": msgs,
                                               "options": {"num_predict": 400}}))
    r = c.getresponse()
    first = r.readline()
    t0 = time.time()
    st, h, data = req(srv, "POST", "/api/chat", {"model": model, "messages": msgs,
                                                 "stream": False})
    dt = time.time() - t0
    check("busy: 503 with Retry-After, answered in %.0f ms" % (dt * 1e3),
          st == 503 and h.get("retry-after") and is_json_error(data) and dt < 1.0, (st, data))
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    t0 = time.time()
    running = 1
    while time.time() - t0 < 5 and running:
        _, _, m = req(srv, "GET", "/metrics")
        running = metric(m.decode(), 'nanorag_queue_depth{queue="generate_running"}')
        if running:
            time.sleep(0.02)
    dt = time.time() - t0
    check("aborted stream frees its slot (%.0f ms)" % (dt * 1e3), running == 0 and dt < 2.0,
          running)
    st, h, data = req(srv, "POST", "/api/chat", {"model": model, "messages": msgs,
                                                 "stream": False, "options": {"num_predict": 2}})
    check("the next request gets the slot", st == 200, (st, data[:200]))

    # Ollama backend: a second nanorag (A) generating through this kind of
    # server (B); B is killed mid-answer, so A's stream must end with one
    # error line
    b = Server("--slots", "1", *gspec)
    a = Server("--llm", "ollama:%s@%s" % (model, b.url))
    try:
        ca = ollama.Client(host=a.url)
        viaa = ca.chat(model=model, messages=msgs, options=G)
        check("A with B as its Ollama backend: same greedy answer", viaa.message.content ==
              c1.message.content, (viaa.message.content, c1.message.content))
        c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=120)
        c.request("POST", "/api/chat", json.dumps({"model": model, "messages": msgs,
                                                   "options": {"num_predict": 400}}))
        r = c.getresponse()
        first = json.loads(r.readline())
        b.proc.kill()
        rest = [json.loads(x) for x in r.read().decode().splitlines() if x.strip()]
        check("backend killed mid-stream: the stream ends with one error line",
              "message" in first and rest and "error" in rest[-1] and
              all("error" not in x for x in rest[:-1]), rest[-2:])
    finally:
        a.stop()
        b.stop()


# the default generator (the local model), or another spec for manual runs
gspec = ["--llm", os.environ["NR_TEST_LLM_SPEC"]] if os.environ.get("NR_TEST_LLM_SPEC") else []
gsrv = Server("--slots", "1", "--queue", "0", *gspec)
st, h, j = jreq(gsrv, "GET", "/health")
if j.get("generator"):
    _, _, t = jreq(gsrv, "GET", "/v1/models")
    gmodel = [m["id"] for m in t["data"] if m["id"] != "all-MiniLM-L6-v2"][0]
    try:
        generation_tests(gsrv, gmodel)
    except Exception as ex:  # a client exception is a failure, not a crash of the suite
        check("generation tests ran to the end", False, repr(ex))
else:
    skip("generation tests", "the server has no generator (no local model in this build)")
rc = gsrv.stop()
check("generating server stops cleanly", rc == 0, rc)

finish()
