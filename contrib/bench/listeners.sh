#!/bin/sh
# Shared listening socket with EPOLLEXCLUSIVE (what tokend does) against one
# SO_REUSEPORT socket per worker (contrib/bench/reuseport.patch, built in a
# scratch copy), GET /healthz with keep-alive and with a new connection per
# request.  Prints one line per run and the medians.
#
#   contrib/bench/listeners.sh [WORKERS] [ROUNDS] [SECONDS]
#
# Needs bin/tokend (make), wrk, python3, and a tree where the patch applies.
# With TOKEND_A/TOKEND_B/WRK set it uses those binaries instead, each run
# through $RUN when set (the device: RUN="ld-linux... --library-path ...").
# WRK_CPUS / SRV_CPUS pin the load generator and the server (taskset lists).
set -eu
W=${1:-2}; R=${2:-3}; S=${3:-5}
top=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/listeners.XXXXXX)
trap 'kill $(cat "$tmp"/pid 2>/dev/null) 2>/dev/null; rm -rf "$tmp"' EXIT

A=${TOKEND_A:-$top/bin/tokend}
B=${TOKEND_B:-}
if [ -z "$B" ]; then
	git -C "$top" archive HEAD | tar -x -C "$tmp" --one-top-level=src
	(cd "$tmp/src" && patch -sp1 < "$top/contrib/bench/reuseport.patch" &&
	    make -s BUILD="$tmp/b" BIN="$tmp/bin" "$tmp/bin/tokend" >/dev/null)
	B=$tmp/bin/tokend
fi
WRK=${WRK:-wrk}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
pin() { if [ -n "${1:-}" ]; then echo "taskset -c $1"; fi; }

run() {	# $1 binary, $2 label, $3 an extra request header or ""
	cat > "$tmp/conf" <<EOC
listen = 127.0.0.1:$port
workers = $W
database_url = postgresql:///none?host=$tmp
cache_dir = $tmp/cache
log_file = $tmp/log
log_level = error
EOC
	$(pin "${SRV_CPUS:-}") ${RUN:-} "$1" -c "$tmp/conf" & echo $! > "$tmp/pid"
	i=0; until python3 -c "import urllib.request as u
u.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; do
		i=$((i + 1)); [ $i -gt 100 ] && { echo "no server" >&2; exit 1; }
		sleep 0.05; done
	label=$2 header=$3
	set -- -t "${WRK_THREADS:-2}" -c "${WRK_CONNS:-64}" -d "${S}s"
	if [ -n "$header" ]; then set -- "$@" -H "$header"; fi
	rps=$($(pin "${WRK_CPUS:-}") ${RUN:-} "$WRK" "$@" \
	    "http://127.0.0.1:$port/healthz" | awk '/Requests\/sec/ {print $2}')
	kill "$(cat "$tmp/pid")"; wait "$(cat "$tmp/pid")" 2>/dev/null || true
	echo "$label $rps"
}

for mode in keepalive close; do
	extra=""; [ $mode = close ] && extra="Connection: close"
	: > "$tmp/$mode"
	r=0; while [ $r -lt "$R" ]; do
		run "$A" "shared+EPOLLEXCLUSIVE/$mode" "$extra" | tee -a "$tmp/$mode"
		run "$B" "SO_REUSEPORT/$mode" "$extra" | tee -a "$tmp/$mode"
		r=$((r + 1))
	done
	for label in "shared+EPOLLEXCLUSIVE/$mode" "SO_REUSEPORT/$mode"; do
		grep "^$label " "$tmp/$mode" | awk '{print $2}' | sort -n |
		    awk -v l="$label" -v w="$W" '{v[NR]=$1} END {
		    printf "median %s workers=%s: %.0f req/s\n", l, w, v[int((NR+1)/2)]}'
	done
done
