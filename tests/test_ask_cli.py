#!/usr/bin/env python3
"""`nanorag ask` as a user runs it, on a real store with the default models:
the streamed answer then the sources, --json, the no-answer path, bad options;
and the remote generator backends against a second nanorag acting as the
server (`nanorag serve`): "ollama:NAME@URL" (/api/chat, NDJSON) and
"openai:NAME@URL/" (/v1/chat/completions, SSE) must give the same greedy
answer as the local backend.

    python3 tests/test_ask_cli.py path/to/nanorag
"""
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

from nr_check import NR, ROOT, check, finish, run, skip

LLM = os.path.join(ROOT, "models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")


DOCS = {
    "cooking.txt": "A good risotto needs arborio rice, warm stock added one ladle at a time, "
    "and constant stirring for about eighteen minutes. Finish it with butter and parmesan.\n",
    "routers.md": "# Routers\n\nTo reset the admin password of a home router, hold the reset "
    "button on the back for ten seconds until the lights blink, then log in with the default "
    "credentials printed on the label under the device.\n",
    "mars.html": "<html><head><title>Mars</title></head><body><h1>Mars</h1><p>Mars is the "
    "fourth planet from the Sun; its red colour comes from iron oxide dust.</p></body></html>",
}
Q = "How long do I stir a risotto?"


def start_server(data):
    """`nanorag serve` on a kernel-chosen loopback port; (process, base URL) or (None, why)."""
    probe = run(["serve", "--help"], timeout=30)
    if probe.returncode != 0:
        return None, "this build has no `nanorag serve`"
    p = subprocess.Popen([NR, "serve", "--listen", "127.0.0.1:0", "--data", data,
                          "--llm", LLM],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (http://[0-9.]+:\d+)", line)
        if m:
            return p, m.group(1)
    p.kill()
    return None, "serve did not start: " + p.stderr.read()[-500:]


with tempfile.TemporaryDirectory() as d:
    corpus = os.path.join(d, "corpus")
    data = os.path.join(d, "data")
    os.mkdir(corpus)
    for name, text in DOCS.items():
        with open(os.path.join(corpus, name), "w", encoding="utf-8") as f:
            f.write(text)
    r = run(["ingest", "--data", data, corpus])
    check("ingest a small corpus", r.returncode == 0, r.stderr.decode(errors="replace"))

    # text output: the answer, then the sources, then the timing split on stderr
    r = run(["ask", "--data", data, "--max-tokens", "48", Q])
    out, err = r.stdout.decode(), r.stderr.decode()
    check("ask exits 0", r.returncode == 0, err)
    check("ask prints an answer", len(out.strip()) > 0)
    check("ask lists the cooking source", re.search(r"^\[\d+\] cooking\.txt — A good risotto", out,
                                                   re.M) is not None, out)
    check("ask prints the timing split on stderr",
          all(w in err for w in ("retrieval", "prompt", "generation", "first token")), err)

    # --json: the same answer, sources with ids, offsets and scores, timings
    r = run(["ask", "--data", data, "--max-tokens", "48", "--json", Q])
    doc = json.loads(r.stdout) if r.returncode == 0 else {}
    check("ask --json exits 0", r.returncode == 0, r.stderr.decode(errors="replace"))
    srcs = doc.get("sources", [])
    check("ask --json: cooking.txt is source 1",
          len(srcs) > 0 and srcs[0]["source"].endswith("cooking.txt") and srcs[0]["n"] == 1)
    check("ask --json: source fields",
          all(s["doc_id"] > 0 and s["end"] > s["start"] and s["vector"]["score"] >= 0.2
              for s in srcs if s["vector"]["rank"] > 0))
    check("ask --json: greedy answer equals the streamed one",
          doc.get("answer", "").strip() == out.split("\n\nsources")[0].strip(), repr(doc.get("answer")))
    local_answer = doc.get("answer")
    t = doc.get("timings", {})
    check("ask --json: timings", t.get("retrieval_s", 0) > 0 and t.get("generation_s", 0) > 0 and
          t.get("total_s", 0) >= t.get("first_token_s", 0) > 0, str(t))

    # nothing relevant: the fixed answer, no generator call (this one is unreachable)
    r = run(["ask", "--data", data, "--llm", "ollama:none@http://127.0.0.1:1",
             "What is the capital of Mongolia?"])
    check("no-answer without calling the generator",
          r.returncode == 0 and r.stdout.decode().startswith("I could not find this in the documents."),
          r.stdout.decode() + r.stderr.decode())
    check("no-answer lists no sources", "sources" not in r.stdout.decode())

    # a relevant question with that unreachable generator: a clear error naming the URL
    r = run(["ask", "--data", data, "--llm", "ollama:none@http://127.0.0.1:1", Q])
    check("unreachable generator: exit 1 and the URL",
          r.returncode == 1 and "127.0.0.1:1" in r.stderr.decode(), r.stderr.decode())

    # bad options
    for args, what in ((["--k", "0", Q], "--k"), (["--threshold", "2", Q], "--threshold"),
                       (["--llm", "ollama:x@ftp://h", Q], "http://"),
                       (["--llm", "/nonexistent.gguf", Q], "nanorag: ask")):
        r = run(["ask", "--data", data] + args)
        check("bad option " + " ".join(args[:2]),
              r.returncode != 0 and what in r.stderr.decode(), r.stderr.decode())
    r = run(["ask", "--data", data])
    check("no question: usage error", r.returncode == 2)

    # remote backends against a second nanorag acting as the server
    srv, base = start_server(data)
    if srv is None:
        skip("remote backends", base)
    else:
        try:
            info = json.load(urllib.request.urlopen(base + "/api/tags", timeout=30))
            names = [m.get("name") or m.get("model") for m in info.get("models", [])]
            name = names[0] if names else "smollm2-135m-instruct"
            for spec in ("ollama:%s@%s" % (name, base), "openai:%s@%s/" % (name, base)):
                r = run(["ask", "--data", data, "--max-tokens", "48", "--json", "--llm", spec, Q])
                rd = json.loads(r.stdout) if r.returncode == 0 else {}
                check("remote " + spec.split(":")[0] + " exits 0", r.returncode == 0,
                      r.stderr.decode(errors="replace"))
                check("remote " + spec.split(":")[0] + ": same greedy answer as local",
                      rd.get("answer") == local_answer,
                      "%r vs %r" % (rd.get("answer"), local_answer))
                check("remote " + spec.split(":")[0] + ": same sources",
                      [s["chunk_id"] for s in rd.get("sources", [])] ==
                      [s["chunk_id"] for s in srcs])
            r = run(["ask", "--data", data, "--llm", "ollama:no-such-model@" + base, Q])
            check("remote unknown model: the server's error",
                  r.returncode == 1 and "404" in r.stderr.decode(), r.stderr.decode())
        finally:
            srv.terminate()
            try:
                srv.wait(timeout=30)
            except subprocess.TimeoutExpired:
                srv.kill()

finish()
