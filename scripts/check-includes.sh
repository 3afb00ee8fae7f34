#!/usr/bin/env bash
# Checks that #include "..." lines run one way only (DESIGN.md, Layout):
#
#   core <- backends <- allocator <- p2p bridge <- {server, client}
#
#   core/       core/ only
#   backends/   core/, backends/
#   allocator/  core/, backends/, allocator/
#   p2p/        core/, p2p/; the bridge (p2p/allocator_bridge.*) also
#               allocator/ and backends/
#   server/     anything below it, and server/
#   client/     anything below server, client/, and of server/ only
#               server/protocol.hpp (the wire) and server/stats.hpp (the
#               embedded allocator reports stats as the daemon does)
#   bench/      like client/, and bench/ (its shared report format, traces)
#   tests/X/    what X/ may include, plus tests/ and (for tests/server,
#               tests/integration and tests/fuzz, which drive the daemon's
#               parts) server/; tests/common and tests/stress like client/
#
# Prints each offending line as FILE:LINE: text (why) and exits 1 if any.
# Usage: scripts/check-includes.sh [ROOT]   (default: the repository root)
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/.." && pwd)}"
cd "$root"

below_server="core backends allocator p2p"
allowed_for() {  # folder path relative to root -> allowed top-level folders
  case "$1" in
    core/*)                     echo "core" ;;
    backends/*)                 echo "core backends" ;;
    allocator/*)                echo "core backends allocator" ;;
    p2p/allocator_bridge.*)     echo "core backends allocator p2p" ;;
    p2p/*)                      echo "core p2p" ;;
    server/*)                   echo "$below_server server" ;;
    client/*)                   echo "$below_server client server/protocol.hpp server/stats.hpp" ;;
    bench/*)                    echo "$below_server client server/protocol.hpp server/stats.hpp bench" ;;
    tests/server/*|tests/integration/*|tests/fuzz/*) echo "$below_server client server tests" ;;
    tests/client/*|tests/common/*|tests/stress/*)
                                echo "$below_server client server/protocol.hpp tests" ;;
    tests/*/*)                  local sub="${1#tests/}"; sub="${sub%%/*}"
                                echo "$(allowed_for "$sub/x") tests" ;;
    *)                          echo "" ;;
  esac
}

status=0
checked=0
while IFS= read -r file; do
  [ -f "$file" ] || continue  # deleted in the work tree, not yet in git
  allowed=$(allowed_for "$file")
  [ -n "$allowed" ] || continue
  checked=$((checked + 1))
  while IFS=: read -r line text; do
    inc=${text#*\"}; inc=${inc%%\"*}
    top=${inc%%/*}
    ok=0
    for a in $allowed; do
      if [ "$a" = "$top" ] || [ "$a" = "$inc" ]; then ok=1; break; fi
    done
    # An include without a folder ("foo.hpp") is a file next to this one.
    [ "$inc" = "$top" ] && ok=1
    if [ "$ok" -eq 0 ]; then
      echo "$file:$line: $text (${file%/*}/ may include only: $allowed)"
      status=1
    fi
  done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
done < <(git ls-files --cached --others --exclude-standard -- '*.cpp' '*.hpp' '*.h' '*.c' 2>/dev/null || find . -name '*.[ch]pp' | sed 's#^\./##')

if [ "$status" -eq 0 ]; then
  echo "check-includes: $checked files, every include runs one way"
else
  echo "check-includes: includes that run the wrong way (see DESIGN.md, Layout)" >&2
fi
exit "$status"
