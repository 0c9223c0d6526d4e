package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/bench"
	"github.com/junctionhq/junction/internal/redistest"
)

// TestBenchCluster runs 'junction bench' against three junction processes
// sharing a real redis-server (what scripts/bench-cluster.sh measures, at a
// tiny scale), so that the multi-node tooling cannot rot: subscribers spread
// over the nodes receive every publication of a publisher on the first
// node; relayed calls go from callers on the first node to machines on the
// others; Redis commands per publication come from INFO commandstats; the
// server CPU is summed over the three processes.
func TestBenchCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and three junction processes")
	}
	rs := redistest.New(t, redistest.Options{})
	bin := buildJunction(t)
	var nodes []*served
	var urls, pids []string
	var data0 string
	for i := range 3 {
		data := filepath.Join(t.TempDir(), "data")
		if i > 0 {
			// One signing secret for every node: bench's tokens, minted
			// with the first node's key, verify on each.
			secret, err := os.ReadFile(filepath.Join(data0, "secret.key"))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(data, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(data, "secret.key"), secret, 0o600); err != nil {
				t.Fatal(err)
			}
		} else {
			data0 = data
		}
		s, _ := startBinaryData(t, bin, data, "--broker", rs.URL(), "--hub-node-id", fmt.Sprintf("node%d", i+1),
			"--hub-requests-per-second", "-1", "--log-level", "error")
		nodes = append(nodes, s)
		urls = append(urls, "ws"+strings.TrimPrefix(s.url, "http")+"/ws")
		pids = append(pids, strconv.Itoa(s.cmd.Process.Pid))
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, s := range nodes {
				t.Logf("node%d stderr:\n%s", i+1, s.stderr)
			}
		}
	})
	run := func(t *testing.T, args ...string) *bench.Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		args = append([]string{"--url", strings.Join(urls, ","), "--data", data0, "--json", "--duration", "1s",
			"--server-pid", strings.Join(pids, ","), "--redis", strings.TrimPrefix(rs.URL(), "redis://")}, args...)
		var stdout, stderr bytes.Buffer
		if err := runBench(ctx, args, &stdout, &stderr); err != nil {
			t.Fatalf("bench %v: %v\nstderr: %s", args, err, stderr.String())
		}
		var res bench.Result
		if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
			t.Fatalf("decode result %q: %v", stdout.String(), err)
		}
		if res.Nodes != 3 {
			t.Errorf("nodes: got %d, want 3", res.Nodes)
		}
		if res.Errors != 0 || res.ClosedEarly != 0 || res.DialErrors != 0 {
			t.Errorf("got %d errors (%q), %d closed early, %d dial errors; want 0, 0, 0", res.Errors, res.FirstError, res.ClosedEarly, res.DialErrors)
		}
		if s := res.Server; s == nil || len(s.PIDs) != 3 || s.CPUSeconds <= 0 {
			t.Errorf("server: got %+v, want CPU summed over 3 processes", s)
		}
		if r := res.Redis; r == nil || r.Error != "" || r.Shards != 1 || r.Commands <= 0 {
			t.Fatalf("redis: got %+v, want the commands of one shard", r)
		}
		return &res
	}

	t.Run("fanout", func(t *testing.T) {
		before := nodeCounters(t, nodes)
		const subs = 30
		res := run(t, "--scenario", "fanout", "--conns", strconv.Itoa(subs), "--window", "16", "--size", "100",
			"--topic", "public:bench-cluster")
		f := res.Fanout
		if f == nil || f.Publications == 0 || f.Subscribers != subs {
			t.Fatalf("fanout: got %+v, want publications to %d subscribers", f, subs)
		}
		if f.Deliveries != f.Publications*subs || f.Lost != 0 || f.Duplicates != 0 || f.Gaps != 0 {
			t.Errorf("got %d deliveries, %d lost, %d duplicates, %d gaps; want %d×%d, 0, 0, 0",
				f.Deliveries, f.Lost, f.Duplicates, f.Gaps, f.Publications, subs)
		}
		if res.Latency == nil || res.Latency.Count != uint64(f.Deliveries) {
			t.Errorf("latency samples: got %+v, want one per delivery (%d)", res.Latency, f.Deliveries)
		}
		// One publish script per publication (Lua's own commands beside it).
		if r := res.Redis; r.Scripts < f.Publications || r.CommandsPerPublication <= 1 || r.ByCommand["publish"] < f.Publications {
			t.Errorf("redis: got %d scripts, %.2f commands per publication, by command %v; want at least a script and a PUBLISH per publication (%d)",
				r.Scripts, r.CommandsPerPublication, r.ByCommand, f.Publications)
		}
		// The publisher was on node 1, a third of the subscribers on each
		// node: node 1 published them all, every node had them delivered.
		after := nodeCounters(t, nodes)
		for i := range nodes {
			published := after[i]["published"] - before[i]["published"]
			delivered := after[i]["delivered"] - before[i]["delivered"]
			if want := map[bool]float64{true: float64(f.Publications), false: 0}[i == 0]; published != want {
				t.Errorf("node%d: published %g, want %g", i+1, published, want)
			}
			if delivered < float64(f.Publications) {
				t.Errorf("node%d: %g delivered by Redis, want at least %d (its subscribers)", i+1, delivered, f.Publications)
			}
		}
	})

	t.Run("relay", func(t *testing.T) {
		before := nodeCounters(t, nodes)
		res := run(t, "--scenario", "relay", "--conns", "4", "--machines", "2", "--window", "2")
		rr := res.Relay
		if rr == nil || rr.Calls == 0 || rr.Machines != 2 || rr.Callers != 4 {
			t.Fatalf("relay: got %+v, want calls from 4 callers to 2 machines", rr)
		}
		if res.Latency == nil || res.Latency.Count < uint64(rr.Calls) {
			t.Errorf("latency samples: got %+v, want at least %d", res.Latency, rr.Calls)
		}
		if r := res.Redis; r.CommandsPerCall <= 0 || r.ByCommand["publish"] < rr.Calls {
			t.Errorf("redis: got %.2f commands per call, by command %v; want at least a PUBLISH per call (%d)", r.CommandsPerCall, r.ByCommand, rr.Calls)
		}
		// Callers on node 1, machines on nodes 2 and 3: every call node 1
		// relayed went to another node.
		after := nodeCounters(t, nodes)
		if remote := after[0]["rpc_remote_ok"] - before[0]["rpc_remote_ok"]; remote < float64(rr.Calls) {
			t.Errorf("node1: %g calls relayed to another node, want at least %d", remote, rr.Calls)
		}
		if local := after[0]["rpc_local_ok"] - before[0]["rpc_local_ok"]; local != 0 {
			t.Errorf("node1: %g calls served on node 1, want 0", local)
		}
	})

	t.Run("connect subscribed", func(t *testing.T) {
		res := run(t, "--scenario", "connect", "--conns", "6", "--subscribe", "--topic", "public:bench-connect")
		if c := res.Connect; c == nil || c.Connects == 0 || !c.Subscribe {
			t.Fatalf("connect: got %+v, want subscribed connects", c)
		}
	})
}

// nodeCounters scrapes each node's broker publication counters
// (junction_broker_publications_total by outcome) and its relayed calls
// answered ok (junction_rpc_calls_total, as rpc_local_ok and rpc_remote_ok).
func nodeCounters(t *testing.T, nodes []*served) []map[string]float64 {
	t.Helper()
	out := make([]map[string]float64, len(nodes))
	for i, s := range nodes {
		resp, err := http.Get(s.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]float64{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if !ok || strings.HasPrefix(name, "#") {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				continue
			}
			switch {
			case strings.HasPrefix(name, "junction_broker_publications_total{"):
				for _, o := range []string{"published", "delivered"} {
					if strings.Contains(name, `outcome="`+o+`"`) {
						m[o] = v
					}
				}
			case strings.HasPrefix(name, "junction_rpc_calls_total{") && strings.Contains(name, `outcome="ok"`):
				for _, p := range []string{"local", "remote"} {
					if strings.Contains(name, `path="`+p+`"`) {
						m["rpc_"+p+"_ok"] = v
					}
				}
			}
		}
		resp.Body.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		out[i] = m
	}
	return out
}
