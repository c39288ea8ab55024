#!/usr/bin/env bash
# The everyday subset of jitgate's tests: every unit test, and the
# end-to-end tests that need nothing but Rust (the in-repo example servers
# and a real gateway). It installs nothing. The tests that drive external
# peers (the npm servers and SDK clients, the Python client, PostgreSQL,
# nginx, Chromium, an OpenID provider) are skipped, and the summary says
# which: run .ci/run (the README's test command) before you push.
#
#   scripts/quick-test.sh [CARGO TEST ARGS...]     e.g. scripts/quick-test.sh taint
set -euo pipefail
cd "$(dirname "$0")/.."

# End-to-end test files that need no external peer.
own=(audit baseline containment gateway_http gateway_stdio jit_flow one_step policy processes scenarios schema_limits)

args=()
for t in "${own[@]}"; do args+=(--test "$t"); done
skipped=()
for f in tests/*.rs; do
  name=$(basename "$f" .rs)
  case " ${own[*]} " in *" $name "*) ;; *) skipped+=("$name") ;; esac
done

status=0
cargo test --lib --bins "${args[@]}" "$@" || status=$?

echo >&2
echo "################################################################" >&2
echo "# quick-test: SKIPPED ${#skipped[@]} end-to-end test files that need" >&2
echo "# external peers (npm/Python clients, PostgreSQL, nginx, Chromium," >&2
echo "# an OpenID provider):" >&2
echo "#   ${skipped[*]}" >&2
echo "# Run .ci/run (installs the peers, runs everything) before pushing." >&2
echo "################################################################" >&2
exit "$status"
