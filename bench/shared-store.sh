#!/bin/bash
# One node on a shared PostgreSQL store against the embedded store, in the same run: a
# throwaway PostgreSQL cluster (Debian's binaries, initdb in a temporary folder, its defaults:
# fsync and synchronous_commit on, the same disk), then `wyvern bench` with both targets
# (the database is emptied before each round, as each embedded round gets a fresh store).
# CPU per message is the engine process's only; PostgreSQL's own is not counted.
#
# usage: bench/shared-store.sh [BIN] [wyvern bench options…]
set -euo pipefail
BIN=$(realpath "${1:-target/release/wyvern}")
shift || true
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$DIR"
trap 'as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -m immediate stop >/dev/null 2>&1; rm -rf "$DIR"' EXIT
as_pg "$PG_BIN/initdb" -D "$DIR/data" -U wyvern --auth=trust -E UTF8 >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w \
  -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1" start >/dev/null
"$BIN" bench --targets wyvern,wyvern-shared --postgres "postgresql://wyvern@127.0.0.1:$PORT/postgres" "$@"
