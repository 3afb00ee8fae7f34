#!/usr/bin/env bash
# Installs the dependencies, builds xbuf and runs the main job.
#
# Today the main job is the topology probe: `xbuf topo` on this machine, then
# on a saved topology of a real 16-GPU NVIDIA DGX-2 so there is a peer-to-peer
# matrix to look at even without GPUs. Extra arguments go to `xbuf topo`
# (e.g. scripts/run.sh --json).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target xbuf_cli

echo "== xbuf topo (this machine) =="
build/bin/xbuf topo "$@"
echo
echo "== xbuf topo --xml tests/data/topologies/nvidiaDGX2.xml (a real DGX-2) =="
build/bin/xbuf topo --xml tests/data/topologies/nvidiaDGX2.xml "$@"
