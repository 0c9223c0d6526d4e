#!/usr/bin/env bash
# bench.sh: build junction, start a server on 127.0.0.1:7700 and run the
# 'junction bench' scenarios of BENCHMARKS.md RUNS times each, printing every
# JSON result line and the median of the headline figure.
#
#   scripts/bench.sh [scenario ...]   (default: connect rpc idle fanout fanout100 fanout10 relay)
#   RUNS=3 DURATION=10s scripts/bench.sh fanout
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
BIN=${BIN:-/tmp/junction}
DATA=${DATA:-/tmp/bench-data}
URL=ws://127.0.0.1:7700/ws
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=(connect rpc idle fanout fanout100 fanout10 relay)

go build -o "$BIN" ./cmd/junction
mkdir -p "$DATA"
SERVER=
stop_server() {
  if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=; fi
}
trap stop_server EXIT
# A fresh server for every run, so that one run's memory does not flatter the next.
start_server() {
  "$BIN" serve --data "$DATA" --log-level error --hub-requests-per-second -1 --apps-webhook-queue 16384 >>/tmp/bench-server.log 2>&1 &
  SERVER=$!
  for _ in $(seq 100); do curl -fs http://127.0.0.1:7700/healthz >/dev/null && return; sleep 0.1; done
  echo "server did not start (see /tmp/bench-server.log)" >&2; exit 1
}

# median FIELD: median of a jq expression over the JSON lines on stdin.
median() { jq -s "map($1) | sort | .[(length/2|floor)]"; }

for s in "${scenarios[@]}"; do
  case $s in
    connect)   args=(--scenario connect --conns 64);               field='.connect.per_sec' ;;
    connectsub) args=(--scenario connect --conns 64 --subscribe); field='.connect.per_sec' ;;
    rpc)       args=(--scenario rpc --conns 1000 --window 1);      field='.rpc.per_sec' ;;
    idle)      args=(--scenario idle --conns 10000);               field='.server.rss_per_conn_bytes' ;;
    idlesub)   args=(--scenario idle --conns 10000 --subscribe);   field='.server.rss_per_conn_bytes' ;;
    fanout)    args=(--scenario fanout --conns 10000 --rate 0);    field='.fanout.deliveries_per_sec' ;;
    appstreams) args=(--scenario appstreams --devices 200 --apps 50 --rate 5 --audio-rate 50 --size 320); field='.appstreams.transcript.latency.p99_ms' ;;
    fanout100) args=(--scenario fanout --conns 10000 --rate 100);  field='.latency.p99_ms' ;;
    fanout10)  args=(--scenario fanout --conns 10000 --rate 10);   field='.latency.p99_ms' ;;
    relay)     args=(--scenario relay --conns 100 --window 1);     field='.relay.per_sec' ;;
    relay10)   args=(--scenario relay --conns 10 --window 1);      field='.latency.p50_ms' ;;
    relay1)    args=(--scenario relay --conns 1 --window 1);       field='.latency.p50_ms' ;;
    *) echo "unknown scenario $s" >&2; exit 2 ;;
  esac
  out=/tmp/bench-$s.jsonl
  : >"$out"
  for _ in $(seq "$RUNS"); do
    start_server
    "$BIN" bench --url "$URL" --data "$DATA" --duration "$DURATION" --server-pid "$SERVER" --json "${args[@]}" | tee -a "$out"
    stop_server
    sleep 1
  done
  echo "$s median $field: $(median "$field" <"$out")"
done
