#!/usr/bin/env bash
# Builds every xbuf library and program with clang and -Wthread-safety
# -Werror, so a guarded member touched without its lock, or a helper called
# without the lock it requires, fails the build (core/thread_annotations.hpp).
# Tests and benchmarks are left out: the rules live in the libraries.
#
#   scripts/check-thread-safety.sh     build in build-tsa/
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

CC=clang CXX=clang++ cmake -S . -B build-tsa -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DXBUF_WERROR=ON -DXBUF_THREAD_SAFETY=ON -DXBUF_BUILD_TESTS=OFF -DXBUF_BUILD_BENCH=OFF
cmake --build build-tsa -j "$(nproc)"
echo "check-thread-safety: clang -Wthread-safety -Werror build passed"
