#!/usr/bin/env bash
# Checks the installed libxbuf the way a framework sees it: installs a built
# tree into a temporary prefix and uses it from outside xbuf's build.
#
#   scripts/check-install.sh [BUILD_DIR]   (default: build; configured, and
#                                           its installed targets rebuilt if stale)
#
#   1. cmake --install BUILD_DIR --prefix TMP
#   2. libxbuf.so.0's SONAME is libxbuf.so.0, and its dynamic symbol table
#      holds only xbuf's names (xbuf_*, xbuf::client, the xbuf:: helpers of
#      client/libxbuf.map): none of boost, std, hwloc, pciaccess
#   3. every installed header compiles on its own, and the inline code they
#      define links against libxbuf.so.0 (nothing it calls is kept local)
#   4. tests/consumer configured with CMAKE_PREFIX_PATH=TMP (find_package(xbuf)),
#      built with -Werror, and its programs run with LD_LIBRARY_PATH=TMP/lib
#   5. tests/consumer/c_consumer.c built again with `cc $(pkg-config --cflags
#      --libs xbuf)` (PKG_CONFIG_PATH=TMP/lib/pkgconfig) and run
#
# Exits non-zero at the first failure, saying which step. TMP is removed on
# exit (XBUF_KEEP_INSTALL=1 keeps it and prints where).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

build="${1:-build}"
fail() { echo "check-install: FAILED: $*" >&2; exit 1; }

[ -f "$build/CMakeCache.txt" ] || fail "$build is not a configured build directory (run scripts/test.sh or cmake first)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/xbuf-check-install.XXXXXX")
if [ "${XBUF_KEEP_INSTALL:-0}" = 1 ]; then
  trap 'echo "check-install: kept $tmp"' EXIT
else
  trap 'rm -rf "$tmp"' EXIT
fi
prefix="$tmp/prefix"

# cmake --install copies what is there: bring the installed targets up to
# date first (a no-op after scripts/test.sh's build), or a stale .so is checked.
cmake --build "$build" --target xbuf_shared xbufd xbuf_cli >"$tmp/build.log" 2>&1 \
  || { cat "$tmp/build.log" >&2; fail "cmake --build $build (the installed targets)"; }

echo "== check-install: cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" 2>&1 \
  || { cat "$tmp/install.log" >&2; fail "cmake --install $build"; }

# GNUInstallDirs may choose lib/ or lib64/ or lib/<multiarch>/: find it.
so=$(find "$prefix" -name libxbuf.so.0 | head -n 1)
[ -n "$so" ] || fail "no libxbuf.so.0 under $prefix"
libdir=$(dirname "$so")
for f in "$prefix/bin/xbufd" "$prefix/bin/xbuf" "$libdir/libxbuf.so" "$prefix/include/xbuf/client/xbuf_c.h" \
         "$libdir/cmake/xbuf/xbufConfig.cmake" "$libdir/cmake/xbuf/xbufConfigVersion.cmake" \
         "$libdir/pkgconfig/xbuf.pc"; do
  [ -e "$f" ] || fail "not installed: ${f#"$prefix"/}"
done

strict="-Wall -Wextra -Wpedantic -Werror"

echo "== check-install: SONAME and exported symbols of ${so#"$prefix"/}"
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libxbuf.so.0" ] || fail "SONAME of $so is '$soname', not libxbuf.so.0"
nm -D --defined-only "$so" | c++filt | sed 's/^[0-9a-f]* [A-Za-z] //' >"$tmp/exports.txt"
count=$(wc -l <"$tmp/exports.txt")
[ "$count" -gt 0 ] || fail "$so exports nothing"
# Every export is an xbuf_* function or an xbuf:: name (or the vtable,
# typeinfo, thunk or guard of one), the shapes client/libxbuf.map allows; a
# name that starts otherwise (std::, boost::, hwloc_*, pci_*, or a return
# type: "void std::vector<xbuf::...>::...") leaked out of the internal
# libraries. Names are tested from their start because xbuf:: functions
# take std:: types as arguments; boost:: is refused anywhere, since no
# public header uses Boost.
{ grep -Ev '^(xbuf_|xbuf::|(vtable for|VTT for|typeinfo for|typeinfo name for|guard variable for|non-virtual thunk to|virtual thunk to) xbuf::)' \
    "$tmp/exports.txt" || true
  grep -E 'boost::' "$tmp/exports.txt" || true
} | sort -u >"$tmp/leaked.txt"
if [ -s "$tmp/leaked.txt" ]; then
  sed 's/^/  /' "$tmp/leaked.txt" >&2
  fail "$so exports the internal symbols above (client/libxbuf.map)"
fi
c_count=$(grep -c '^xbuf_' "$tmp/exports.txt" || true)
echo "   SONAME $soname, $count exported symbols ($c_count xbuf_* C functions)"

echo "== check-install: installed headers stand alone and link"
# Each installed header compiles on its own from <prefix>/include/xbuf with
# -Werror; -fkeep-inline-functions emits every inline function they define,
# and linking those with -z defs against the installed .so fails where
# header code calls an xbuf function that libxbuf.map keeps local.
incdir="$prefix/include/xbuf"
mkdir -p "$tmp/headers"
(cd "$incdir" && find . -name '*.h' -o -name '*.hpp') | sed 's#^\./##' | sort >"$tmp/headers.txt"
[ -s "$tmp/headers.txt" ] || fail "no headers under $incdir"
while IFS= read -r h; do
  printf '#include "%s"\n' "$h" >"$tmp/headers/$(echo "$h" | tr / _).cpp"
done <"$tmp/headers.txt"
# shellcheck disable=SC2086
find "$tmp/headers" -name '*.cpp' -print0 | xargs -0 -P "$(nproc)" -I{} \
  "${CXX:-c++}" -std=c++20 $strict -fPIC -fkeep-inline-functions -I"$incdir" -c {} -o {}.o \
  || fail "an installed header does not compile on its own (above)"
"${CXX:-c++}" -shared -o "$tmp/headers/inline.so" "$tmp/headers"/*.o -L"$libdir" -lxbuf -Wl,-z,defs \
  2>"$tmp/headers-link.log" || {
  grep -o "undefined reference to .*" "$tmp/headers-link.log" | sort -u | c++filt | sed 's/^/  /' >&2
  fail "inline code of the installed headers needs the symbols above, local in libxbuf.so (client/libxbuf.map)"
}
echo "   $(wc -l <"$tmp/headers.txt") headers"

echo "== check-install: tests/consumer through find_package(xbuf)"
cmake -S tests/consumer -B "$tmp/consumer" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_FLAGS="$strict" -DCMAKE_CXX_FLAGS="$strict" \
  >"$tmp/consumer-configure.log" 2>&1 \
  || { cat "$tmp/consumer-configure.log" >&2; fail "configure tests/consumer against $prefix"; }
grep -q "xbuf_DIR:PATH=$libdir/cmake/xbuf" "$tmp/consumer/CMakeCache.txt" \
  || fail "tests/consumer found an xbuf package other than $libdir/cmake/xbuf"
cmake --build "$tmp/consumer" >"$tmp/consumer-build.log" 2>&1 \
  || { cat "$tmp/consumer-build.log" >&2; fail "build tests/consumer against $prefix"; }
for p in c_consumer cxx_consumer dlopen_consumer; do
  LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/consumer/$p" \
    || fail "tests/consumer's $p"
done

echo "== check-install: c_consumer.c through pkg-config"
export PKG_CONFIG_PATH="$libdir/pkgconfig"
pc_flags=$(pkg-config --cflags --libs xbuf) || fail "pkg-config --cflags --libs xbuf"
# shellcheck disable=SC2086  # the flags are words
"${CC:-cc}" $strict -o "$tmp/c_consumer_pc" "$root/tests/consumer/c_consumer.c" $pc_flags \
  || fail "cc \$(pkg-config --cflags --libs xbuf) tests/consumer/c_consumer.c"
LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$tmp/c_consumer_pc" \
  || fail "c_consumer built through pkg-config"

echo "check-install: the installed libxbuf works from outside the build"
