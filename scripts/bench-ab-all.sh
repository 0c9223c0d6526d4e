#!/usr/bin/env bash
# bench-ab-all.sh: same-run comparison of two server builds on the headline
# scenarios. Each round starts a fresh server from OLD, then from NEW, and runs
# fanout (10,000 subscribers, max rate), connect (64 connectors), idle (10,000
# connections) and relay (100 callers) against each with the same load client
# (CLIENT, default NEW), 10 s each. Prints one line per run: scenario, build,
# the JSON result line.
#
#   scripts/bench-ab-all.sh ROUNDS OLD NEW [CLIENT] > ab.out
set -uo pipefail
[ $# -ge 3 ] || { sed -n 2,9p "$0"; exit 2; }
rounds=$1 old=$2 new=$3 cli=${4:-$3}
DATA=$(mktemp -d /tmp/bench-ab-all.XXXXXX)
trap 'rm -rf "$DATA"' EXIT
run() { # name bin args...
  local name=$1 bin=$2; shift 2
  rm -rf "${DATA:?}"/*
  "$bin" serve --data "$DATA" --log-level error --hub-requests-per-second -1 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:7700/healthz >/dev/null && break; sleep 0.1; done
  local r
  r=$("$cli" bench --url ws://127.0.0.1:7700/ws --data "$DATA" --duration 10s --server-pid "$pid" --json "$@" 2>/dev/null | tail -1)
  echo "$name $bin $r"
  kill "$pid"; wait "$pid" 2>/dev/null
  sleep 1
}
for _ in $(seq "$rounds"); do
  for b in "$old" "$new"; do
    run fanout "$b" --scenario fanout --conns 10000 --rate 0
    run connect "$b" --scenario connect --conns 64
    run idle "$b" --scenario idle --conns 10000
    run relay "$b" --scenario relay --conns 100 --window 1
  done
done
