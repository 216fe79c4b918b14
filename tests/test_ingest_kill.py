#!/usr/bin/env python3
"""kill -9 during a continuous `nanorag ingest` (RELIABILITY C8), end to end.

    python3 tests/test_ingest_kill.py path/to/nanorag [KILLS]

A corpus of small text files is ingested over and over by the real command,
with some files rewritten before every run (so documents are added and
replaced all the time), and each run is killed with SIGKILL after a random
delay. A document is acknowledged when the command has printed its
"added"/"replaced"/"unchanged" line (printed after the commit). After every
kill the store is reopened and checked:
  - `nanorag docs check`: SQLite integrity, FTS index, chunk counts, every
    chunk has its vector and its text equals its slice of the document;
  - every acknowledged document is present, and one not rewritten since it
    was acknowledged has exactly the acknowledged chunk count;
  - reopening takes < 5 s.
"""
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import nr_check
from nr_check import NR, check

nr_check.print_ok = False  # thousands of checks: print only the failures

KILLS = int(sys.argv[2]) if len(sys.argv) > 2 else 200
N_FILES = 120
SEED = int(os.environ.get("NR_KILL_SEED", time.time()))
rng = random.Random(SEED)
WORDS = ("lighthouse harbour ledger copper violet engine meadow river quartz lantern "
         "signal orchard granite beacon willow canal ember falcon cedar prism").split()


def write_doc(path, version):
    paras = []
    for p in range(rng.randint(1, 6)):
        n = rng.randint(30, 160)
        paras.append(" ".join(rng.choice(WORDS) for _ in range(n)) + ".")
    with open(path, "w") as f:
        f.write("Version %d of %s.\n\n" % (version, os.path.basename(path)) + "\n\n".join(paras))


def main():
    tmp = tempfile.mkdtemp(prefix="nr_ingest_kill_")
    corpus, data = os.path.join(tmp, "corpus"), os.path.join(tmp, "data")
    os.makedirs(corpus)
    version = {}
    for i in range(N_FILES):
        p = os.path.join(corpus, "doc%03d.txt" % i)
        version[p] = 0
        write_doc(p, 0)
    acked = {}  # path -> (version, chunks)
    env = dict(os.environ, NANORAG_LOG="error")
    line_re = re.compile(r"^(added|replaced|unchanged)\s+(\S+) \((\d+) chunks\)$")
    worst_reopen = 0.0
    kills = 0
    print("seed %d (NR_KILL_SEED repeats a run), %d kills" % (SEED, KILLS))
    t_start = time.time()
    while kills < KILLS:
        for p in rng.sample(sorted(version), 15):  # keep the ingest busy: rewrite some files
            version[p] += 1
            write_doc(p, version[p])
        proc = subprocess.Popen([NR, "ingest", "--data", data, corpus],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                text=True)
        # the files the run was started on (a kill may land before any output)
        snapshot = dict(version)
        time.sleep(rng.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        kills += 1 if proc.returncode == -signal.SIGKILL else 0
        for line in out.splitlines():
            m = line_re.match(line.strip())
            if m:
                src, ver = m.group(2), snapshot.get(m.group(2), -1)
                if m.group(1) != "unchanged":
                    acked[src] = (ver, int(m.group(3)))
                else:  # same content as stored: its chunk count is known only if we saw it
                    prev = acked.get(src)
                    acked[src] = (ver, prev[1] if prev and prev[0] == ver else -1)
        t0 = time.time()
        chk = subprocess.run([NR, "docs", "check", "--data", data], capture_output=True, text=True,
                             env=env)
        reopen = time.time() - t0
        worst_reopen = max(worst_reopen, reopen)
        check("store check after kill %d" % kills, chk.returncode == 0, chk.stderr.strip())
        lst = subprocess.run([NR, "docs", "list", "--data", data], capture_output=True, text=True,
                             env=env)
        present = {}
        for line in lst.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 5 and parts[3] == "chunks":
                present[parts[4]] = int(parts[2])
        for src, (ver, chunks) in acked.items():
            if src not in present:
                check("acknowledged %s present after kill %d" % (src, kills), False)
                continue
            if ver == version.get(src) and chunks >= 0:
                check("acknowledged %s complete" % src, present[src] == chunks,
                      "%d chunks stored, %d acknowledged" % (present[src], chunks))
        if nr_check.failed:
            break
    check("reopen under 5 s", worst_reopen < 5.0, "%.2f s" % worst_reopen)
    print("%d kills, %d documents acknowledged, worst reopen+check %.2f s, %.0f s in all"
          % (kills, len(acked), worst_reopen, time.time() - t_start))
    shutil.rmtree(tmp, ignore_errors=True)
    nr_check.finish()


if __name__ == "__main__":
    main()
