#!/usr/bin/env bash
# Issue 6 on a machine with an NVIDIA GPU, in one call: build with CUDA, the
# GPU tests under ctest, compute-sanitizer memcheck and racecheck,
# bench_gpu_embed, bench_retrieve (CPU index vs GPU mirror, 100k and 1M
# vectors), a per-kernel profile (ncu) and sentence-transformers fp16 side by
# side on the same GPU and inputs.
#
#   bench/run_gpu.sh [OUTDIR]            (default out/gpu; logs land there)
#
# NR_PREBUILT=1 uses an existing build-cuda (built elsewhere with the same
# CUDA major version) instead of building. Needs models/all-MiniLM-L6-v2
# (model-f16.gguf and the tokenizer/config files), nvidia-smi, and for the
# side-by-side python3 with torch + sentence-transformers. Each step has a
# time limit so one slow step cannot eat the others.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-out/gpu}
mkdir -p "$out"
model=models/all-MiniLM-L6-v2
step() { printf '\n== %s\n' "$*"; }

step "machine"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader
  echo "commit $(cat COMMIT 2>/dev/null || git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "cpu $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) threads"
} | tee "$out/bench.log"

if [ "${NR_PREBUILT:-0}" != 1 ] || [ ! -x build-cuda/test_gpu_embed ]; then
  step "build"
  if ! { cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DNR_CUDA=ON &&
         cmake --build build-cuda -j"$(nproc)" --target test_gpu_embed test_gpu_index test_gpu_retrieve bench_gpu_embed \
           bench_retrieve nanorag; } \
       >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log"
    exit 1
  fi
fi

if [ -x build-cuda/nanorag ] && ! ldd build-cuda/nanorag | grep -q "not found"; then
  step "nanorag status --device cuda"
  timeout 60 build-cuda/nanorag status --device cuda --model "$model/model-f16.gguf" 2>&1 |
    sed -n '/^gpu/,$p' | tee -a "$out/bench.log"
fi

step "ctest: GPU tests"
timeout 150 ctest --test-dir build-cuda -R test_gpu_ -V 2>&1 | tee "$out/ctest.log"

step "bench_gpu_embed"
timeout 150 build-cuda/bench_gpu_embed --model "$model/model-f16.gguf" 2>&1 | tee -a "$out/bench.log"

step "bench_retrieve: one search end to end, CPU index vs GPU mirror"
for n in 100000 1000000; do
  timeout 200 build-cuda/bench_retrieve --model "$model/model-f16.gguf" --vectors $n \
    --db "${TMPDIR:-/tmp}/nanorag-bench-retrieve.db" 2>&1 | grep -v building | tee -a "$out/bench.log"
done

step "sentence-transformers fp16, same GPU"
HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 timeout 150 python3 bench/st_bench_gpu.py "$model" \
  --batches 2 2>&1 | grep -v Warning | tee "$out/st.log"

step "per-kernel profile: ncu, one batch of 128 chunks x 128 tokens"
if command -v ncu >/dev/null; then
  timeout 100 ncu --clock-control none --metrics gpu__time_duration.sum --csv \
    build-cuda/bench_gpu_embed --model "$model/model-f16.gguf" --profile >"$out/ncu.csv" 2>&1
  python3 - "$out/ncu.csv" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows:
    print("no ncu rows"); sys.exit()
h = rows[0]; k = h.index("Kernel Name"); v = h.index("Metric Value"); u = h.index("Metric Unit")
t = collections.defaultdict(float); n = collections.Counter()
for r in rows[1:]:
    try:
        x = float(r[v].replace(",", ""))
    except ValueError:
        continue
    x *= {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3}.get(r[u], 1.0)
    name = r[k].split("(")[0][:60]; t[name] += x; n[name] += 1
tot = sum(t.values())
print("%-60s %6s %10s %6s" % ("kernel", "calls", "us", "%"))
for name, x in sorted(t.items(), key=lambda a: -a[1]):
    print("%-60s %6d %10.1f %5.1f%%" % (name, n[name], x, 100 * x / tot))
print("total kernel time %.1f us for 16384 tokens" % tot)
PY
fi

# memcheck with cuBLASLt as the product runs in production. racecheck with
# the reference GEMM kernel (NANORAG_GPU_GEMM=reference), so every kernel is
# ours: racecheck cannot follow cuBLASLt's Hopper GEMMs (TMA / mbarrier
# pipelines) -- unfiltered it reports them and crawls, and with a kernel
# filter it failed with "Internal Sanitizer Error" (H100, 2026-11-25).
step "compute-sanitizer memcheck (test_gpu_embed, NR_TEST_QUICK)"
NR_TEST_QUICK=1 timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
  build-cuda/test_gpu_embed >"$out/memcheck.log" 2>&1
echo "memcheck exit $?"
timeout 100 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/test_gpu_index \
  >>"$out/memcheck.log" 2>&1
echo "memcheck (test_gpu_index) exit $?"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 build-cuda/test_gpu_retrieve \
  >>"$out/memcheck.log" 2>&1
echo "memcheck (test_gpu_retrieve) exit $?"
grep -E "ERROR SUMMARY|passed|Invalid" "$out/memcheck.log" | head -20
step "compute-sanitizer racecheck (test_gpu_embed, NR_TEST_QUICK, reference GEMM)"
NANORAG_GPU_GEMM=reference NR_TEST_QUICK=1 timeout 300 compute-sanitizer --tool racecheck \
  --racecheck-report all --error-exitcode 9 build-cuda/test_gpu_embed >"$out/racecheck.log" 2>&1
echo "racecheck exit $?"
grep -E "RACECHECK SUMMARY|ERROR SUMMARY|passed|Race|Hazard|Internal" "$out/racecheck.log" | head -20
