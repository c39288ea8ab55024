#!/usr/bin/env bash
# Side by side, in alternating rounds: direct calls to the example server,
# jitgate (two-step, one-step, and the call with a token in hand), and two
# npm proxies without any authorization (mcp-proxy and supergateway, pinned
# in benches/proxies/package-lock.json) wrapping the same example server over
# stdio. 1 and 16 clients; p50/p99, calls/s, RSS, ratios to direct.
#
#   scripts/bench-proxies.sh [CALLS_PER_RUN] [SECONDS_PER_RUN] [ROUNDS]
#
# One bounded run (each measurement stops after CALLS_PER_RUN calls, default
# 2000, or SECONDS_PER_RUN seconds, default 10). Loopback only: supergateway
# has no option to choose its listening address, so the whole run happens in
# a private network namespace whose only interface is loopback (needs root
# and unshare; otherwise supergateway is skipped, loudly).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-2000}
seconds=${2:-10}
rounds=${3:-2}

if [ -z "${JITGATE_BENCH_NETNS:-}" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null 2>&1; then
  cargo build --release --quiet --bin jitgate --bin jitgate-workspace-server --example loadgen
  (cd benches/proxies && npm ci --no-audit --no-fund --loglevel=error)
  exec unshare --net env JITGATE_BENCH_NETNS=1 bash -c 'ip link set lo up 2>/dev/null || true; exec "$0" "$@"' "$0" "$@"
fi
if [ -z "${JITGATE_BENCH_NETNS:-}" ]; then
  cargo build --release --quiet --bin jitgate --bin jitgate-workspace-server --example loadgen
  (cd benches/proxies && npm ci --no-audit --no-fund --loglevel=error)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }

ws=$PWD/target/release/jitgate-workspace-server
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

proxies=()
p1=$(free_port)
node benches/proxies/node_modules/mcp-proxy/dist/bin/mcp-proxy.mjs --host 127.0.0.1 --port "$p1" -- "$ws" --state "$work/a" >"$work/mcp-proxy.log" 2>&1 &
pids+=($!)
wait_port "$p1"
proxies+=(--proxy "mcp-proxy=http://127.0.0.1:$p1/mcp")
if [ -n "${JITGATE_BENCH_NETNS:-}" ]; then
  p2=$(free_port)
  node benches/proxies/node_modules/supergateway/dist/index.js --stdio "$ws --state $work/b" --outputTransport streamableHttp --port "$p2" >"$work/supergateway.log" 2>&1 &
  pids+=($!)
  wait_port "$p2"
  proxies+=(--proxy "supergateway=http://127.0.0.1:$p2/mcp")
else
  echo "bench-proxies: SKIPPING supergateway: it listens on every interface and this run cannot confine it to loopback (run as root with unshare)" >&2
fi

timeout 1800 target/release/examples/loadgen --calls "$calls" --seconds "$seconds" --concurrency 16 --rounds "$rounds" "${proxies[@]}"
echo
echo "RSS after the runs (MiB):"
for p in "${pids[@]}"; do
  printf '  %s: %s\n' "$(ps -o args= -p "$p" | cut -c1-60)" "$(awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$p/status" 2>/dev/null)"
done
