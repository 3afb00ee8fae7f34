#!/usr/bin/env bash
# Every GPU check of xbuf, as one prepared command for a machine with an
# NVIDIA GPU that has nvcc, python3 with torch, CMake and ninja but none of
# xbuf's Debian dependencies (Boost, hwloc, libpciaccess, GoogleTest) and
# no network.
#
#   scripts/device-check.sh --prepare   here (Debian, dependencies installed):
#                                       builds build-device/ and stages the
#                                       binaries with their shared libraries
#                                       in device/ (ignored by git; carry it)
#   scripts/device-check.sh             there: runs every check from device/,
#                                       writes $OUT/device-summary.txt
#                                       (device/ without $OUT)
#
# Each check runs under its own timeout (the whole run stays under 8
# minutes) and ends as one summary line: PASS, FAIL, SKIP (why) or MISSING
# (what xbuf does not have yet). Exits 1 if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."

stage=device
binaries=(xbufd xbuf gpu_backend_test backend_conformance_test cuda_backend_test xbuf_backend_fd_helper
  copy_bandwidth_bench small_alloc_bench gpu_alloc_bench allocator_suite_test cuda_vram_test)

prepare() {
  scripts/install-deps.sh
  # RelWithDebInfo (-O2), the build CI checks warning-free (GCC 12's -O3
  # reports -Wrestrict in libstdc++'s own string code); stripped below.
  cmake -S . -B build-device -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXBUF_WERROR=ON \
    -DXBUF_ENABLE_CUDA=ON -DXBUF_ENABLE_HIP=OFF -DXBUF_BUILD_TESTS=ON -DXBUF_BUILD_BENCH=ON
  cmake --build build-device -j "$(nproc)" --target "${binaries[@]}" xbuf_shared
  rm -rf "$stage"
  mkdir -p "$stage/bin" "$stage/lib"
  for b in "${binaries[@]}"; do
    cp "build-device/bin/$b" "$stage/bin/"
  done
  cp -P build-device/lib/libxbuf.so* "$stage/lib/"
  # The shared libraries they need beyond the C library and the loader:
  # the other machine has no hwloc, pciaccess, benchmark; its libstdc++
  # may be older than the one these were built with.
  for f in "$stage"/bin/* "$stage"/lib/libxbuf.so.0; do
    ldd "$f" | awk '/=> \//{print $3}'
  done | sort -u | while read -r lib; do
    case "$(basename "$lib")" in
      libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libxbuf.so*) ;;
      *) cp -L "$lib" "$stage/lib/" ;;
    esac
  done
  strip --strip-unneeded "$stage"/bin/* "$stage"/lib/*.so* 2>/dev/null || true
  cp -r python tests/torch "$stage/"
  du -sh "$stage"
  echo "device-check: staged in $stage/ (carry it); run scripts/device-check.sh there"
}

summary=""
failed=0
record() {  # STATUS NAME DETAIL
  printf '%-8s %-34s %s\n' "$1" "$2" "$3" | tee -a "$summary"
  [ "$1" = FAIL ] && failed=1
  return 0
}

# run_check NAME SECONDS COMMAND...: PASS/FAIL by exit status; the log
# goes next to the summary. A gtest run whose every case skipped is SKIP.
run_check() {
  local name=$1 secs=$2
  shift 2
  local log="$out/$name.log"
  local rc=0
  timeout "$secs" "$@" >"$log" 2>&1 || rc=$?
  if [ $rc -eq 124 ]; then
    record FAIL "$name" "timed out after ${secs}s (log: $name.log)"
  elif [ $rc -ne 0 ]; then
    record FAIL "$name" "exit $rc: $(grep -m1 -E 'Failure|FAILED|error' "$log" || tail -1 "$log")"
  elif grep -q '\[  SKIPPED \]' "$log" && ! grep -q '\[       OK \]' "$log"; then
    record SKIP "$name" "$(grep -m1 -A1 'Skipped' "$log" | tail -1)"
  elif grep -q 'skipped:' "$log"; then
    record SKIP "$name" "$(grep -m1 'skipped:' "$log")"
  else
    record PASS "$name" "$(grep -m1 -E 'PASSED|ok:|ratio' "$log" || tail -1 "$log")"
  fi
}

run() {
  if [ ! -x "$stage/bin/xbufd" ]; then
    echo "device-check: no $stage/bin/xbufd: run 'scripts/device-check.sh --prepare' on a Debian machine and carry $stage/" >&2
    exit 2
  fi
  out="${OUT:-$stage}"
  mkdir -p "$out"
  summary="$out/device-summary.txt"
  : >"$summary"
  export LD_LIBRARY_PATH="$PWD/$stage/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export XBUF_BIN_DIR="$PWD/$stage/bin"
  export XBUF_LIBRARY="$PWD/$stage/lib/libxbuf.so.0"
  local start
  start=$(date +%s)
  {
    echo "xbuf device check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    if command -v nvidia-smi >/dev/null; then
      nvidia-smi -L 2>&1 || true
      nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | sed 's/^/driver /' || true
    else
      echo "nvidia-smi: not available"
    fi
  } | tee -a "$summary"
  local bin="$stage/bin"
  run_check gpu_runtime_cuda 90 "$bin/gpu_backend_test" --gtest_filter='Runtime/*cuda*:*Cuda*'
  run_check conformance_cuda 120 "$bin/backend_conformance_test" --gtest_filter='*cuda*'
  run_check cuda_backend 90 "$bin/cuda_backend_test"
  run_check allocator_suite_sim 90 "$bin/allocator_suite_test"
  run_check vmm_import_through_xbufd 120 "$bin/cuda_vram_test" --gtest_filter='*ASecondProcessReads*'
  run_check stable_address_cuda 180 "$bin/cuda_vram_test" --gtest_filter='*StaysTheSameAcrossMoves*'
  if python3 -c 'import torch' 2>/dev/null; then
    XBUF_MODE=embedded XBUF_BACKEND=cuda run_check torch_embedded 150 python3 "$stage/torch/torch_allocator_check.py"
    # The same loop through a daemon on the GPU: VRAM imported by the VMM API.
    local sock="$out/xbufd-cuda.sock"
    "$bin/xbufd" --backend cuda --socket "$sock" --quiet >"$out/xbufd-cuda.log" 2>&1 &
    local dpid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.2; done
    if [ -S "$sock" ]; then
      XBUF_SOCKET="$sock" run_check torch_daemon 150 python3 "$stage/torch/torch_allocator_check.py"
    else
      record FAIL torch_daemon "xbufd --backend cuda did not start: $(tail -1 "$out/xbufd-cuda.log")"
    fi
    kill "$dpid" 2>/dev/null || true
    wait "$dpid" 2>/dev/null || true
  else
    record SKIP torch_embedded "python3 has no torch"
    record SKIP torch_daemon "python3 has no torch"
  fi
  run_check copy_bandwidth 90 "$bin/copy_bandwidth_bench"
  run_check small_alloc 60 "$bin/small_alloc_bench" --quick
  # issue 11's GPU figures: warm alloc vs cuMemAlloc/cuMemFree, evict+promote
  # vs raw copies from pinned memory (one JSON line each, ratio included).
  run_check gpu_alloc 90 "$bin/gpu_alloc_bench" --short
  for f in copy_bandwidth small_alloc gpu_alloc; do
    [ -f "$out/$f.log" ] && { echo "--- $f"; cat "$out/$f.log"; } >>"$summary"
  done
  echo "device-check: $(( $(date +%s) - start )) s; summary in $summary" | tee -a "$summary"
  exit $failed
}

case "${1:-}" in
  --prepare) prepare ;;
  "") run ;;
  *) echo "usage: scripts/device-check.sh [--prepare]" >&2; exit 2 ;;
esac
