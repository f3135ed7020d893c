#!/usr/bin/env bash
# Starts or stops a throwaway PostgreSQL server for the tests.
# Usage: scripts/postgres.sh start DIR PORT | stop DIR
# On start it prints the URL to use (postgresql://eucalypt@127.0.0.1:PORT/eucalypt).
set -euo pipefail
cmd="$1"; dir="$2"
bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
[ -n "$bindir" ] || { echo "postgres.sh: PostgreSQL is not installed (scripts/install-deps.sh --test)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  start)
    port="$3"
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bindir/initdb" -D "$dir" -U postgres -A trust >/dev/null
    fi
    as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
      "SELECT 1 FROM pg_roles WHERE rolname='eucalypt'" | grep -q 1 ||
      as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE ROLE eucalypt LOGIN SUPERUSER"
    as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname='eucalypt'" | grep -q 1 ||
      as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -qc "CREATE DATABASE eucalypt OWNER eucalypt"
    echo "postgresql://eucalypt@127.0.0.1:$port/eucalypt"
    ;;
  stop)
    [ -f "$dir/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$dir" -m fast -w stop >/dev/null || true
    ;;
  *) echo "usage: $0 start DIR PORT | stop DIR" >&2; exit 2 ;;
esac
