#!/usr/bin/env python3
"""`nanorag generate` and `nanorag chat` as a user runs them, with the default
model (SmolLM2-135M-Instruct, found the way the CLI finds it).

    python3 tests/test_gen_cli.py path/to/nanorag

generate: greedy twice gives the same text; --max-tokens bounds the tokens
(counted from the statistics on stderr); --stop cuts; --raw; bad option
values exit 2 naming the option; a missing or broken model file exits 1.
chat: two turns over piped standard input, the second reusing the first
(--stats shows fewer tokens evaluated than the prompt holds); /reset.
"""
import os
import re
import signal
import subprocess
import tempfile

from nr_check import NR, ROOT, check, finish, run

# run from the source tree, as a user does: the CLI looks for models/ in the
# working directory first (all runs, Popen included, inherit it)
os.chdir(ROOT)


def stats(stderr):
    """(prompt tokens, evaluated, generated tokens, done reason) from the stats lines."""
    text = stderr.decode("utf-8", "replace")
    p = re.findall(r"prompt: (\d+) tokens \((\d+) evaluated\)", text)
    g = re.findall(r"generated: (\d+) tokens in [0-9.]+ s, [0-9.]+ tokens/s \((\w+)\)", text)
    return [(int(a), int(b), int(c), d) for (a, b), (c, d) in zip(p, g)]


GREEDY = ["--temperature", "0", "--threads", "2"]

r1 = run(["generate"] + GREEDY + ["--max-tokens", "24", "What", "is", "the", "capital", "of",
                                  "France?"])
r2 = run(["generate"] + GREEDY + ["--max-tokens", "24", "What is the capital of France?"])
check("generate: exit 0", r1.returncode == 0, r1.stderr.decode())
check("generate: some text", len(r1.stdout.strip()) > 0, repr(r1.stdout))
check("generate: greedy twice, same text", r1.stdout == r2.stdout,
      repr(r1.stdout) + " vs " + repr(r2.stdout))
s = stats(r1.stderr)
check("generate: statistics on stderr", len(s) == 1 and s[0][2] <= 24 and s[0][0] > 5,
      r1.stderr.decode())
check("generate: tokens/s printed", b"tokens/s" in r1.stderr)
print("     reply: " + r1.stdout.decode("utf-8", "replace").strip())

r = run(["generate"] + GREEDY + ["--max-tokens", "3", "--raw", "Once upon a time"])
s = stats(r.stderr)
check("generate --max-tokens 3: 3 tokens, length", r.returncode == 0 and s and s[0][2] == 3
      and s[0][3] == "length", r.stderr.decode())

# --stop: cut at the first occurrence of a piece of the full reply
full = r1.stdout.decode("utf-8").rstrip("\n")
if len(full) > 12:
    piece = full[len(full) // 2:len(full) // 2 + 4]
    r = run(["generate"] + GREEDY + ["--max-tokens", "24", "--stop", piece,
                                     "What is the capital of France?"])
    got = r.stdout.decode("utf-8").rstrip("\n")
    check("generate --stop: text cut before the stop string", got == full[:full.index(piece)],
          repr(got) + " / stop " + repr(piece))
else:
    check("generate --stop: reply long enough to test", False, repr(full))

r = run(["generate"] + GREEDY + ["--max-tokens", "8"], stdin=b"Say hello.\n")
check("generate: prompt from standard input", r.returncode == 0 and len(r.stdout.strip()) > 0,
      r.stderr.decode())

# usage errors: exit 2, the option named
for args, opt in [(["--temperature", "hot"], b"--temperature"),
                  (["--top-p", "0"], b"--top-p"),
                  (["--top-p", "1.5"], b"--top-p"),
                  (["--max-tokens", "-1"], b"--max-tokens"),
                  (["--seed", "x"], b"--seed"),
                  (["--ctx", "99999999999"], b"--ctx"),
                  (["--repeat-penalty", "0"], b"--repeat-penalty"),
                  (["--min-p", "nan"], b"--min-p")]:
    r = run(["generate"] + args + ["hi"])
    check("bad %s %s: exit 2 naming it" % (args[0], args[1]),
          r.returncode == 2 and opt in r.stderr, "%d %r" % (r.returncode, r.stderr))
r = run(["generate"], stdin=b"")
check("empty prompt on standard input: exit 2", r.returncode == 2 and b"empty" in r.stderr,
      r.stderr.decode())
r = run(["generate", "--frobnicate", "hi"])
check("unknown option: exit 2", r.returncode == 2)
r = run(["chat", "--raw"])
check("chat --raw: exit 2", r.returncode == 2)

# runtime errors: exit 1
r = run(["generate", "--model", "/nonexistent/model.gguf", "hi"])
check("missing model: exit 1 with a message", r.returncode == 1 and b"model" in r.stderr,
      r.stderr.decode())
with tempfile.NamedTemporaryFile(suffix=".gguf") as f:
    f.write(b"GGUF\x03\x00\x00\x00garbage")
    f.flush()
    r = run(["generate", "--model", f.name, "hi"])
    check("broken model file: exit 1", r.returncode == 1 and len(r.stderr) > 0, r.stderr.decode())

# chat over piped stdin: two turns, the second reuses the first
r = run(["chat", "--stats"] + GREEDY + ["--max-tokens", "24"],
        stdin=b"What is the capital of France?\nAnd of Italy?\n")
s = stats(r.stderr)
out = r.stdout.decode("utf-8", "replace")
check("chat: exit 0", r.returncode == 0, r.stderr.decode())
check("chat: two replies", len(s) == 2 and out.count("\n") >= 2, out + r.stderr.decode())
if len(s) == 2:
    check("chat: turn 2 reuses turn 1 (evaluates fewer tokens than its prompt)",
          s[1][1] < s[1][0] and s[1][0] > s[0][0], repr(s))
print("     chat: " + out.replace("\n", " | "))

# the first reply of chat equals generate's (same single user turn, greedy)
check("chat turn 1 == generate (same single user turn, greedy)", out.startswith(full),
      repr(out) + " vs " + repr(full))

r = run(["chat", "--stats"] + GREEDY + ["--max-tokens", "8"],
        stdin=b"Hello\n/reset\nHello\n/exit\nnever read\n")
s = stats(r.stderr)
check("chat /reset: same reply to the same first message", r.returncode == 0 and len(s) == 2
      and r.stdout.split(b"\n")[0] == r.stdout.split(b"\n")[1] and s[0][0] == s[1][0],
      repr(r.stdout) + repr(s))

# a line over the 1 MiB cap is refused, memory stays bounded, the chat goes on
r = run(["chat", "--stats"] + GREEDY + ["--max-tokens", "4"],
        stdin=b"x" * (3 << 20) + b"\nHello\n")
s = stats(r.stderr)
check("chat: over-long line ignored with a message, next line answered",
      r.returncode == 0 and b"ignored" in r.stderr and len(s) == 1, r.stderr.decode()[-300:])

# Ctrl-C while a reply streams stops that reply, not the chat
proc = subprocess.Popen([NR, "chat", "--stats", "--threads", "2", "--temperature", "0",
                         "--max-tokens", "200"], cwd=ROOT, stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
proc.stdin.write(b"Write a very long story about a dragon and a knight.\n")
proc.stdin.flush()
first = proc.stdout.read(1)  # the reply has started streaming
proc.send_signal(signal.SIGINT)
out, err = proc.communicate(input=b"Say hello.\n", timeout=300)
s = stats(err)
check("chat: SIGINT cancels the reply, the next turn is answered",
      proc.returncode == 0 and first and len(s) == 2 and s[0][3] == "cancel" and s[0][2] < 200
      and s[1][2] > 0, "%d %r" % (proc.returncode, s))

finish()
