#!/usr/bin/env bash
# PostgreSQL statements and writing transactions per authorized call, as
# PostgreSQL itself counts them (pg_stat_statements; transaction ids), for
# `jit_call` and for `jit_request` + call, one client, one gateway.
#
#   scripts/bench-pg-statements.sh [CALLS] [SECONDS]
#
# Bounded: at most CALLS calls (default 200) or SECONDS seconds (default 30)
# per path. A private PostgreSQL with pg_stat_statements preloaded listens on
# 127.0.0.1 in a temporary directory (as the postgres user when run as
# root) and is removed at the end. Needs the distribution's postgresql
# (scripts/setup-test-deps.sh). MODERN=1 drives MCP 2026-07-28 clients.
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${1:-200}
seconds=${2:-30}

cargo build --release --quiet --bin jitgate --bin jitgate-workspace-server --example loadgen

. scripts/private-pg.sh
start_private_pg "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_utility=on"
"${as_pg[@]}" "$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U jitgate bench

modern=()
[ -n "${MODERN:-}" ] && modern=(--modern)
timeout 600 target/release/examples/loadgen --count-statements --calls "$calls" --seconds "$seconds" \
  --store "postgres://jitgate@127.0.0.1:$port/bench" "${modern[@]}"
