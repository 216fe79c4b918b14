#!/usr/bin/env bash
# Long fuzz runs (RELIABILITY.md A: at least 1 CPU-hour per parser, recorded).
#
#   scripts/fuzz.sh TARGET SECONDS [WORKERS]    e.g. scripts/fuzz.sh gguf 3600
#
# Builds the libFuzzer targets once (build-fuzz: clang, the whole library with
# ASan + UBSan + coverage), then runs fuzz_TARGET for SECONDS of wall time on
# WORKERS processes (default 1), starting from fuzz/corpus/TARGET (read only:
# new inputs go to out/fuzz/TARGET/corpus) with -rss_limit_mb=2048 and
# -timeout=10. Prints one summary line: executions, CPU seconds, peak corpus,
# crashes (reproducers land in out/fuzz/TARGET/; add them to fuzz/corpus/TARGET
# once fixed so the replay tests keep them). Exit 1 if anything crashed.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
t=${1:?target: gguf safetensors tok wordpiece chat chunk load llm_stream}
secs=${2:?seconds}
workers=${3:-1}
out=$here/out/fuzz/$t
mkdir -p "$out/corpus"
if [ ! -x "$here/build-fuzz/fuzz_$t" ]; then
  CC=clang cmake -S "$here" -B "$here/build-fuzz" -DNR_FUZZ=ON -DNR_CUDA=OFF \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$out/build.log" 2>&1 &&
    cmake --build "$here/build-fuzz" -j"$(nproc)" --target "fuzz_$t" >>"$out/build.log" 2>&1 ||
    { tail -20 "$out/build.log"; exit 1; }
fi
t0=$(date +%s)
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
cpu0=$(awk '{print $16+$17}' /proc/$$/stat)
par=()
[ "$workers" -gt 1 ] && par=(-jobs="$workers" -workers="$workers")
cd "$out"
"$here/build-fuzz/fuzz_$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 "${par[@]}" -artifact_prefix="$out/" \
  "$out/corpus" "$here/fuzz/corpus/$t" >"$out/run.log" 2>&1
rc=$?
# CPU time of the finished children (the fuzz workers), in clock ticks
tick=$(getconf CLK_TCK)
cpu=$(awk -v t="$tick" -v c0="$cpu0" '{printf "%.0f", ($16+$17-c0)/t}' /proc/$$/stat)
execs=$(grep -ho 'stat::number_of_executed_units: *[0-9]*' "$out"/run.log "$out"/fuzz-*.log 2>/dev/null |
        awk '{s+=$2} END {print s+0}')
# only this run's reproducers (older ones may still lie there)
crashes=$(find "$out" -maxdepth 1 -newer "$stamp" -regex '.*/\(crash\|leak\|timeout\|oom\)-.*' |
          wc -l)
echo "fuzz_$t: $(( $(date +%s) - t0 )) s wall, ${cpu} CPU s, ${execs} executions," \
     "corpus $(ls "$out/corpus" | wc -l) new + $(ls "$here/fuzz/corpus/$t" | wc -l) seed files," \
     "${crashes} crash/leak/timeout/oom files, exit $rc"
[ "$crashes" = 0 ] && [ "$rc" = 0 ]
