#!/usr/bin/env bash
# Installs every build and test dependency of xbuf from Debian's packages.
# Idempotent: packages already present are left alone, so a second run is quick.
# Used by the README's two commands and by .ci/run.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  binutils                   # readelf, nm, c++filt: libxbuf.so's SONAME and exports (scripts/check-install.sh)
  clang                      # -Wthread-safety build and the fuzzers; TSan/ASan builds use gcc
  libclang-rt-14-dev         # clang's sanitizer and libFuzzer runtimes (tests/fuzz)
  libhwloc-dev hwloc-nox     # topology (live machine and XML)
  libpciaccess-dev           # PCI ids, class and ACS capability on the live machine
  libtomlplusplus-dev        # toml++: xbufd's config file (/etc/xbuf/xbufd.toml, --config)
  libsystemd-dev             # sd_listen_fds, sd_notify: xbufd under systemd (optional at build time)
  systemd                    # systemd-analyze verify of packaging/systemd (tests/integration/systemd_test)
  libboost1.81-dev           # Boost.Asio (1.81 for a C++20-coroutine-ready Asio)
  libgtest-dev libgmock-dev  # GoogleTest
  libbenchmark-dev           # Google Benchmark (bench/)
  libamdhip64-dev            # HIP headers and runtime: the HIP backend builds and reports "no device"
  python3 python3-pytest     # the Python binding's tests (scripts/check-python.sh)
  libncurses-dev tmux        # `xbuf top` draws with ncurses; its test runs it in tmux
  chromium                   # headless, renders `xbuf trace --html` in tests/integration/trace_test
  prometheus                 # promtool: lints xbufd's --metrics text (tests/integration/metrics_test)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
