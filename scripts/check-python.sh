#!/usr/bin/env bash
# The Python binding (python/xbuf) against a build: its pytest suite
# (tests/python) over that build's libxbuf.so.0 and a real xbufd.
#
#   scripts/check-python.sh [BUILD_DIR]     default: build
#
# Needs the build's xbuf_shared and xbufd targets, and pytest (Debian:
# python3-pytest; scripts/install-deps.sh). $PYTHON picks the interpreter;
# else the first of python3, /usr/bin/python3 that has pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="${1:-build}"
lib="$dir/lib/libxbuf.so.0"
bin="$dir/bin"
for f in "$lib" "$bin/xbufd"; do
  if [ ! -e "$f" ]; then
    echo "check-python.sh: $f is missing: build it (cmake --build $dir --target xbuf_shared xbufd)" >&2
    exit 1
  fi
done

python=""
for p in ${PYTHON:-python3 /usr/bin/python3}; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import pytest' >/dev/null 2>&1; then
    python="$p"
    break
  fi
done
if [ -z "$python" ]; then
  echo "check-python.sh: no python3 with pytest (tried: ${PYTHON:-python3 /usr/bin/python3});" \
    "install it: apt-get install python3-pytest" >&2
  exit 1
fi

export XBUF_LIBRARY="$(realpath "$lib")"
export XBUF_BIN_DIR="$(realpath "$bin")"
export PYTHONPATH="$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
# No stray environment steering the binding to another daemon or mode.
unset XBUF_SOCKET XBUF_MODE XBUF_BACKEND
echo "check-python.sh: $("$python" --version) over $XBUF_LIBRARY, xbufd from $XBUF_BIN_DIR"
exec "$python" -m pytest -q -p no:cacheprovider tests/python
