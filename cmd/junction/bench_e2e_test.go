package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/junctionhq/junction/internal/bench"
)

// End-to-end tests of 'junction bench' against the real server (the load
// generator itself is internal/bench; its unit tests are there).

// runBenchJSON runs 'junction bench --json' with args against m and decodes
// the result line.
func runBenchJSON(t *testing.T, m *Main, args ...string) *bench.Result {
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
	var res bench.Result
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
		{"rest publishers", []string{"--window", "16", "--publish-via", "rest", "--publishers", "3"}},
		{"read pause", []string{"--window", "16", "--read-pause", "1ms"}},
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
			// The steady rate counts the deliveries of the phase's middle
			// 80 %: some, and no more than there were.
			if f.SteadyDeliveriesPerSec <= 0 || f.SteadyDeliveriesPerSec*0.8 > float64(f.Deliveries)*1.01 {
				t.Errorf("steady deliveries/s: got %g for %d deliveries in 1s, want > 0 and at most what 0.8 s of them make", f.SteadyDeliveriesPerSec, f.Deliveries)
			}
			if f.Late < 0 || f.Late > f.Deliveries {
				t.Errorf("late: got %d of %d deliveries, want a part of them", f.Late, f.Deliveries)
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
			// Every acknowledged publication has its round trip measured
			// (the WebSocket publisher may have a few unanswered at the
			// deadline, counted in neither).
			if a := f.PublishAck; a == nil || a.Count < uint64(f.Publications) || a.P50Ms <= 0 || a.MaxMs < a.P50Ms {
				t.Errorf("publish → acknowledgement: got %+v, want a sample per acknowledged publication (%d)", a, f.Publications)
			}
		})
	}
}

// TestBenchMixed runs the mixed scenario: a fan-out at max rate from REST
// publishers while pingers and relayed callers run; their round trips are
// reported beside the fan-out's figures.
func TestBenchMixed(t *testing.T) {
	m := startServer(t, noRateLimit)
	const subs, pingers, callers = 40, 3, 4
	res := runBenchJSON(t, m, "--scenario", "mixed", "--conns", strconv.Itoa(subs), "--duration", "1s",
		"--pingers", strconv.Itoa(pingers), "--callers", strconv.Itoa(callers), "--machines", "2",
		"--publish-via", "rest", "--publishers", "2", "--window", "16", "--topic", "public:bench-mixed",
		"--server-pid", strconv.Itoa(os.Getpid()))
	f, mx := res.Fanout, res.Mixed
	if f == nil || f.Publications == 0 || mx == nil {
		t.Fatalf("got fanout %+v, mixed %+v (first error %q), want publications", f, mx, res.FirstError)
	}
	if f.Subscribers != subs || f.Deliveries != f.Publications*subs || f.Lost != 0 || f.Duplicates != 0 || f.Gaps != 0 {
		t.Errorf("got %d subscribers, %d deliveries, %d lost, %d duplicates, %d gaps; want %d, %d×%d, 0, 0, 0",
			f.Subscribers, f.Deliveries, f.Lost, f.Duplicates, f.Gaps, subs, f.Publications, subs)
	}
	if mx.Pingers != pingers || mx.Pings == 0 || mx.PingLatency == nil || mx.PingLatency.Count < uint64(mx.Pings) {
		t.Errorf("pings: got %+v (latency %+v), want %d pingers with a latency sample per ping", mx, mx.PingLatency, pingers)
	}
	if mx.Callers != callers || mx.Machines != 2 || mx.Calls == 0 || mx.CallLatency == nil || mx.CallLatency.Count < uint64(mx.Calls) {
		t.Errorf("calls: got %+v (latency %+v), want %d callers, 2 machines, a latency sample per call", mx, mx.CallLatency, callers)
	}
	if want := int64(subs + pingers + 2 + callers); res.Opened != want {
		t.Errorf("opened: got %d, want %d (REST publishers open no WebSocket)", res.Opened, want)
	}
	if res.Errors != 0 || res.ClosedEarly != 0 {
		t.Errorf("got %d errors (%q), %d closed early; want 0, 0", res.Errors, res.FirstError, res.ClosedEarly)
	}
	if res.Latency == nil || res.Latency.Count != uint64(f.Deliveries) {
		t.Errorf("delivery latency samples: got %+v, want one per delivery (%d)", res.Latency, f.Deliveries)
	}
}

// TestBenchConnectSubscribed runs the connect scenario with --subscribe
// (issue 11's connects row: one channel each): every connect subscribes
// before closing, and a subscription the server refuses fails the connect.
func TestBenchConnectSubscribed(t *testing.T) {
	m := startServer(t, nil)
	res := runBenchJSON(t, m, "--scenario", "connect", "--conns", "4", "--duration", "1s", "--subscribe", "--topic", "public:bench-connect",
		"--server-pid", strconv.Itoa(os.Getpid()))
	c := res.Connect
	if c == nil || c.Connects == 0 || !c.Subscribe {
		t.Fatalf("connects: got %+v, want subscribed connects", c)
	}
	if res.Errors != 0 || res.DialErrors != 0 {
		t.Errorf("errors: got %d (dial %d, first %q), want 0", res.Errors, res.DialErrors, res.FirstError)
	}
	if res.Latency == nil || res.Latency.Count != uint64(c.Connects) {
		t.Errorf("latency samples: got %+v, want one per connect (%d)", res.Latency, c.Connects)
	}
	// A topic of no namespace: the subscription is refused, so no connect counts.
	res = runBenchJSON(t, m, "--scenario", "connect", "--conns", "2", "--duration", "300ms", "--subscribe", "--topic", "nosuch:bench")
	if res.Connect == nil || res.Connect.Connects != 0 || res.DialErrors == 0 || !strings.Contains(res.FirstError, "subscribe") {
		t.Errorf("refused subscription: got %+v, %d failed connects, first error %q; want no connect and errors naming the subscription",
			res.Connect, res.DialErrors, res.FirstError)
	}
}
