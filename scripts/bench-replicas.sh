#!/usr/bin/env bash
# Authorized calls per second (jit_request + call) with 1, 2 and 3 gateway
# replicas on PostgreSQL (behind nginx for 2 and 3) and with one process on
# SQLite, at 16 and 64 concurrent clients: p50, p99, calls/s.
#
#   scripts/bench-replicas.sh [CALLS_PER_RUN] [SECONDS_PER_RUN]
#
# One bounded run: each measurement stops after CALLS_PER_RUN calls (default
# 3000) or SECONDS_PER_RUN seconds (default 15). Everything listens on
# 127.0.0.1 only; a private PostgreSQL is started in a temporary directory
# (as the postgres user when run as root) and removed at the end. Needs the
# distribution's postgresql and nginx (scripts/setup-test-deps.sh).
#
# Knobs for experiments (environment): BENCH_REPLICAS="1 2 3" (which counts
# to run), BENCH_SKIP_SQLITE=1, BENCH_PG_SETTINGS="-c synchronous_commit=off"
# (extra PostgreSQL settings, e.g. to see what commit latency costs).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-3000}
seconds=${2:-15}

cargo build --release --quiet --bin jitgate --bin jitgate-workspace-server --example loadgen

. scripts/private-pg.sh
start_private_pg "-c max_connections=300 ${BENCH_PG_SETTINGS:-}"

loadgen=target/release/examples/loadgen
run() { timeout 900 "$loadgen" --calls "$calls" --seconds "$seconds" --concurrency 16 --concurrency 64 "$@"; }

if [ -z "${BENCH_SKIP_SQLITE:-}" ]; then
  echo "== SQLite, one process"
  run --modern
fi
for n in ${BENCH_REPLICAS:-1 2 3}; do
  db="bench_$n"
  "${as_pg[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U jitgate "$db"
  echo
  echo "== PostgreSQL, $n replica(s) ${BENCH_PG_SETTINGS:-}"
  run --no-direct --modern --store "postgres://jitgate@127.0.0.1:$port/$db" --replicas "$n"
done
