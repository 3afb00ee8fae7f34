#!/usr/bin/env bash
# Installs the dependencies, builds xbuf and runs the main job:
#
#   1. `xbuf topo`: this machine's PCI devices and peer-to-peer matrix;
#   2. the daemon `xbufd` (the simulated GPUs where no GPU is found) while two
#      `xbuf demo` jobs allocate more than the VRAM holds, watched live with
#      `xbuf top` on a terminal (elsewhere: the daemon's status screen every
#      2 s) - domains filling, evictions, moves and move_notify counts;
#   3. `xbuf stat` (what the daemon holds), then the daemon stops.
#
# Options: --seconds N (how long the demo jobs run, default 20).
# Environment: XBUF_BUILD_DIR, the build directory (default build).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=20
if [ "${1:-}" = "--seconds" ]; then seconds="${2:?--seconds needs a number}"; fi
build="${XBUF_BUILD_DIR:-build}"

scripts/install-deps.sh
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target xbuf_cli xbufd

echo "== xbuf topo (this machine) =="
"$build"/bin/xbuf topo || true
echo

# A directory of our own (mode 0700): xbufd refuses a socket in a directory
# another user could write to.
rundir="$(mktemp -d /tmp/xbuf-run-XXXXXX)"
socket="$rundir/xbuf.sock"
echo "== xbufd on $socket (Ctrl-C stops everything) =="
# On a terminal `xbuf top` draws the screen, so the daemon's own status
# lines go to a log file; piped, the daemon prints them every 2 s instead.
interactive=0
[ -t 1 ] && command -v tput >/dev/null && interactive=1
if [ "$interactive" = 1 ]; then
  "$build"/bin/xbufd --socket "$socket" --backend auto --sim-devices 2 --sim-vram 32M \
    >"$rundir/xbufd.log" 2>&1 &
else
  "$build"/bin/xbufd --socket "$socket" --backend auto --sim-devices 2 --sim-vram 32M \
    --stats-interval 2 &
fi
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null || true; wait $daemon 2>/dev/null || true; rm -rf "$rundir"' EXIT
for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.1; done

"$build"/bin/xbuf demo --socket "$socket" --seconds "$seconds" --name job-a &
job_a=$!
"$build"/bin/xbuf demo --socket "$socket" --seconds "$seconds" --name job-b &
job_b=$!
if [ "$interactive" = 1 ]; then
  # Until the jobs are done (q leaves it earlier); the jobs' summaries follow.
  "$build"/bin/xbuf top --socket "$socket" --seconds "$((seconds + 1))" >/dev/tty 2>&1 || true
fi
wait "$job_a" "$job_b"

echo
echo "== xbuf stat =="
"$build"/bin/xbuf stat --socket "$socket"
