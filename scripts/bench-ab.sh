#!/usr/bin/env bash
# bench-ab.sh: compare builds in one run. Each round starts a fresh server from
# one binary and runs 'junction bench --scenario connect' from another, for
# every SERVER:CLIENT pair in turn, ROUNDS times, interleaved, so that the
# host's load swings hit every pair alike. Prints one line per run: the pair,
# [connects/s, server CPU µs per connect, connects] and the client's user and
# system CPU seconds.
#
#   scripts/bench-ab.sh ROUNDS /tmp/old:/tmp/old /tmp/new:/tmp/old /tmp/new:/tmp/new
#   SCENARIO="idle --conns 10000" scripts/bench-ab.sh 2 /tmp/old:/tmp/old /tmp/new:/tmp/new
#
# Build the binaries first, e.g. from a worktree: git worktree add /tmp/wt OLD &&
# (cd /tmp/wt && go build -o /tmp/old ./cmd/junction).
set -uo pipefail
[ $# -ge 2 ] || { sed -n 2,13p "$0"; exit 2; }
rounds=$1; shift
SCENARIO=${SCENARIO:-connect --conns 64}
DATA=$(mktemp -d /tmp/bench-ab.XXXXXX)
trap 'rm -rf "$DATA"' EXIT
for _ in $(seq "$rounds"); do
  for pair in "$@"; do
    srv=${pair%%:*}; cli=${pair##*:}
    rm -rf "$DATA"/*
    "$srv" serve --data "$DATA" --log-level error --hub-requests-per-second -1 >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -fs http://127.0.0.1:7700/healthz >/dev/null && break; sleep 0.1; done
    # shellcheck disable=SC2086
    r=$( { /usr/bin/time -f "%U %S" "$cli" bench --url ws://127.0.0.1:7700/ws --data "$DATA" --duration 10s \
      --server-pid "$pid" --json --scenario $SCENARIO 2>"$DATA.err"; } )
    echo "$(basename "$srv")/$(basename "$cli") $(echo "$r" | jq -c '[(.connect.per_sec // .server.rss_per_conn_bytes), (.server.cpu_us_per_op // .server.heap_stack_per_conn_bytes), .opened]') client_cpu_s $(tail -1 "$DATA.err")"
    kill "$pid"; wait "$pid" 2>/dev/null
    sleep 1
  done
done
rm -f "$DATA.err"
