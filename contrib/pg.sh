#!/bin/sh
# A throwaway PostgreSQL 15 cluster for `make run` and the tests.
#
#   contrib/pg.sh start DIR PORT   create (first time), start, print the URL
#   contrib/pg.sh stop DIR         stop it (fast shutdown)
#   contrib/pg.sh url DIR PORT     print the libpq URL
#   contrib/pg.sh status DIR       exit 0 when it is running, 1 when not
#
# DIR holds the cluster (DIR/data), its log (DIR/log) and its Unix socket.
# It listens on the socket only, or on 127.0.0.1 too when PG_TCP=1.  It is
# tuned for tests, not for data anyone wants back: fsync is off.  As root,
# PostgreSQL runs as the postgres user (it refuses to run as root), so DIR
# is given to postgres and every directory above it must let postgres in.

set -eu

die() {
	echo "pg.sh: $*" >&2
	exit 1
}

usage() {
	die "usage: pg.sh start DIR PORT | stop DIR | url DIR PORT |" \
	    "status DIR"
}

pgbin() {
	b=$(pg_config --bindir 2>/dev/null || true)
	[ -n "$b" ] && [ -x "$b/initdb" ] || b=/usr/lib/postgresql/15/bin
	[ -x "$b/initdb" ] || die "no PostgreSQL binaries (pg_config --bindir," \
	    "/usr/lib/postgresql/15/bin): run make deps"
	echo "$b"
}

# Run a server-side command as whoever may run PostgreSQL, from inside DIR
# (a root shell's cwd is often closed to postgres).
as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		(cd "$DIR" && runuser -u postgres -- "$@")
	else
		(cd "$DIR" && "$@")
	fi
}

# As root, find the first directory on the way to DIR that postgres cannot
# enter, so the message says what to chmod.
check_traversable() {
	runuser -u postgres -- test -x "$DIR" -a -w "$DIR" && return 0
	d=""
	for part in $(echo "$DIR" | tr '/' ' '); do
		d="$d/$part"
		runuser -u postgres -- test -x "$d" ||
		    die "$d: the postgres user cannot enter it" \
		    "(chmod o+x, or use a DIR under /tmp)"
	done
	die "$DIR: the postgres user cannot write it"
}

url() {
	echo "postgresql:///tokend?host=$DIR&port=$PORT&user=postgres"
}

running() {
	[ -f "$DIR/data/PG_VERSION" ] &&
	    as_pg "$BIN/pg_ctl" -D "$DIR/data" status >/dev/null 2>&1
}

init_cluster() {
	as_pg "$BIN/initdb" -D "$DIR/data" -A trust -U postgres --no-sync \
	    -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1 ||
	    die "initdb failed; see $DIR/initdb.log"
	# Settings live in a file rewritten at every start, so PG_TCP and
	# PORT may change between starts of the same cluster.
	echo "include_if_exists = 'tokend.conf'" >>"$DIR/data/postgresql.conf"
}

write_conf() {
	listen=""
	[ "${PG_TCP:-0}" = 1 ] && listen=127.0.0.1
	cat >"$DIR/data/tokend.conf" <<EOF
listen_addresses = '$listen'
port = $PORT
unix_socket_directories = '$DIR'
max_connections = 200
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
	[ "$(id -u)" -ne 0 ] || chown postgres: "$DIR/data/tokend.conf"
}

psql_pg() {
	PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -At \
	    -v ON_ERROR_STOP=1 -h "$DIR" -p "$PORT" -U postgres "$@"
}

start() {
	mkdir -p "$DIR"
	DIR=$(cd "$DIR" && pwd)
	# The socket path must fit in sun_path (107 bytes).
	[ ${#DIR} -le 90 ] || die "$DIR: too long for a Unix socket path"
	if running; then
		url
		return 0
	fi
	if [ "$(id -u)" -eq 0 ]; then
		chown -R postgres: "$DIR"
		check_traversable
	fi
	[ -f "$DIR/data/PG_VERSION" ] || init_cluster
	write_conf
	as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 60 start \
	    >/dev/null || die "PostgreSQL did not start; see $DIR/log"
	if [ -z "$(psql_pg -d postgres -c \
	    "SELECT 1 FROM pg_database WHERE datname = 'tokend'")" ]; then
		psql_pg -d postgres -c "CREATE DATABASE tokend" >/dev/null
	fi
	psql_pg -d tokend -c \
	    "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
	url
}

stop() {
	[ -d "$DIR" ] || return 0
	DIR=$(cd "$DIR" && pwd)
	running || return 0
	as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w -t 60 stop >/dev/null
}

[ $# -ge 2 ] || usage
CMD=$1
DIR=$2
PORT=${3:-}
case "$CMD" in
start)
	[ -n "$PORT" ] || usage
	BIN=$(pgbin)
	start
	;;
stop)
	BIN=$(pgbin)
	stop
	;;
status)
	BIN=$(pgbin)
	[ -d "$DIR" ] || exit 1
	DIR=$(cd "$DIR" && pwd)
	running
	;;
url)
	[ -n "$PORT" ] || usage
	[ -d "$DIR" ] && DIR=$(cd "$DIR" && pwd)
	url
	;;
*)
	usage
	;;
esac
