"""The shared pieces of the Python end-to-end tests (tests/test_*.py).

Each of those tests is a plain script that ctest runs as

    python3 tests/test_NAME.py path/to/nanorag [more arguments]

so this module reads the binary's path from sys.argv[1] when it is imported.
Python puts a script's own directory first on sys.path, which is why
`import nr_check` works from any working directory (ctest runs them in the
build directory) without setting PYTHONPATH.

The output follows the C harness (tests/nr_test.h): one line a check,
"ok   NAME" or "FAIL NAME: DETAIL", "skip NAME: WHY" for what could not run,
and a closing "N passed, N failed" line (", N skipped" added when something
was skipped); the exit status is 1 when any check failed, else 0. ctest
judges a test by that status alone; the closing line is the one CI reads.

Two settings, plain module attributes set once by a test that needs them:
  print_ok    False prints only the failures (a test making thousands of checks)
  detail_max  cut a failure's detail to this many characters (None: whole)
Standard library only: CI's python3 has nothing else.
"""
import math
import os
import subprocess
import sys

if len(sys.argv) < 2:
    sys.stderr.write("usage: %s path/to/nanorag [args]\n" % sys.argv[0])
    sys.exit(2)

NR = os.path.abspath(sys.argv[1])  # absolute: a test may change directory
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

print_ok = True
detail_max = None

passed = failed = skipped = 0


def check(name, cond, detail=""):
    """Count one check; print it (a failure always, with its detail)."""
    global passed, failed
    if cond:
        passed += 1
        if print_ok:
            print("ok   " + name)
    else:
        failed += 1
        detail = str(detail)[:detail_max] if detail else ""
        print("FAIL " + name + (": " + detail if detail else ""))
    sys.stdout.flush()  # keep our lines in order with the servers' stderr


def skip(name, why):
    """Count a check that could not run here, and say why; never a pass."""
    global skipped
    skipped += 1
    print("skip " + name + ": " + why)
    sys.stdout.flush()


def finish():
    """Print the closing line and exit: 1 when any check failed, else 0."""
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    sys.stdout.flush()
    sys.exit(1 if failed else 0)


def run(args, stdin=None, timeout=300):
    """Run `nanorag ARGS...` to its end: a CompletedProcess with stdout and
    stderr as bytes; stdin is bytes or None. A run past timeout seconds
    raises subprocess.TimeoutExpired (the test fails loudly, not silently)."""
    return subprocess.run([NR] + list(args), input=stdin, capture_output=True, timeout=timeout)


def cos(a, b):
    """Cosine similarity of two equal-length vectors (0 for a zero vector)."""
    dot = sum(x * y for x, y in zip(a, b))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb + 1e-30)
