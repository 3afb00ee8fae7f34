#!/usr/bin/env bash
# Installs the dependencies, builds xbuf and runs its test suites.
#
#   scripts/test.sh                  plain build in build/, every test
#   scripts/test.sh --sanitize thread   ThreadSanitizer build in build-tsan/, unit, stress, integration
#   scripts/test.sh --sanitize address  ASan+UBSan build in build-asan/, unit, stress, integration
#
# GPU tests (label "gpu") skip with a reason where no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=""
if [ "${1:-}" = "--sanitize" ]; then
  sanitize="${2:?--sanitize needs 'thread' or 'address'}"
fi

scripts/install-deps.sh

jobs=$(nproc)
case "$sanitize" in
  "")      dir=build;      labels="" ;;
  thread)  dir=build-tsan; labels="unit|stress|integration" ;;
  address) dir=build-asan; labels="unit|stress|integration" ;;
  *) echo "test.sh: unknown sanitizer '$sanitize' (use thread or address)" >&2; exit 2 ;;
esac

cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DXBUF_WERROR=ON \
  -DXBUF_SANITIZE="$sanitize" -DXBUF_BUILD_BENCH="$([ -z "$sanitize" ] && echo ON || echo OFF)"
cmake --build "$dir" -j "$jobs"

export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest_args=(--test-dir "$dir" --output-on-failure -j "$jobs" --timeout 600)
[ -n "$labels" ] && ctest_args+=(-L "$labels")
ctest "${ctest_args[@]}"

# The installed libxbuf as a framework uses it (SONAME, exports, the
# CMake and pkg-config packages), and the Python binding over it against a
# real xbufd; once, on the plain build.
if [ -z "$sanitize" ]; then
  scripts/check-install.sh "$dir"
  scripts/check-python.sh "$dir"
fi
