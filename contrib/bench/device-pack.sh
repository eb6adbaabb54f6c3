#!/bin/sh
# Pack what contrib/bench/scaling.sh needs into contrib/bench/pack/ (git-
# ignored) and contrib/bench/pack.tar.gz, for a machine that has none of
# it: no PostgreSQL, nginx or wrk, no Debian libraries, no network.
#
#   sh contrib/bench/device-pack.sh [BINDIR]     (default BINDIR: ./bin)
#
# The pack:
#   bin/      tokend, tokenctl, mint, wrk, nginx, taskset
#   lib/      every shared library ldd lists for them and for PostgreSQL,
#             except glibc's own
#   glibc/    glibc's libraries and its loader, ld-linux-x86-64.so.2
#   pg/       PostgreSQL 15's postgres, initdb, pg_ctl, psql and its
#             extension libraries and share directory, in the same relative
#             layout as on Debian (usr/lib/postgresql/15/{bin,lib},
#             usr/share/postgresql/15), so that PostgreSQL finds its share
#             and lib directories relative to its binaries
#   auth.lua, scaling.sh
#
# tokend, wrk, nginx and taskset run as `glibc/ld-linux-x86-64.so.2
# --library-path lib:glibc BINARY`: this host's glibc, whatever the other
# machine has.  PostgreSQL's programs exec one another (initdb and pg_ctl
# start postgres), which a loader given on the command line does not
# follow, so they run on the other machine's own glibc (any glibc at least
# as new as Debian 12's 2.36 will do) with LD_LIBRARY_PATH=lib.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BINDIR=${1:-$ROOT/bin}
PACK=$ROOT/contrib/bench/pack
PGV=15
PGBIN=/usr/lib/postgresql/$PGV/bin
PGLIB=/usr/lib/postgresql/$PGV/lib
PGSHARE=/usr/share/postgresql/$PGV

die() {
	echo "device-pack: $*" >&2
	exit 1
}

for f in "$BINDIR/tokend" "$BINDIR/tokenctl" "$PGBIN/postgres" \
    "$PGBIN/initdb" "$PGBIN/pg_ctl" "$PGBIN/psql"; do
	[ -x "$f" ] || die "$f: missing (make all; make deps)"
done
WRK=$(command -v wrk) || die "no wrk (make deps)"
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "no nginx (make deps)"
TASKSET=$(command -v taskset) || die "no taskset"

rm -rf "$PACK" "$PACK.tar.gz"
mkdir -p "$PACK/bin" "$PACK/lib" "$PACK/glibc" \
    "$PACK/pg/usr/lib/postgresql/$PGV/bin" \
    "$PACK/pg/usr/lib/postgresql/$PGV/lib" "$PACK/pg/usr/share/postgresql"

cc -std=c11 -O2 -D_GNU_SOURCE -I"$ROOT" -o "$PACK/bin/mint" \
    "$ROOT/contrib/bench/mint.c" "$ROOT/proto/token.c" -lcrypto -lz
cp "$BINDIR/tokend" "$BINDIR/tokenctl" "$WRK" "$NGINX" "$TASKSET" \
    "$PACK/bin/"
for p in postgres initdb pg_ctl psql; do
	cp "$PGBIN/$p" "$PACK/pg/usr/lib/postgresql/$PGV/bin/"
done
for so in "$PGLIB"/*.so; do
	case "$so" in
	*/llvmjit*) ;;		# JIT: off without LLVM, and large
	*) cp "$so" "$PACK/pg/usr/lib/postgresql/$PGV/lib/" ;;
	esac
done
cp -r "$PGSHARE" "$PACK/pg/usr/share/postgresql/"
cp "$ROOT/contrib/bench/auth.lua" "$ROOT/contrib/bench/scaling.sh" "$PACK/"

# Every library any of them loads, resolved on this host.  glibc's own go
# apart: they must come with their loader, never alone.
for f in "$PACK"/bin/* "$PACK"/pg/usr/lib/postgresql/$PGV/bin/* \
    "$PACK"/pg/usr/lib/postgresql/$PGV/lib/*.so; do
	ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 }
	    $1 ~ /^\/.*ld-linux/ { print $1 }'
done | sort -u | while read -r lib; do
	case "$(basename "$lib")" in
	ld-linux*|libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|\
	libresolv.so*|libutil.so*|libanl.so*|libnss_*|libmvec.so*)
		cp -L "$lib" "$PACK/glibc/" ;;
	*)
		cp -L "$lib" "$PACK/lib/" ;;
	esac
done
[ -e "$PACK/glibc/ld-linux-x86-64.so.2" ] || die "no loader found"

{
	echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
	"$PACK/bin/tokend" --version
	"$WRK" -v 2>&1 | head -n 1
	"$NGINX" -v 2>&1
	"$PGBIN/postgres" --version
	ldd --version | head -n 1
} >"$PACK/VERSIONS"

tar -C "$ROOT/contrib/bench" -czf "$PACK.tar.gz" pack
echo "device-pack: $(du -sh "$PACK" | cut -f1) in $PACK," \
    "$(du -sh "$PACK.tar.gz" | cut -f1) as $PACK.tar.gz"
