#!/usr/bin/env bash
# README command 1: set up, build, and run nanorag on embedded defaults:
# the server on http://127.0.0.1:8080 (Ollama, OpenAI and RAG APIs), a sample
# corpus (this repository's README and docs/) ingested, and one example
# question answered with citations through the server's /v1/ask. The script
# ends with the server running in the foreground (Ctrl-C stops it).
#   scripts/start.sh [--listen HOST:PORT] [other nanorag serve options]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo
echo "== nanorag status"
build/nanorag status
echo
echo "== nanorag ingest README.md docs/ (collection \"sample\")"
build/nanorag ingest --collection sample README.md docs

args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--listen 127.0.0.1:8080)
out=$(mktemp)
trap 'rm -f "$out"' EXIT
build/nanorag serve "${args[@]}" >"$out" &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$out"' INT TERM
for _ in $(seq 600); do
    grep -q listening "$out" 2>/dev/null && break
    kill -0 $pid 2>/dev/null || { echo "start: the server did not start"; exit 1; }
    sleep 0.1
done
url=$(sed -n 's/.*listening on \(http:[^ ]*\).*/\1/p' "$out")
echo
echo "== the server is up: $url"
echo
echo "== POST $url/v1/ask {\"question\": \"What does nanorag replace?\"}"
python3 - "$url" <<'EOF'
import http.client, json, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
c.request("POST", "/v1/ask", json.dumps({"question": "What does nanorag replace?",
                                         "collection": "sample",
                                         "options": {"num_predict": 160}}),
          {"Content-Type": "application/json"})
r = c.getresponse()
if r.status != 200:
    print("(no answer: %d %s)" % (r.status, r.read().decode(errors="replace")))
    c.request("POST", "/v1/search", json.dumps({"query": "What does nanorag replace?", "k": 3}),
              {"Content-Type": "application/json"})
    for h in json.loads(c.getresponse().read())["hits"]:
        print("  %.4f  %s  %s" % (h["score"], h["source"], h["snippet"][:100].replace("\n", " ")))
    sys.exit(0)
for line in r:
    m = json.loads(line)
    if m.get("type") == "answer":
        print(m["text"], end="", flush=True)
    elif m.get("type") == "sources":
        print("\n\nsources:")
        for s in m["sources"]:
            print("  [%d]%s %s%s" % (s["number"], "*" if s["cited"] else " ", s["source"],
                                     " > " + s["heading"] if s.get("heading") else ""))
    elif "error" in m:
        print("\n(error: %s)" % m["error"])
EOF
echo
echo "== serving on $url (Ctrl-C to stop)"
wait $pid
