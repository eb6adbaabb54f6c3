#!/bin/sh
# Scenario 7 of the benchmark suite: how hit throughput scales with
# workers, on a machine with 16 or more cores, from the pack that
# contrib/bench/device-pack.sh made (no package installs, no network).
#
#   tar xzf pack.tar.gz && sh pack/scaling.sh OUTDIR
#
# For W in SCALE_WORKERS (default "1 2 4 8"): tokend with workers = W and
# nginx with worker_processes W (`location /auth { return 200; }`), both
# pinned to the same W CPUs (one thread of each physical core first), wrk
# pinned to the other CPUs with min(8, those CPUs) threads and 32 * W
# connections.  Each W runs tokend and nginx alternately SCALE_ROUNDS times
# (default 3) for SCALE_DURATION seconds (default 8), after a warm-up run
# that puts the 1,000 PATs in tokend's cache.  Efficiency at W is the median
# req/s at W divided by W times the median at the smallest W.
#
# PostgreSQL 15 comes from the pack too (tokend needs it to start and for
# the first sight of each token); it runs as nobody when this runs as root.
# OUTDIR gets scaling.json (the suite's report reads it from
# contrib/bench/results/) and the logs.
#
# Binaries: the packed ones run through the packed loader; when that fails
# and the machine has its own wrk or nginx, those are used, and
# scaling.json says which.
set -eu

P=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$PWD/scaling-out}
WORKERS=${SCALE_WORKERS:-1 2 4 8}
ROUNDS=${SCALE_ROUNDS:-3}
DUR=${SCALE_DURATION:-8}
CPW=${SCALE_CONNS_PER_WORKER:-32}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T=$(mktemp -d /tmp/tokend-scale-XXXXXX)
chmod 755 "$T"
LOG=$OUT/scaling.log
: >"$LOG"

log() {
	echo "scaling: $*" | tee -a "$LOG" >&2
}

die() {
	log "FAILED: $*"
	exit 1
}

# ---- binaries ---------------------------------------------------------------

LD="$P/glibc/ld-linux-x86-64.so.2"
LP="$P/lib:$P/glibc"

# Commands as words (the pack's paths hold no spaces): taskset, env and
# the shell all exec them the same way.
RUN="$LD --library-path $LP"
TASKSET="$RUN $P/bin/taskset"
command -v taskset >/dev/null 2>&1 && TASKSET=taskset
WRK="$RUN $P/bin/wrk"
NGINX="$RUN $P/bin/nginx"
TOKEND="$RUN $P/bin/tokend"
BINARIES="tokend, wrk and nginx from the pack, through its loader"
if ! $WRK -v 2>&1 | grep -q "wrk "; then
	command -v wrk >/dev/null || die "the packed wrk does not run"
	WRK=wrk
	BINARIES="$BINARIES; wrk: this machine's ($(command -v wrk))"
fi
if ! $NGINX -v >/dev/null 2>&1; then
	command -v nginx >/dev/null || die "the packed nginx does not run"
	NGINX=nginx
	BINARIES="$BINARIES; nginx: this machine's ($(command -v nginx))"
fi
$TOKEND --version >/dev/null || die "the packed tokend does not run"
case "$TASKSET" in
taskset) BINARIES="$BINARIES; taskset: this machine's" ;;
esac

# Pinned: taskset execs the loader, the loader runs the program.
pin() {
	cpus=$1
	shift
	$TASKSET -c "$cpus" "$@"
}

# Is a TCP port in LISTEN on this machine?  (/proc/net/tcp, state 0A)
listening() {
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { f = 1 } END { exit !f }' \
	    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Is a TCP port any socket's local port, in any state?  A client's
# connection, or one in TIME_WAIT, holds it as surely as a listener.
in_use() {
	hex=$(printf '%04X' "$1")
	awk -v p=":$hex" 'FNR > 1 && $2 ~ p"$" { f = 1 } END { exit !f }' \
	    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# A port below the kernel's range for client ports, which wrk's thousands
# of connections sweep through (a tokend once found its port taken).
free_port() {
	lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range \
	    2>/dev/null || echo 32768)
	[ "$lo" -gt 12000 ] || lo=32768
	while :; do
		p=$((10000 + $(od -An -N2 -tu2 /dev/urandom) % (lo - 10000)))
		in_use "$p" || break
	done
	echo "$p"
}

# ---- PostgreSQL from the pack ----------------------------------------------

PGB=$T/pg/usr/lib/postgresql/15/bin
PGPORT=$(free_port)
PGDIR=$T/pgdata
SOCK=$T/sock

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		if command -v setpriv >/dev/null 2>&1; then
			setpriv --reuid=65534 --regid=65534 --clear-groups \
			    env LD_LIBRARY_PATH="$T/lib" "$@"
		else
			runuser -u nobody -- env LD_LIBRARY_PATH="$T/lib" "$@"
		fi
	else
		env LD_LIBRARY_PATH="$T/lib" "$@"
	fi
}

psql_() {
	env LD_LIBRARY_PATH="$T/lib" "$PGB/psql" -X -q -At -v ON_ERROR_STOP=1 \
	    -h "$SOCK" -p "$PGPORT" -U postgres "$@"
}

start_pg() {
	# nobody must reach every file: copies under /tmp, not the pack.
	cp -r "$P/pg" "$T/pg"
	cp -r "$P/lib" "$T/lib"
	mkdir -p "$PGDIR" "$SOCK"
	[ "$(id -u)" -ne 0 ] || chown 65534:65534 "$PGDIR" "$SOCK"
	as_pg "$PGB/initdb" -D "$PGDIR" -A trust -U postgres --no-sync \
	    -E UTF8 --locale=C >>"$LOG" 2>&1 || die "initdb (see $LOG)"
	cat >>"$PGDIR/postgresql.conf" <<EOF
listen_addresses = ''
port = $PGPORT
unix_socket_directories = '$SOCK'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
timezone = 'UTC'
log_timezone = 'UTC'
EOF
	as_pg "$PGB/pg_ctl" -D "$PGDIR" -l "$SOCK/pg.log" -w -t 60 start \
	    >>"$LOG" 2>&1 || { cat "$SOCK/pg.log" >>"$LOG"; die "pg_ctl start"; }
	psql_ -d postgres -c "CREATE DATABASE tokend"
	URL="postgresql:///tokend?host=$SOCK&port=$PGPORT&user=postgres"
}

stop_pg() {
	[ -x "$PGB/pg_ctl" ] && [ -f "$PGDIR/postmaster.pid" ] &&
	    as_pg "$PGB/pg_ctl" -D "$PGDIR" -m fast -w stop >>"$LOG" 2>&1
	return 0
}

make_tokens() {
	ctl() {
		env LD_LIBRARY_PATH="$P/lib" "$P/bin/tokenctl" \
		    --database-url "$URL" "$@"
	}
	ctl migrate >>"$LOG" 2>&1 || die "tokenctl migrate"
	ctl user add hit --no-password >>"$LOG" 2>&1 || die "tokenctl user add"
	uid=$(psql_ -d tokend -c "SELECT id FROM tokend.users WHERE name = 'hit'")
	env LD_LIBRARY_PATH="$P/lib" "$P/bin/mint" -n 1000 -k pat \
	    -o "$T/hit.txt" -c "$T/hit.copy" -u "$uid" -l hit ||
	    die "mint"
	psql_ -d tokend -c "\\copy tokend.tokens (kind, hash, prefix, user_id, name) \
FROM '$T/hit.copy'"
	export BENCH_TOKENS="$T/hit.txt"
}

# ---- CPUs: one thread of each core first -----------------------------------

cpu_order() {
	for c in /sys/devices/system/cpu/cpu[0-9]*; do
		n=${c##*cpu}
		sib=$(cat "$c/topology/thread_siblings_list" 2>/dev/null ||
		    echo "$n")
		first=${sib%%[,-]*}
		idx=0
		[ "$n" = "$first" ] || idx=1
		echo "$idx $n"
	done | sort -n -k1,1 -k2,2 | awk '{ print $2 }'
}

# "a b c" -> "a,b,c"
commas() {
	echo "$*" | tr ' ' '\n' | sed '/^$/d' | paste -sd, -
}

# "busy total" jiffies of the CPUs in list $2 in /proc/stat snapshot $1.
jiffies() {
	awk -v list="$2" '
	BEGIN {
		n = split(list, a, ",")
		for (i = 1; i <= n; i++)
			want["cpu" a[i]] = 1
	}
	$1 in want {
		busy += $2 + $3 + $4 + $7 + $8 + $9
		total += $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9
	}
	END { print busy, total }' "$1"
}

# Busy fraction of the CPUs in list $2 between snapshot $1 and now.
busy_since() {
	cat /proc/stat >"$T/stat1"
	echo "$(jiffies "$1" "$2") $(jiffies "$T/stat1" "$2")" | awk '
	    { if ($4 > $2) printf "%.3f\n", ($3 - $1) / ($4 - $2)
	      else print "null" }'
}

# ---- servers ------------------------------------------------------------------

start_tokend() {
	w=$1 cpus=$2
	TPORT=$(free_port)
	mkdir -p "$T/tokend-$w"
	cat >"$T/tokend-$w/tokend.conf" <<EOF
listen = 127.0.0.1:$TPORT
workers = $w
database_url = $URL
cache_dir = $T/tokend-$w/cache
log_file = $T/tokend-$w/tokend.log
log_level = warn
EOF
	$TASKSET -c "$cpus" $TOKEND -c "$T/tokend-$w/tokend.conf" \
	    >"$T/tokend-$w/stderr" 2>&1 &
	TPID=$!
	wait_up "$TPORT" /readyz || {
		cat "$T/tokend-$w/stderr" "$T/tokend-$w/tokend.log" >>"$LOG"
		die "tokend with $w workers did not start"
	}
}

start_nginx() {
	w=$1 cpus=$2
	NPORT=$(free_port)
	d=$T/nginx-$w
	mkdir -p "$d"
	user=""
	[ "$(id -u)" -ne 0 ] || user="user root;"
	cat >"$d/nginx.conf" <<EOF
$user
worker_processes $w;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    server {
        listen 127.0.0.1:$NPORT;
        location /auth { return 200; }
    }
}
EOF
	$TASKSET -c "$cpus" $NGINX -e "$d/error.log" -p "$d" -c "$d/nginx.conf" \
	    >"$d/stderr" 2>&1 &
	NPID=$!
	wait_up "$NPORT" /auth || {
		cat "$d/stderr" "$d/error.log" >>"$LOG" 2>/dev/null
		die "nginx with $w workers did not start"
	}
}

# Listening, then one second of wrk on PATH answered without errors.
wait_up() {
	i=0
	while ! listening "$1"; do
		[ $i -lt 150 ] || return 1
		sleep 0.1
		i=$((i + 1))
	done
	i=0
	while [ $i -lt 20 ]; do
		$WRK -t1 -c1 -d1s "http://127.0.0.1:$1$2" 2>&1 |
		    grep -q -e "Non-2xx" -e "errors" || return 0
		sleep 0.5
		i=$((i + 1))
	done
	return 1
}

stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	i=0
	while kill -0 "$1" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# One wrk run: prints "rps p50 p99 server_busy client_busy".
load() {
	port=$1 dur=$2 scpus=$3 ccpus=$4 threads=$5 conns=$6
	cat /proc/stat >"$T/stat0"
	pin "$ccpus" $WRK -t "$threads" -c "$conns" -d "${dur}s" --timeout 5s \
	    -s "$P/auth.lua" "http://127.0.0.1:$port/" >"$T/wrk.out" 2>&1 ||
	    true
	sb=$(busy_since "$T/stat0" "$scpus")
	cb=$(busy_since "$T/stat0" "$ccpus")
	sed -n 's/^BENCH_JSON //p' "$T/wrk.out" | awk -v sb="$sb" -v cb="$cb" '
	    { gsub(/[{}"]/, ""); n = split($0, kv, ",")
	      for (i = 1; i <= n; i++) { split(kv[i], p, ":"); v[p[1]] = p[2] }
	      rps = v["requests"] / (v["duration_us"] / 1e6)
	      err = v["err_status"] + v["err_read"] + v["err_connect"]
	      printf "%.1f %d %d %s %s %d\n", rps, v["p50_us"], v["p99_us"],
		  sb, cb, err }'
}

median() {
	sort -n | awk '{ a[NR] = $1 } END { if (NR == 0) print "null";
	    else if (NR % 2) print a[(NR + 1) / 2];
	    else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# ---- the run --------------------------------------------------------------------

TPID="" NPID=""
cleanup() {
	[ -z "$TPID" ] || stop_pid "$TPID"
	[ -z "$NPID" ] || stop_pid "$NPID"
	stop_pg
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NCPU=$(getconf _NPROCESSORS_ONLN)
MODEL=$(grep -m1 "model name" /proc/cpuinfo | sed 's/.*: //')
ORDER=$(cpu_order)
log "$NCPU CPUs ($MODEL); order $(commas $ORDER); $BINARIES"
start_pg
make_tokens
log "PostgreSQL up, 1,000 PATs"

RES=$T/results
: >"$RES"
for w in $WORKERS; do
	[ "$w" -lt "$NCPU" ] || { log "skip $w workers: $NCPU CPUs"; continue; }
	scpus=$(commas $(echo "$ORDER" | head -n "$w"))
	ccpus=$(commas $(echo "$ORDER" | tail -n +"$((w + 1))"))
	nc=$(echo "$ORDER" | tail -n +"$((w + 1))" | wc -l)
	threads=$((nc < 8 ? nc : 8))
	conns=$((CPW * w))
	[ "$conns" -ge "$threads" ] || conns=$threads
	start_tokend "$w" "$scpus"
	start_nginx "$w" "$scpus"
	load "$TPORT" 3 "$scpus" "$ccpus" "$threads" "$conns" >/dev/null
	load "$NPORT" 2 "$scpus" "$ccpus" "$threads" "$conns" >/dev/null
	r=1
	while [ $r -le "$ROUNDS" ]; do
		t=$(load "$TPORT" "$DUR" "$scpus" "$ccpus" "$threads" "$conns")
		n=$(load "$NPORT" "$DUR" "$scpus" "$ccpus" "$threads" "$conns")
		echo "$w tokend $r $t" >>"$RES"
		echo "$w nginx $r $n" >>"$RES"
		log "W=$w round $r: tokend $t | nginx $n"
		r=$((r + 1))
	done
	echo "$w cpus $scpus $ccpus $threads $conns" >>"$RES"
	stop_pid "$TPID"
	stop_pid "$NPID"
	TPID="" NPID=""
done
cp "$RES" "$OUT/raw.txt"

# ---- scaling.json ----------------------------------------------------------------

json_side() {
	side=$1
	first=1
	printf '{'
	for w in $WORKERS; do
		grep -q "^$w $side " "$RES" || continue
		rps=$(awk -v w="$w" -v s="$side" '$1 == w && $2 == s { print $4 }' \
		    "$RES" | median)
		p50=$(awk -v w="$w" -v s="$side" '$1 == w && $2 == s { print $5 }' \
		    "$RES" | median)
		p99=$(awk -v w="$w" -v s="$side" '$1 == w && $2 == s { print $6 }' \
		    "$RES" | median)
		sb=$(awk -v w="$w" -v s="$side" '$1 == w && $2 == s { print $7 }' \
		    "$RES" | median)
		cb=$(awk -v w="$w" -v s="$side" '$1 == w && $2 == s { print $8 }' \
		    "$RES" | median)
		rounds=$(awk -v w="$w" -v s="$side" '$1 == w && $2 == s {
		    printf "%s%s", sep, $4; sep = "," }' "$RES")
		[ $first -eq 1 ] || printf ','
		first=0
		printf '"%s":{"rps":%s,"p50_us":%s,"p99_us":%s,' "$w" "$rps" \
		    "$p50" "$p99"
		printf '"server_cpu_busy":%s,"client_cpu_busy":%s,"rounds":[%s]}' \
		    "$sb" "$cb" "$rounds"
	done
	printf '}'
}

json_eff() {
	side=$1
	base_w="" base=""
	first=1
	printf '{'
	for w in $WORKERS; do
		grep -q "^$w $side " "$RES" || continue
		rps=$(awk -v w="$w" -v s="$side" '$1 == w && $2 == s { print $4 }' \
		    "$RES" | median)
		[ -n "$base" ] || { base=$rps; base_w=$w; }
		[ $first -eq 1 ] || printf ','
		first=0
		awk -v w="$w" -v r="$rps" -v b="$base" -v bw="$base_w" \
		    'BEGIN { printf "\"%s\":%.3f", w, r / (b * w / bw) }'
	done
	printf '}'
}

{
	printf '{"machine":{"model":"%s","cores":%s,"kernel":"%s"},' \
	    "$MODEL" "$NCPU" "$(uname -r)"
	printf '"workers":[%s],' "$(for w in $WORKERS; do
	    grep -q "^$w tokend " "$RES" && echo "$w"; done | paste -sd, -)"
	printf '"cpus":{%s},' "$(awk '$2 == "cpus" { printf "%s\"%s\":{\"server\":\"%s\",\"client\":\"%s\",\"wrk_threads\":%s,\"conns\":%s}", sep, $1, $3, $4, $5, $6; sep = "," }' "$RES")"
	printf '"tokend":%s,"nginx":%s,' "$(json_side tokend)" \
	    "$(json_side nginx)"
	printf '"efficiency":%s,"nginx_efficiency":%s,' "$(json_eff tokend)" \
	    "$(json_eff nginx)"
	printf '"rounds":%s,"duration_s":%s,"conns_per_worker":%s,' \
	    "$ROUNDS" "$DUR" "$CPW"
	printf '"binaries":"%s",' "$BINARIES"
	printf '"note":"%s"}\n' "median of $ROUNDS rounds of $DUR s, tokend and nginx alternating; wrk with min(8, free CPUs) threads and $CPW connections per worker on the CPUs the servers do not use; PostgreSQL 15 from the pack (needed for start-up and the warm-up misses only)"
} >"$OUT/scaling.json"
log "wrote $OUT/scaling.json"
cat "$OUT/scaling.json"
