#!/usr/bin/env bash
# bench-cluster.sh: one node vs a cluster, side by side (issue 12, item 10).
#
# For each run and each mode it starts fresh servers, runs 'junction bench',
# and stops them:
#   single   one 'junction serve' with the in-memory broker;
#   cluster  redis-server (Debian's, 127.0.0.1, no persistence) and NODES
#            'junction serve' sharing it (--broker redis://...). Each node has
#            its own SQLite data directory holding one signing secret (copied
#            from the first node): channels and RPC keep nothing in the
#            database, so the benchmark needs no shared PostgreSQL.
# Scenarios (the same for both modes):
#   fanout   SUBS subscribers (spread round-robin over the nodes) of one
#            topic, one WebSocket publisher on the first node at RATE msg/s,
#            SIZE-byte payloads: deliveries/s, publish→deliver p50/p99, lost,
#            publish→acknowledgement p50/p99 (the publisher's round trip:
#            the server answers one connection's requests in order, so a
#            round trip longer than 1/RATE queues the publications), and
#            (cluster) Redis commands per publication from INFO
#            commandstats, Lua scripts' own commands included;
#   relay    CALLERS callers on the first node, one rpc.call in flight each,
#            to MACHINES machines on the other nodes: calls/s, p50/p99.
# GOMAXPROCS of each node: NODE_GOMAXPROCS, by default the node's share of
# the host's cores (cores / nodes, at least 1; the single node gets them
# all), as a CPU limit of that share would give a container (Go sets
# GOMAXPROCS from the cgroup's CPU limit). With Go's default, each of the
# 3 nodes on 2 cores would run 2 processors and 2 WebSocket writers for 2/3
# of a core: more, shorter writev calls per delivery and idle processors
# spinning (BENCHMARKS.md, "Cluster fan-out and RPC pass"). NODE_GOMAXPROCS=0
# keeps Go's default. The load client keeps Go's default.
# A fan-out delivery that arrives more than 10 s after the last
# acknowledgement is late (not in deliveries/s), one never received within
# DRAIN (bench --drain, 60s) is lost.
# Then a table of medians (RUNS runs each). Loopback only; every process is
# stopped on exit; each bench run is bounded by 'timeout'. Exits 1 when a run
# gave no result, an error or a lost publication.
#
#   scripts/bench-cluster.sh                        # full scale: 10,000 x 100/s, 100 callers, 10 s
#   SUBS=2000 RUNS=1 scripts/bench-cluster.sh       # smaller
# Environment: SUBS (10000) RATE (100) SIZE (100) CALLERS (100) MACHINES (2)
# DURATION (10s) DRAIN (60s) RUNS (1) NODES (3) NODE_GOMAXPROCS (see above) MODES ("single cluster") SCENARIOS
# ("fanout relay") PORT_BASE (7781: nodes on PORT_BASE.., Redis on
# PORT_BASE+20) BIN (/tmp/junction-bench-cluster, built from this tree;
# NOBUILD=1 uses BIN as it is) PPROF_BASE (unset: node i serves pprof on
# 127.0.0.1:PPROF_BASE+i, for CPU profiles of a run).
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${SUBS:-10000}
RATE=${RATE:-100}
SIZE=${SIZE:-100}
CALLERS=${CALLERS:-100}
MACHINES=${MACHINES:-2}
DURATION=${DURATION:-10s}
DRAIN=${DRAIN:-60s}
RUNS=${RUNS:-1}
NODES=${NODES:-3}
MODES=${MODES:-single cluster}
SCENARIOS=${SCENARIOS:-fanout relay}
PORT_BASE=${PORT_BASE:-7781}
BIN=${BIN:-/tmp/junction-bench-cluster}
REDIS_PORT=$((PORT_BASE + 20))
CORES=$(nproc)
[ "$NODES" -ge 2 ] && [ "$NODES" -le 16 ] || { echo "NODES=$NODES: want 2 to 16" >&2; exit 2; }
for tool in redis-server redis-cli jq curl timeout; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install redis-server jq curl)" >&2; exit 2; }
done

[ -n "${NOBUILD:-}" ] || go build -o "$BIN" ./cmd/junction
TMP=$(mktemp -d /tmp/bench-cluster.XXXXXX)
OUT=$TMP/results.jsonl
: >"$OUT"
PIDS=()
stop_all() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
trap 'stop_all; rm -rf "$TMP"' EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_ready() { # URL
  for _ in $(seq 300); do curl -fs "$1/readyz" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "$1 not ready in 30 s (logs in $TMP)" >&2; exit 1
}
start_node() { # INDEX DATA PROCS [ARGS...]: starts junction serve on PORT_BASE+INDEX
  local i=$1 data=$2 procs=$3 port=$((PORT_BASE + $1)); shift 3
  port_free "$port" || { echo "port $port is in use (set PORT_BASE)" >&2; exit 1; }
  [ -z "${PPROF_BASE:-}" ] || set -- "$@" --pprof-addr "127.0.0.1:$((PPROF_BASE + i))"
  local env=()
  [ "$procs" = 0 ] || env=(GOMAXPROCS="$procs")
  env "${env[@]}" "$BIN" serve --addr "127.0.0.1:$port" --data "$data" --log-level error --hub-requests-per-second -1 "$@" \
    >>"$TMP/node$i.log" 2>&1 &
  PIDS+=($!)
  NODE_PIDS+=($!)
  URLS+=("ws://127.0.0.1:$port/ws")
  wait_ready "http://127.0.0.1:$port"
}
start_single() {
  NODE_PIDS=() URLS=()
  rm -rf "$TMP/single"
  start_node 0 "$TMP/single" "${NODE_GOMAXPROCS:-$CORES}"
  DATA=$TMP/single
  EXTRA=()
}
start_cluster() {
  NODE_PIDS=() URLS=()
  port_free "$REDIS_PORT" || { echo "port $REDIS_PORT is in use (set PORT_BASE)" >&2; exit 1; }
  rm -rf "$TMP/redis" && mkdir -p "$TMP/redis"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --protected-mode yes --save '' --appendonly no \
    --dir "$TMP/redis" --logfile "$TMP/redis.log" --daemonize no &
  PIDS+=($!)
  REDIS_PID=$!
  for _ in $(seq 100); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  local i
  for i in $(seq 1 "$NODES"); do
    rm -rf "$TMP/node$i" && mkdir -p "$TMP/node$i"
    [ "$i" -eq 1 ] || cp "$TMP/node1/secret.key" "$TMP/node$i/secret.key"
    start_node "$i" "$TMP/node$i" "${NODE_GOMAXPROCS:-$(( CORES / NODES > 0 ? CORES / NODES : 1 ))}" --broker "redis://127.0.0.1:$REDIS_PORT" --hub-node-id "node$i"
  done
  DATA=$TMP/node1
  EXTRA=(--redis "127.0.0.1:$REDIS_PORT")
}
args_of() { # scenario → bench arguments
  case $1 in
    fanout) echo --scenario fanout --conns "$SUBS" --rate "$RATE" --size "$SIZE" ;;
    relay)  echo --scenario relay --conns "$CALLERS" --machines "$MACHINES" --window 1 ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
case $DURATION in
  *[0-9]s) secs=${DURATION%s}; limit=$(( ${secs%.*} + 180 + 600 )) ;; # bench's own bound: duration + drain (at most 10 min) + 90 s + setup
  *) limit=3900 ;; # bench bounds itself too (at most an hour plus setup)
esac
REDIS_PID=
failed=0
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; SUBS=$SUBS RATE=$RATE SIZE=$SIZE CALLERS=$CALLERS MACHINES=$MACHINES DURATION=$DURATION NODES=$NODES NODE_GOMAXPROCS=${NODE_GOMAXPROCS:-share} RUNS=$RUNS" >&2
for run in $(seq "$RUNS"); do
  for s in $SCENARIOS; do
    for mode in $MODES; do
      "start_$mode"
      pids=$(IFS=,; echo "${NODE_PIDS[*]}")
      urls=$(IFS=,; echo "${URLS[*]}")
      # shellcheck disable=SC2046
      line=$(timeout "$limit" "$BIN" bench --url "$urls" --data "$DATA" --duration "$DURATION" --drain "$DRAIN" --server-pid "$pids" \
        "${EXTRA[@]}" --json $(args_of "$s") 2>>"$TMP/bench.log" | tail -1) || true
      # Each node's broker and disconnect counters, so that a run that lost
      # something shows where (a queue overflow, a reset, a pub/sub
      # reconnect, subscribers cut).
      nodes_json=$(for u in "${URLS[@]}"; do
        h=${u#ws://}; h=${h%/ws}
        curl -fs "http://$h/metrics" 2>/dev/null | awk -v node="$h" '
          /^junction_broker_(resets|dropped|resubscribed|pubsub_errors|position_checks)_total / ||
          /^junction_broker_publications_total\{outcome="(filled|delivered)"\} / ||
          /^junction_disconnects_total\{/ && $2 != 0 { n[$1] = $2 }
          END { printf "{\"node\":\"%s\"", node; for (k in n) { q = k; gsub(/"/, "", q); printf ",\"%s\":%s", q, n[k] } print "}" }'
      done | jq -sc '.' 2>/dev/null || echo '[]')
      if [ -n "$REDIS_PID" ] && [ "$mode" = cluster ]; then
        redis_rss=$(awk '/VmRSS/ {print $2}' "/proc/$REDIS_PID/status" 2>/dev/null || echo 0)
      else
        redis_rss=0
      fi
      stop_all
      REDIS_PID=
      if [ -z "$line" ]; then
        echo "run $run $s $mode: no result:" >&2; tail -5 "$TMP/bench.log" >&2; failed=1; continue
      fi
      echo "$line" | jq -c --arg s "$s" --arg m "$mode" --argjson run "$run" --argjson rss "$redis_rss" --argjson nodes "$nodes_json" \
        '{run: $run, scenario: $s, mode: $m, redis_rss_kb: $rss} + . + {node_counters: $nodes}' | tee -a "$OUT"
      sleep 1
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Medians per scenario and mode, side by side.
jq -rs --arg nodes "$NODES" '
  def med(f): (map(f) | map(select(. != null)) | sort) as $v | if ($v|length) == 0 then null else $v[($v|length/2|floor)] end;
  def fmt(x; d): if x == null then "—" else (x * pow(10; d) | round / pow(10; d) | tostring) end;
  . as $all |
  def row($sc; name; f; d): "| \(name) | " + (["single", "cluster"] | map(. as $m | fmt($all | map(select(.mode == $m and .scenario == $sc)) | med(f); d)) | join(" | ")) + " |";
  "| figure | single node (memory broker) | cluster (\($nodes) nodes, Redis) |", "|---|---|---|",
  (if any(.[]; .scenario == "fanout") then
    row("fanout"; "fan-out: deliveries/s"; .fanout.deliveries_per_sec; 0),
    row("fanout"; "fan-out: steady deliveries/s (10-90 % of the phase)"; .fanout.steady_deliveries_per_sec; 0),
    row("fanout"; "fan-out: publications/s"; .fanout.publications_per_sec; 1),
    row("fanout"; "fan-out: p50 ms"; .latency.p50_ms; 1),
    row("fanout"; "fan-out: p99 ms"; .latency.p99_ms; 1),
    row("fanout"; "fan-out: publish → acknowledgement p50 ms (the publisher waits for it)"; .fanout.publish_ack.p50_ms; 2),
    row("fanout"; "fan-out: publish → acknowledgement p99 ms"; .fanout.publish_ack.p99_ms; 2),
    row("fanout"; "fan-out: lost + gaps + duplicates"; (.fanout.lost + .fanout.gaps + .fanout.duplicates); 0),
    row("fanout"; "fan-out: late (received > 10 s after the last acknowledgement)"; .fanout.late; 0),
    row("fanout"; "fan-out: subscriptions the server dropped (channel.unsubscribed)"; .fanout.unsubscribed; 0),
    row("fanout"; "fan-out: server CPU µs per delivery (all nodes)"; .server.cpu_us_per_delivery; 3),
    row("fanout"; "fan-out: Redis commands per publication"; .redis.commands_per_publication; 2),
    row("fanout"; "fan-out: Redis scripts per publication"; .redis.scripts_per_publication; 2),
    row("fanout"; "fan-out: Redis CPU s"; .redis.cpu_s; 2),
    row("fanout"; "fan-out: Redis RSS MB at the end"; (if .redis_rss_kb > 0 then .redis_rss_kb / 1024 else null end); 1)
  else empty end),
  (if any(.[]; .scenario == "relay") then
    row("relay"; "rpc.call (cluster: node 1 to the others): calls/s"; .relay.per_sec; 0),
    row("relay"; "rpc.call: p50 ms"; .latency.p50_ms; 3),
    row("relay"; "rpc.call: p99 ms"; .latency.p99_ms; 3),
    row("relay"; "rpc.call: server CPU µs per call (all nodes)"; .server.cpu_us_per_op; 1),
    row("relay"; "rpc.call: Redis commands per call"; .redis.commands_per_call; 2)
  else empty end)
' "$OUT"
bad=$(jq -rs 'map(select(.errors > 0 or .closed_early > 0 or .dial_errors > 0 or (.fanout.lost // 0) > 0)
  | "run \(.run) \(.scenario) \(.mode): \(.errors) errors, \(.closed_early) closed early, \(.dial_errors) dial errors, \(.fanout.lost // 0) lost (\(.fanout.arriving_after_drain // 0) arrived in the second after the drain): \(.first_error)") | .[]' "$OUT")
[ -z "$bad" ] || { echo "$bad" >&2; failed=1; }
exit "$failed"
