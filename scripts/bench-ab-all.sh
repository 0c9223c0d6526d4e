#!/usr/bin/env bash
# bench-ab-all.sh: same-run comparison of two server builds on the headline
# scenarios (issue 11's table). Each round starts a fresh server from OLD, then
# from NEW, for every scenario, and runs it with the same load client (CLIENT,
# default NEW), DURATION each (default 10s), interleaved so that the host's
# load swings hit both builds alike. Prints one line per run (scenario, build,
# the JSON result line), then the medians per scenario and build.
#
#   scripts/bench-ab-all.sh ROUNDS OLD NEW [CLIENT] > ab.out
#   SCENARIOS="fan1k mixed" DURATION=5s PORT=7791 scripts/bench-ab-all.sh 3 OLD NEW
#
# Scenarios (default: all but connect-sub): fan1k fan1k-ws fan10k fan10k-100
# fan10k-10 connect idle mixed relay relay10; connect-sub is connect with each
# connect subscribing to one channel (issue 11's connects row; a load client
# from before --subscribe refuses it). The fan-outs publish 100-byte payloads from 4
# keep-alive REST publishers (fan1k-ws: one WebSocket publisher); the client
# reads as fast as it can (--read-pause 0).
set -uo pipefail
[ $# -ge 3 ] || { sed -n 2,15p "$0"; exit 2; }
rounds=$1 old=$2 new=$3 cli=${4:-$3}
PORT=${PORT:-7700}
DURATION=${DURATION:-10s}
SCENARIOS=${SCENARIOS:-fan1k fan1k-ws fan10k fan10k-100 fan10k-10 connect idle mixed relay relay10}
DATA=$(mktemp -d /tmp/bench-ab-all.XXXXXX)
OUT=$(mktemp /tmp/bench-ab-all.out.XXXXXX)
trap 'rm -rf "$DATA" "$OUT"' EXIT
rest=(--publish-via rest --publishers 4 --size 100 --read-pause 0)
args_of() { # scenario → bench arguments
  case $1 in
    fan1k)      echo --scenario fanout --conns 1000 --rate 0 "${rest[@]}" ;;
    fan1k-ws)   echo --scenario fanout --conns 1000 --rate 0 --size 100 --read-pause 0 ;;
    fan10k)     echo --scenario fanout --conns 10000 --rate 0 "${rest[@]}" ;;
    fan10k-100) echo --scenario fanout --conns 10000 --rate 100 "${rest[@]}" ;;
    fan10k-10)  echo --scenario fanout --conns 10000 --rate 10 "${rest[@]}" ;;
    connect)    echo --scenario connect --conns 64 ;;
    connect-sub) echo --scenario connect --conns 64 --subscribe ;;
    idle)       echo --scenario idle --conns 10000 --subscribe ;;
    mixed)      echo --scenario mixed --conns 1000 --rate 0 "${rest[@]}" ;;
    relay)      echo --scenario relay --conns 100 --window 1 ;;
    relay10)    echo --scenario relay --conns 10 --window 1 ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
run() { # name bin
  local name=$1 bin=$2
  rm -rf "${DATA:?}"/*
  "$bin" serve --addr "127.0.0.1:$PORT" --data "$DATA" --log-level error --hub-requests-per-second -1 >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 300); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
  local r
  # shellcheck disable=SC2046
  r=$("$cli" bench --url "ws://127.0.0.1:$PORT/ws" --data "$DATA" --duration "$DURATION" --server-pid "$pid" --json $(args_of "$name") 2>/dev/null | tail -1)
  echo "$name $bin $r" | tee -a "$OUT"
  kill "$pid"; wait "$pid" 2>/dev/null
  sleep 1
}
for _ in $(seq "$rounds"); do
  for s in $SCENARIOS; do
    for b in "$old" "$new"; do
      run "$s" "$b"
    done
  done
done
# Medians per scenario and build of the figures issue 11's table names.
echo "== medians of $rounds"
for s in $SCENARIOS; do
  for b in "$old" "$new"; do
    grep "^$s $b {" "$OUT" | cut -d' ' -f3- | jq -s -c --arg s "$s" --arg b "$b" '
      def med(f): map(f | select(. != null)) | sort | if length == 0 then null else .[(length/2|floor)] end;
      {scenario: $s, build: $b, runs: length,
       deliveries_per_sec: med(.fanout.deliveries_per_sec), cpu_us_per_delivery: med(.server.cpu_us_per_delivery),
       deliveries_per_writev: med(.server.deliveries_per_write_syscall), lost: med(.fanout.lost),
       p50_ms: med(.latency.p50_ms), p99_ms: med(.latency.p99_ms),
       connects_per_sec: med(.connect.per_sec), cpu_us_per_op: med(.server.cpu_us_per_op),
       rss_per_conn_bytes: med(.server.rss_per_conn_bytes), calls_per_sec: med(.relay.per_sec),
       ping_p50_ms: med(.mixed.ping_latency.p50_ms), ping_p99_ms: med(.mixed.ping_latency.p99_ms),
       call_p50_ms: med(.mixed.call_latency.p50_ms), call_p99_ms: med(.mixed.call_latency.p99_ms),
       errors: med(.errors)} | with_entries(select(.value != null))'
  done
done
