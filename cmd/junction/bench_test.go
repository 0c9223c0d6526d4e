package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// runBenchJSON runs 'junction bench --json' with args against m and decodes
// the result line.
func runBenchJSON(t *testing.T, m *Main, args ...string) *benchResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args = append([]string{"--url", m.WSURL() + "/ws", "--data", m.Config.Data, "--json"}, args...)
	var stdout, stderr bytes.Buffer
	if err := runBench(ctx, args, &stdout, &stderr); err != nil {
		t.Fatalf("bench %v: %v\nstderr: %s", args, err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("stdout: got %d lines, want 1 (--json): %q", len(lines), stdout.String())
	}
	var res benchResult
	if err := json.Unmarshal([]byte(lines[0]), &res); err != nil {
		t.Fatalf("decode result %q: %v", lines[0], err)
	}
	return &res
}

func noRateLimit(c *Config) { c.Hub.RequestsPerSecond = -1 }

func TestBenchConnect(t *testing.T) {
	m := startServer(t, nil)
	res := runBenchJSON(t, m, "--scenario", "connect", "--conns", "8", "--duration", "1s")
	if res.Connect == nil || res.Connect.Connects == 0 {
		t.Fatalf("connects: got %+v, want > 0", res.Connect)
	}
	if res.Errors != 0 || res.DialErrors != 0 {
		t.Errorf("errors: got %d (dial %d, first %q), want 0", res.Errors, res.DialErrors, res.FirstError)
	}
	if res.Latency == nil || res.Latency.Count != uint64(res.Connect.Connects) {
		t.Errorf("latency samples: got %+v, want one per connect (%d)", res.Latency, res.Connect.Connects)
	}
}

func TestBenchIdle(t *testing.T) {
	m := startServer(t, nil)
	res := runBenchJSON(t, m, "--scenario", "idle", "--conns", "50", "--duration", "1s",
		"--server-pid", strconv.Itoa(os.Getpid()))
	if res.Opened != 50 || res.ClosedEarly != 0 || res.Errors != 0 {
		t.Fatalf("got opened %d, closed early %d, errors %d (%q); want 50, 0, 0", res.Opened, res.ClosedEarly, res.Errors, res.FirstError)
	}
	if res.Server == nil || res.Server.RSSAfterBytes <= 0 || res.Server.HeapAfterBytes <= 0 {
		t.Fatalf("server stats: got %+v, want RSS from /proc and heap from /metrics", res.Server)
	}
}

func TestBenchIdleSubscribed(t *testing.T) {
	m := startServer(t, nil)
	done := make(chan int, 1)
	go func() {
		// Count the subscribers while the idle phase holds them.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if n := m.Hub.Subscribers("public:bench-idle"); n == 50 {
				done <- n
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		done <- m.Hub.Subscribers("public:bench-idle")
	}()
	res := runBenchJSON(t, m, "--scenario", "idle", "--subscribe", "--topic", "public:bench-idle", "--conns", "50", "--duration", "2s")
	if res.Opened != 50 || res.ClosedEarly != 0 || res.Errors != 0 {
		t.Fatalf("got opened %d, closed early %d, errors %d (%q); want 50, 0, 0", res.Opened, res.ClosedEarly, res.Errors, res.FirstError)
	}
	if n := <-done; n != 50 {
		t.Fatalf("the server saw at most %d subscribers, want 50", n)
	}
}

func TestBenchRPC(t *testing.T) {
	m := startServer(t, noRateLimit)
	res := runBenchJSON(t, m, "--scenario", "rpc", "--conns", "50", "--window", "2", "--duration", "1s")
	if res.RPC == nil || res.RPC.Pings == 0 {
		t.Fatalf("pings: got %+v, want > 0", res.RPC)
	}
	if res.Errors != 0 || res.Opened != 50 {
		t.Errorf("got %d errors (%q), %d opened; want 0, 50", res.Errors, res.FirstError, res.Opened)
	}
	if res.Latency == nil || res.Latency.Count < uint64(res.RPC.Pings) {
		t.Errorf("latency samples: got %+v, want at least %d", res.Latency, res.RPC.Pings)
	}
}

func TestBenchRelay(t *testing.T) {
	m := startServer(t, noRateLimit)
	res := runBenchJSON(t, m, "--scenario", "relay", "--conns", "20", "--machines", "2", "--window", "2",
		"--duration", "1s", "--server-pid", strconv.Itoa(os.Getpid()))
	rr := res.Relay
	if rr == nil || rr.Calls == 0 {
		t.Fatalf("calls: got %+v (first error %q), want > 0", rr, res.FirstError)
	}
	if rr.Callers != 20 || rr.Machines != 2 || res.Opened != 22 {
		t.Errorf("got %d callers, %d machines, %d opened; want 20, 2, 22", rr.Callers, rr.Machines, res.Opened)
	}
	if res.Errors != 0 || res.ClosedEarly != 0 {
		t.Errorf("got %d errors (%q), %d closed early; want 0, 0", res.Errors, res.FirstError, res.ClosedEarly)
	}
	if res.Latency == nil || res.Latency.Count < uint64(rr.Calls) {
		t.Errorf("latency samples: got %+v, want at least %d", res.Latency, rr.Calls)
	}
	if res.Server == nil || res.Server.CPUUsPerOp <= 0 {
		t.Errorf("server CPU per call: got %+v, want > 0", res.Server)
	}
	if rr.ClientCPUUsPerCall <= 0 {
		t.Errorf("client CPU per call: got %g, want > 0", rr.ClientCPUUsPerCall)
	}
}

func TestBenchFanout(t *testing.T) {
	m := startServer(t, noRateLimit)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"max rate", []string{"--window", "16"}},
		{"paced", []string{"--rate", "50"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const subs = 50
			args := append([]string{"--scenario", "fanout", "--conns", strconv.Itoa(subs), "--duration", "1s",
				"--topic", "public:bench-" + strings.ReplaceAll(tc.name, " ", "-"),
				"--server-pid", strconv.Itoa(os.Getpid())}, tc.args...)
			res := runBenchJSON(t, m, args...)
			f := res.Fanout
			if f == nil || f.Publications == 0 {
				t.Fatalf("publications: got %+v (first error %q), want > 0", f, res.FirstError)
			}
			if f.Subscribers != subs {
				t.Errorf("subscribers: got %d, want %d", f.Subscribers, subs)
			}
			if f.Deliveries != f.Publications*subs || f.Lost != 0 || f.Duplicates != 0 || f.Gaps != 0 {
				t.Errorf("got %d deliveries, %d lost, %d duplicates, %d gaps; want %d×%d, 0, 0, 0",
					f.Deliveries, f.Lost, f.Duplicates, f.Gaps, f.Publications, subs)
			}
			if res.Errors != 0 {
				t.Errorf("errors: got %d (%q), want 0", res.Errors, res.FirstError)
			}
			if res.Latency == nil || res.Latency.Count != uint64(f.Deliveries) {
				t.Errorf("latency samples: got %+v, want one per delivery (%d)", res.Latency, f.Deliveries)
			}
			if res.Server == nil || res.Server.CPUSeconds <= 0 {
				t.Errorf("server CPU: got %+v, want > 0", res.Server)
			}
			if f.ClientCPUUsPerDelivery <= 0 {
				t.Errorf("client CPU per delivery: got %g, want > 0", f.ClientCPUUsPerDelivery)
			}
		})
	}
}

func TestBenchRefusesNonLoopback(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"private address", []string{"--url", "ws://10.0.0.1:7700/ws"}},
		{"public address", []string{"--url", "ws://8.8.8.8/ws"}},
		{"host name", []string{"--url", "ws://example.com:7700/ws"}},
		{"IPv6 address", []string{"--url", "ws://[2001:db8::1]:7700/ws"}},
		{"non-loopback source", []string{"--sources", "127.0.0.2,192.168.1.10"}},
		{"unspecified source", []string{"--sources", "0.0.0.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--scenario", "idle", "--token", "x"}, tc.args...)
			var stdout, stderr bytes.Buffer
			err := runBench(context.Background(), args, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), "loopback") {
				t.Fatalf("got error %v, want a refusal naming loopback", err)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // substring of the error; "" for success
	}{
		{"ok", []string{"--scenario", "rpc", "--token", "x"}, ""},
		{"loopback sources", []string{"--scenario", "idle", "--token", "x", "--sources", "127.0.0.1,127.0.0.2"}, ""},
		{"no scenario", []string{"--token", "x"}, "--scenario"},
		{"unknown scenario", []string{"--scenario", "storm", "--token", "x"}, "unknown scenario"},
		{"no credential", []string{"--scenario", "rpc"}, "--token"},
		{"both credentials", []string{"--scenario", "rpc", "--token", "x", "--data", "d"}, "--token"},
		{"too many per process", []string{"--scenario", "idle", "--token", "x", "--conns", "30000"}, "--procs"},
		{"too many per source", []string{"--scenario", "idle", "--token", "x", "--conns", "60000", "--procs", "4"}, "--sources"},
		{"unbounded duration", []string{"--scenario", "idle", "--token", "x", "--duration", "48h"}, "--duration"},
		{"wss", []string{"--scenario", "idle", "--token", "x", "--url", "wss://127.0.0.1/ws"}, "ws://"},
		{"relay", []string{"--scenario", "relay", "--data", "d", "--machines", "4"}, ""},
		{"relay without data", []string{"--scenario", "relay", "--token", "x"}, "--data"},
		{"relay without machines", []string{"--scenario", "relay", "--data", "d", "--machines", "0"}, "--machines"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseBenchFlags(tc.args, &bytes.Buffer{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestBenchHistogram(t *testing.T) {
	var h histogram
	for i := int64(1); i <= 1000; i++ {
		h.record(i * int64(time.Millisecond)) // 1..1000 ms, uniform
	}
	st := summarize(h.counts())
	for _, tc := range []struct {
		name      string
		got, want float64
	}{
		{"p50", st.P50Ms, 500},
		{"p99", st.P99Ms, 990},
		{"p999", st.P999Ms, 999},
		{"max", st.MaxMs, 1000},
		{"mean", st.MeanMs, 500.5},
	} {
		if math.Abs(tc.got-tc.want)/tc.want > 0.07 {
			t.Errorf("%s: got %.1f ms, want %.1f ms ± 7%%", tc.name, tc.got, tc.want)
		}
	}
	if st.Count != 1000 {
		t.Errorf("count: got %d, want 1000", st.Count)
	}
	for _, v := range []int64{0, 1, 15, 16, 17, 31, 32, 1 << 20, 1<<40 + 12345} {
		if got := histValue(histIndex(v)); math.Abs(float64(got-v)) > float64(v)/16+1 {
			t.Errorf("bucket of %d: got value %d, want within 1/16", v, got)
		}
	}
}

func TestBenchMergeResults(t *testing.T) {
	cfg, err := parseBenchFlags([]string{"--scenario", "fanout", "--token", "x", "--conns", "30", "--procs", "2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	// Two children, 20 and 10 subscribers (child 0 publishes: offsets 6..100
	// after subscribing at 5, and child 1's subscribers at 5 and 10).
	rs := []*benchResult{
		{Opened: 21, DurationS: 2, Hist: []uint64{1, 2}, Fanout: &fanoutResult{Subscribers: 20, Publications: 95,
			Deliveries: 20 * 95, DeliveriesPerSec: 950, FinalOffset: 100, SumStartOffset: 20 * 5}},
		{Opened: 10, DurationS: 3, Errors: 1, FirstError: "boom", Hist: []uint64{0, 1, 4}, Fanout: &fanoutResult{Subscribers: 10,
			Deliveries: 5*95 + 5*90 - 7, DeliveriesPerSec: 400, SumStartOffset: 5*5 + 5*10}},
	}
	got := mergeResults(cfg, rs)
	f := got.Fanout
	wantExpected := int64(20*95 + 5*95 + 5*90)
	if f.Subscribers != 30 || f.Publications != 95 || f.Expected != wantExpected || f.Lost != 7 || f.DeliveriesPerSec != 1350 {
		t.Errorf("fanout: got %+v, want 30 subscribers, 95 publications, expected %d, lost 7, 1350 deliveries/s", f, wantExpected)
	}
	if got.Opened != 31 || got.DurationS != 3 || got.Errors != 1 || got.FirstError != "boom" {
		t.Errorf("totals: got opened %d, duration %g, errors %d %q; want 31, 3, 1, boom", got.Opened, got.DurationS, got.Errors, got.FirstError)
	}
	if want := []uint64{1, 3, 4}; !slices.Equal(got.Hist, want) {
		t.Errorf("histogram: got %v, want %v", got.Hist, want)
	}
}

func TestBenchMessageFields(t *testing.T) {
	tests := []struct {
		name           string
		data           string
		wantTS         uint64
		wantHasTS      bool
		offset, wantOf uint64
	}{
		{name: "timestamp first", data: `{"ts":1700000000000000001,"pad":"x"}`, wantTS: 1700000000000000001, wantHasTS: true, offset: 42, wantOf: 42},
		{name: "timestamp later", data: `{"pad":"x","ts":17}`, wantTS: 17, wantHasTS: true, offset: 7, wantOf: 7},
		{name: "no timestamp", data: `{"pad":"x"}`, offset: 1, wantOf: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := protocol.AppendEvent(nil, "channel.message", "bench:fanout", "e1f2", tt.offset, []byte(tt.data))
			if !bytes.HasPrefix(f, eventMessage) {
				t.Fatalf("frame %s does not start with %s", f, eventMessage)
			}
			off, ts, ok, hasTS := messageFields(f[len(eventMessage):])
			if !ok || off != tt.wantOf || ts != tt.wantTS || hasTS != tt.wantHasTS {
				t.Fatalf("got offset %d ts %d (%v, %v), want %d ts %d (true, %v)", off, ts, ok, hasTS, tt.wantOf, tt.wantTS, tt.wantHasTS)
			}
		})
	}
	if _, _, ok, _ := messageFields([]byte(`,"topic":"t","data":{"ts":1}}`)); ok {
		t.Fatalf("a frame without an offset was accepted")
	}
}
