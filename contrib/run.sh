#!/bin/sh
# `make run`: tokend in the foreground, ready to try.
#
# The configuration file is $TOKEND_CONFIG, else ./tokend.conf when there is
# one, else none (defaults).  When no database_url is set (neither
# TOKEND_DATABASE_URL nor the file's database_url), a throwaway PostgreSQL
# is started under ./var/pg on port 5433 (Unix socket only) and stopped
# again when tokend exits.  The schema is migrated, a user demo (password
# demo), a public first-party client demo and a PAT are created, and curl
# lines to try are printed, with a browser URL that signs demo in through
# the code flow and a device-flow example.  Ctrl-C (or SIGTERM, or SIGHUP) stops everything
# this script started, and nothing it did not.

set -u

die() {
	echo "run: $*" >&2
	exit 1
}

# The last `key = value` of the config file; empty when absent.
conf_get() {
	[ -n "$cfg" ] || return 0
	sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$cfg" |
	    tail -n 1 | sed 's/[[:space:]]*$//'
}

cleanup() {
	trap - EXIT HUP INT TERM
	# With the terminal or the pipe gone, a message must not kill us
	# before the cluster is stopped.
	trap '' PIPE
	if [ -n "$tokend_pid" ]; then
		kill -TERM "$tokend_pid" 2>/dev/null
		wait "$tokend_pid" 2>/dev/null
	fi
	if [ -n "$pg_started" ]; then
		echo "run: stopping the PostgreSQL under $pgdir"
		sh contrib/pg.sh stop "$pgdir"
	fi
}

tokend_pid=""
pg_started=""
pgdir="$PWD/var/pg"
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

cfg="${TOKEND_CONFIG:-}"
[ -z "$cfg" ] && [ -f tokend.conf ] && cfg=tokend.conf
[ -z "$cfg" ] || [ -r "$cfg" ] || die "$cfg: cannot read the config file"

url="${TOKEND_DATABASE_URL:-$(conf_get database_url)}"
if [ -z "$url" ]; then
	# Let the postgres user through ./var even under a strict umask.
	mkdir -p -m 755 var || exit 1
	sh contrib/pg.sh status "$pgdir" 2>/dev/null || pg_started=yes
	url=$(sh contrib/pg.sh start "$pgdir" 5433) || exit 1
	echo "run: PostgreSQL under $pgdir: $url"
fi
export TOKEND_DATABASE_URL="$url"

# The cache goes under ./var unless the operator chose a place.
if [ -z "${TOKEND_CACHE_DIR:-}" ] && [ -z "$(conf_get cache_dir)" ]; then
	export TOKEND_CACHE_DIR="$PWD/var/cache"
fi

ctl() {
	bin/tokenctl --database-url "$url" "$@"
}

ctl migrate >/dev/null || die "tokenctl migrate failed"

# "already exists" on the second run is expected; anything else is not.
out=$(printf demo | ctl user add demo --password-stdin 2>&1) ||
    case "$out" in
    *"already exists"*) ;;
    *) die "tokenctl user add demo: $out" ;;
    esac
# The demo client: public and first-party (no consent page), with a
# loopback redirect URI (RFC 8252 7.3) where nothing listens: the browser
# shows the code in its address bar.  It may use the password grant too,
# for the one-line example.
redirect=http://127.0.0.1:8765/callback
client=yes
out=$(ctl client add demo --public --first-party --redirect-uri "$redirect" \
    --grant authorization_code --grant refresh_token --grant device_code \
    --grant password 2>&1) ||
    case "$out" in
    *"already exists"*) ;;
    *)
	echo "run: tokenctl client add demo: $(echo "$out" | head -n 1)" >&2
	client=""
	;;
    esac
# A demo client from before this script registered the redirect URI and
# the grants: say so rather than remove someone's client.
browser=""
if [ -n "$client" ]; then
	shown=$(ctl client show demo 2>/dev/null)
	case "$shown" in
	*"$redirect"*"device_code"*) browser=yes ;;
	*)
		echo "run: client demo predates the browser and device" \
		    "examples; \`bin/tokenctl client remove demo\` and run" \
		    "again for them" >&2
		;;
	esac
fi
pat=$(ctl pat create --user demo --name make-run) ||
    die "tokenctl pat create failed"

addr="${TOKEND_LISTEN:-$(conf_get listen)}"
case "$addr" in
"" | unix:*) addr=127.0.0.1:8080 ;;
esac

# PKCE (RFC 7636): a random verifier and its S256 challenge.
b64url() {
	base64 | tr -d '=\n' | tr '+/' '-_'
}
verifier=$(openssl rand 32 | b64url)
challenge=$(printf %s "$verifier" | openssl dgst -sha256 -binary | b64url)
device=urn:ietf:params:oauth:grant-type:device_code

echo
echo "Try it (user demo, password demo; a PAT was made for demo):"
echo
echo "  curl -i -H \"Authorization: Bearer $pat\" http://$addr/auth"
if [ -n "$client" ]; then
	echo "  curl -s -d grant_type=password -d client_id=demo" \
	    "-d username=demo -d password=demo http://$addr/token"
fi
if [ -n "$browser" ] && [ -n "$verifier" ] && [ -n "$challenge" ]; then
	echo
	echo "Sign in as demo in a browser (the code flow with PKCE); the page"
	echo "you land on does not load, its address carries code=...:"
	echo
	echo "  http://$addr/authorize?response_type=code&client_id=demo&redirect_uri=http%3A%2F%2F127.0.0.1%3A8765%2Fcallback&state=demo&code_challenge=$challenge&code_challenge_method=S256"
	echo
	echo "then exchange that code (within a minute) for tokens:"
	echo
	echo "  curl -s -d grant_type=authorization_code -d client_id=demo" \
	    "-d redirect_uri=$redirect -d code_verifier=$verifier" \
	    "-d code=CODE http://$addr/token"
	echo
	echo "Sign a device in (RFC 8628): ask for a code, open the"
	echo "verification_uri_complete it gives in a browser, sign in as demo,"
	echo "approve, then poll every interval seconds until tokens come:"
	echo
	echo "  curl -s -d client_id=demo http://$addr/device_authorization"
	echo "  curl -s -d grant_type=$device -d client_id=demo" \
	    "-d device_code=DEVICE_CODE http://$addr/token"
fi
echo

if [ -n "$cfg" ]; then
	bin/tokend -c "$cfg" &
else
	bin/tokend &
fi
tokend_pid=$!
wait "$tokend_pid"
status=$?
tokend_pid=""
exit "$status"
