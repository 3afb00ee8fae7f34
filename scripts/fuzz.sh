#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang and runs each one.
#
#   scripts/fuzz.sh [SECONDS]     each target for SECONDS (default 60)
#
# Environment:
#   XBUF_FUZZ_BUILD_DIR  build directory (default build-fuzz)
#   XBUF_FUZZ_JOBS       build jobs (default: nproc)
#   XBUF_FUZZ_CRASH_DIR  where crashing inputs go (default <build>/fuzz-artifacts)
#
# Each run starts from a copy of tests/fuzz/corpus/<target> (the committed
# seeds stay as they are) under ASan, UBSan and LeakSanitizer, with
# -rss_limit_mb=2048. Prints the executions of each run and their total;
# exits non-zero when any run crashed, leaked, timed out or ran out of memory
# (libFuzzer's input is then in the crash directory).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
case "$seconds" in
  ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac
dir="${XBUF_FUZZ_BUILD_DIR:-build-fuzz}"
jobs="${XBUF_FUZZ_JOBS:-$(nproc)}"
crash_dir="${XBUF_FUZZ_CRASH_DIR:-$dir/fuzz-artifacts}"
targets=(frame_parser_fuzz handlers_fuzz)
# Per-target libFuzzer options. handlers_fuzz: clang 14's entropic schedule
# spent 60% of its time in its own feature bookkeeping (perf); without it
# the target runs twice as many inputs.
declare -A options=([frame_parser_fuzz]="" [handlers_fuzz]="-entropic=0")

scripts/install-deps.sh

# libFuzzer's runtime is its own Debian package (libclang-rt-14-dev), only
# recommended by clang: say so instead of failing with a link error later.
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' \
  >"$probe/probe.cpp"
if ! clang++ -fsanitize=fuzzer,address,undefined "$probe/probe.cpp" -o "$probe/probe" \
  2>"$probe/err"; then
  cat "$probe/err" >&2
  echo "fuzz.sh: clang++ cannot link -fsanitize=fuzzer: install libFuzzer's runtime" \
    "(Debian: libclang-rt-14-dev)" >&2
  exit 1
fi

# The whole build is coverage-instrumented (fuzzer-no-link) and sanitized,
# so libFuzzer is guided by the library code, not only by the targets. -O1
# and a Debug build type: fast enough, and the libraries' asserts stay on.
mkdir -p "$dir"
CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DCMAKE_C_FLAGS="-O1 -fsanitize=fuzzer-no-link" \
  -DCMAKE_CXX_FLAGS="-O1 -fsanitize=fuzzer-no-link" \
  -DXBUF_SANITIZE=address -DXBUF_WERROR=ON -DXBUF_BUILD_TESTS=ON -DXBUF_BUILD_BENCH=OFF \
  -DXBUF_BUILD_FUZZERS=ON >"$dir/configure.log" 2>&1 \
  || { cat "$dir/configure.log" >&2; exit 1; }
cmake --build "$dir" -j "$jobs" --target "${targets[@]}"

# A 16 MiB quarantine still catches a use after free within an input, and
# keeps LeakSanitizer's scan (run for every input that adds coverage) cheap:
# at the default 256 MiB handlers_fuzz ran a quarter of the inputs.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:quarantine_size_mb=16"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$crash_dir"
work="$dir/fuzz-runs"
total=0
failed=()
for t in "${targets[@]}"; do
  corpus="$work/$t/corpus"
  rm -rf "$work/$t"
  mkdir -p "$corpus"
  cp tests/fuzz/corpus/"$t"/* "$corpus"/
  log="$work/$t/fuzz.log"
  echo "fuzz.sh: $t for ${seconds}s (log: $log)"
  rc=0
  # shellcheck disable=SC2086  # options are words
  "$dir/bin/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
    ${options[$t]} -artifact_prefix="$crash_dir/$t-" "$corpus" >"$log" 2>&1 || rc=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)"
  execs="${execs:-0}"
  total=$((total + execs))
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    # libFuzzer ends its log with the report, the input's path and the stats.
    echo "fuzz.sh: $t FAILED (exit $rc) after $execs executions; the end of its log:" >&2
    tail -n 100 "$log" >&2
  else
    echo "fuzz.sh: $t: $execs executions, no crash"
  fi
done
echo "fuzz.sh: total: $total executions"
if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]} (inputs in $crash_dir)" >&2
  exit 1
fi
