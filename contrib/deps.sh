#!/bin/sh
# `make deps`: make sure the Debian 12 packages tokend needs to build, test
# and benchmark are installed.  Quiet and quick when they are (CI runs it
# every time); installs them when run as root; otherwise prints the one
# apt-get line to run and fails.

PKGS="build-essential clang clang-tools make pkg-config libssl-dev libpq-dev
liblmdb-dev lmdb-utils libjansson-dev libcriterion-dev libargon2-dev zlib1g-dev
postgresql postgresql-contrib pgbouncer nginx-light wrk gnuplot-nox python3 procps curl openssl
mandoc debhelper fakeroot lintian systemd prometheus
chromium chromium-driver python3-selenium fonts-dejavu-core"

if ! command -v dpkg-query >/dev/null 2>&1; then
	echo "deps: no dpkg-query (not Debian?): install by hand:" $PKGS >&2
	exit 1
fi

# One dpkg-query for all of them; a package dpkg never heard of prints
# nothing (and an error we do not need), so it counts as missing.
# shellcheck disable=SC2086 # the list is meant to split into words
installed=" $(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $PKGS \
    2>/dev/null | awk '$2 == "installed" { printf "%s ", $1 }')"
missing=""
for p in $PKGS; do
	case "$installed" in
	*" $p "*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "deps: missing packages; run:" >&2
		echo "sudo apt-get install -y$missing"
		exit 1
	fi
	echo "deps: installing:$missing"
	apt-get update -q || exit 1
	# shellcheck disable=SC2086 # the list is meant to split into words
	DEBIAN_FRONTEND=noninteractive apt-get install -y \
	    --no-install-recommends $missing || exit 1
fi

# The OAuth client-library check (tests/node) uses a pinned package from the
# npm registry.  Without Node.js that one test is skipped, saying so.
if command -v npm >/dev/null 2>&1 &&
    [ ! -d tests/node/node_modules/oauth4webapi ]; then
	(cd tests/node && npm ci --no-audit --no-fund --loglevel=error) ||
	    exit 1
fi
exit 0
