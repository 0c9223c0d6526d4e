#!/bin/sh
# test-deps.sh: install what the test suite starts as real processes, and
# only that: PostgreSQL's server binaries (initdb, postgres), redis-server,
# HAProxy (the cluster failure tests' load balancer) and Chromium, from
# Debian's packages when they are missing. Idempotent;
# needs no stdin; prints what it did. It never starts a service: the tests
# start their own servers on free loopback ports as the user running them
# (internal/store/pgtest, internal/redistest), and a policy-rc.d stops the
# packages' maintainer scripts from starting the system ones.
#
# Chromium (Debian's package, /usr/bin/chromium) runs the TypeScript SDK's
# browser tests (sdk/ts/test/browser.test.mjs, driven by playwright-core).
#
# Usage: scripts/test-deps.sh
# Needs root (or passwordless sudo) only when something is missing; with
# PostgreSQL, Redis and Chromium installed it runs as any user and changes
# nothing.
set -eu

have_postgres() {
	if command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1; then
		return 0
	fi
	for d in /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
			return 0
		fi
	done
	return 1
}

have_redis() {
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]
}

missing=""
if have_postgres; then
	echo "test-deps: postgresql: present"
else
	echo "test-deps: postgresql: missing"
	missing="$missing postgresql"
fi
if have_redis; then
	echo "test-deps: redis-server: present"
else
	echo "test-deps: redis-server: missing"
	missing="$missing redis-server"
fi

# --- cluster failure tests: HAProxy in front of several junction processes ---
have_haproxy() {
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]
}
if have_haproxy; then
	echo "test-deps: haproxy: present"
else
	echo "test-deps: haproxy: missing"
	missing="$missing haproxy"
fi

# --- sdk/ts: the browser tests' headless Chromium ---------------------------
have_chromium() {
	[ -x /usr/bin/chromium ]
}
if have_chromium; then
	echo "test-deps: chromium: present"
else
	echo "test-deps: chromium: missing"
	missing="$missing chromium"
fi
# --- end sdk/ts ---------------------------------------------------------------

if [ -z "$missing" ]; then
	echo "test-deps: nothing to install"
	exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
	SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	SUDO="sudo -n"
else
	echo "test-deps: need root (or passwordless sudo) to install:$missing" >&2
	echo "test-deps: or install it yourself (Debian/Ubuntu: apt-get install$missing; the tests need only initdb and postgres on PATH or in /usr/lib/postgresql/*/bin, redis-server and haproxy on PATH, and /usr/bin/chromium)" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: apt-get not found; install$missing by hand" >&2
	exit 1
fi

# Keep the packages' postinst scripts from starting services (exit 101 =
# "action forbidden"), unless the host already has a policy of its own.
policy=/usr/sbin/policy-rc.d
added_policy=0
if [ ! -e "$policy" ]; then
	$SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 0755 $policy"
	added_policy=1
fi
cleanup() {
	if [ "$added_policy" -eq 1 ]; then
		$SUDO rm -f "$policy"
	fi
}
trap cleanup EXIT INT TERM

export DEBIAN_FRONTEND=noninteractive
echo "test-deps: apt-get update"
$SUDO apt-get update -q </dev/null
echo "test-deps: apt-get install -y --no-install-recommends$missing"
# shellcheck disable=SC2086 # $missing is a word list on purpose
$SUDO apt-get install -y -q --no-install-recommends $missing </dev/null

status=0
if have_postgres; then echo "test-deps: postgresql: installed"; else echo "test-deps: postgresql: still missing" >&2; status=1; fi
if have_redis; then echo "test-deps: redis-server: installed"; else echo "test-deps: redis-server: still missing" >&2; status=1; fi
if have_haproxy; then echo "test-deps: haproxy: installed"; else echo "test-deps: haproxy: still missing" >&2; status=1; fi
if have_chromium; then echo "test-deps: chromium: installed"; else echo "test-deps: chromium: still missing" >&2; status=1; fi
exit $status
