# Sourced by the benchmark scripts: start a private PostgreSQL for one run.
#
#   start_private_pg "SETTINGS"   # extra server settings, e.g. "-c max_connections=300"
#
# It listens on 127.0.0.1 only, on a free port ($port), with its data in a
# temporary directory ($work) that is removed, with the server stopped, when
# the calling script exits. As root it runs as the postgres user ($as_pg
# runs a command that way). The database role is `jitgate`, trusted.
start_private_pg() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$pg_bin" ] && [ -x "$pg_bin/initdb" ] || { echo "PostgreSQL is not installed: run scripts/setup-test-deps.sh" >&2; exit 1; }
  work=$(mktemp -d)
  as_pg=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$work"
    as_pg=(runuser -u postgres --)
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  trap stop_private_pg EXIT
  "${as_pg[@]}" "$pg_bin/initdb" -D "$work/data" -U jitgate --auth=trust -E UTF8 >/dev/null
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -o "-p $port -k $work -c listen_addresses=127.0.0.1 $1" -l "$work/pg.log" -w start >/dev/null
}

stop_private_pg() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
