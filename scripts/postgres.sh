#!/usr/bin/env bash
# Throwaway PostgreSQL server for clawhold's store tests.
#
#   scripts/postgres.sh start   # install (Debian package) if needed, init, start
#   scripts/postgres.sh stop
#
# start prints exactly one line on stdout, everything else goes to stderr:
#   CLAWHOLD_TEST_POSTGRES_DSN=host=/tmp/clawhold-pg port=55432 user=postgres dbname=postgres sslmode=disable
# The value holds spaces, so export the line whole:
#   line=$(scripts/postgres.sh start); [ -n "$line" ] && export "$line"
#
# The server listens only on a unix socket in $CLAWHOLD_PG_DIR (no TCP) with
# trust auth, and runs with fsync off: it is for tests, never for data.
set -euo pipefail

PG_DIR=${CLAWHOLD_PG_DIR:-/tmp/clawhold-pg}
PG_PORT=${CLAWHOLD_PG_PORT:-55432}
DATA_DIR="$PG_DIR/data"
LOG_FILE="$PG_DIR/postgres.log"

log() { echo "postgres.sh: $*" >&2; }

# pg_bin prints the newest Debian PostgreSQL bin dir, or nothing. The
# /usr/local/bin wrappers some images carry are deliberately not used.
pg_bin() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
		echo "$d"
	fi
}

# as_pg runs a command as the postgres OS user when we are root (initdb and
# postgres refuse to run as root), otherwise as ourselves.
as_pg() {
	if [[ $EUID -eq 0 ]]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

install_pg() {
	if [[ $EUID -ne 0 ]]; then
		log "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and not root;"
		log "install the Debian 'postgresql' package (apt-get install -y postgresql) to run the PostgreSQL tests."
		return 1
	fi
	log "installing PostgreSQL (apt-get install -y postgresql)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update >&2
	apt-get install -y --no-install-recommends postgresql >&2
}

start() {
	local bin
	bin=$(pg_bin)
	if [[ -z "$bin" ]]; then
		if ! install_pg; then
			exit 0 # tests skip outside CI; CI fails on the missing DSN
		fi
		bin=$(pg_bin)
		if [[ -z "$bin" ]]; then
			log "apt-get install postgresql succeeded but no /usr/lib/postgresql/*/bin/initdb found"
			exit 1
		fi
	fi

	mkdir -p "$PG_DIR"
	# 0755: other local users (and root) need to reach the socket inside.
	chmod 0755 "$PG_DIR"
	if [[ $EUID -eq 0 ]]; then
		chown postgres:postgres "$PG_DIR"
	fi

	if [[ ! -f "$DATA_DIR/PG_VERSION" ]]; then
		log "initdb $DATA_DIR"
		as_pg "$bin/initdb" -D "$DATA_DIR" -U postgres -E UTF8 \
			--auth-local=trust --auth-host=reject --no-instructions >&2
		cat >>"$DATA_DIR/postgresql.conf" <<CONF

# clawhold test cluster: unix socket only, no durability needed.
listen_addresses = ''
port = $PG_PORT
unix_socket_directories = '$PG_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
CONF
	fi

	if as_pg "$bin/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1; then
		log "already running ($DATA_DIR)"
	else
		log "starting PostgreSQL ($DATA_DIR, log $LOG_FILE)"
		as_pg "$bin/pg_ctl" -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 start >&2
	fi

	echo "CLAWHOLD_TEST_POSTGRES_DSN=host=$PG_DIR port=$PG_PORT user=postgres dbname=postgres sslmode=disable"
}

stop() {
	local bin
	bin=$(pg_bin)
	if [[ -z "$bin" || ! -f "$DATA_DIR/PG_VERSION" ]]; then
		log "no cluster at $DATA_DIR"
		return 0
	fi
	if as_pg "$bin/pg_ctl" -D "$DATA_DIR" status >/dev/null 2>&1; then
		as_pg "$bin/pg_ctl" -D "$DATA_DIR" -m fast -w stop >&2
	else
		log "not running ($DATA_DIR)"
	fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
*)
	echo "usage: $0 start|stop" >&2
	exit 2
	;;
esac
