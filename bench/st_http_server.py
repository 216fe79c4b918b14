#!/usr/bin/env python3
"""sentence-transformers behind a minimal Python HTTP server: the old stack's
embedding service reduced to its core, for the side-by-side /api/embed
benchmark (bench/run_http.sh). It answers POST /api/embed like Ollama
({"model", "input": str | [str]} -> {"embeddings": [[...]]}, L2-normalized).

    python3 bench/st_http_server.py [MODEL_DIR] --port 8091 [--threads N]

http.server's ThreadingHTTPServer, HTTP/1.1 keep-alive, one thread per
connection; the model call holds the GIL for its Python parts and runs torch's
intra-op threads for the rest, which is how such a service behaves.
"""
import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default="models/all-MiniLM-L6-v2")
    ap.add_argument("--port", type=int, default=8091)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(a.model, device="cpu")
    model.encode(["warm up"])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def reply(self, status, obj):
            data = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            if self.path != "/api/embed":
                return self.reply(404, {"error": "not found"})
            n = int(self.headers.get("Content-Length", "0"))
            try:
                body = json.loads(self.rfile.read(n))
                texts = body["input"]
                if isinstance(texts, str):
                    texts = [texts]
            except (ValueError, KeyError, TypeError):
                return self.reply(400, {"error": "bad request"})
            vecs = model.encode(texts, normalize_embeddings=True)
            self.reply(200, {"model": body.get("model", ""), "embeddings": vecs.tolist()})

    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print("st_http_server: listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
