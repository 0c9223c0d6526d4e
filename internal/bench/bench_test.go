package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// runBench runs 'junction bench' with args as cmd/junction does (without a
// token minter: these runs pass --token).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := ParseFlags(args, stderr)
	if err != nil {
		return err
	}
	return Run(ctx, cfg, stdout, stderr)
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
		{"mixed", []string{"--scenario", "mixed", "--data", "d", "--publish-via", "rest", "--publishers", "4"}, ""},
		{"mixed without data", []string{"--scenario", "mixed", "--token", "x"}, "--data"},
		{"mixed in processes", []string{"--scenario", "mixed", "--data", "d", "--procs", "2"}, "--procs"},
		{"ws publishers", []string{"--scenario", "fanout", "--token", "x", "--publishers", "2"}, "--publishers"},
		{"unknown publish path", []string{"--scenario", "fanout", "--token", "x", "--publish-via", "mqtt"}, "--publish-via"},
		{"drain", []string{"--scenario", "fanout", "--token", "x", "--drain", "2m"}, ""},
		{"drain shorter than the late mark", []string{"--scenario", "fanout", "--token", "x", "--drain", "5s"}, "--drain"},
		{"unbounded drain", []string{"--scenario", "fanout", "--token", "x", "--drain", "1h"}, "--drain"},
		{"negative read pause", []string{"--scenario", "fanout", "--token", "x", "--read-pause", "-1ms"}, "--read-pause"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFlags(tc.args, &bytes.Buffer{})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestBenchReadPauseDefault checks that every scenario's client reads as
// fast as it can unless --read-pause asks otherwise (issue 11: a client that
// pauses its reads flatters the server's batching).
func TestBenchReadPauseDefault(t *testing.T) {
	for _, sc := range []string{"fanout", "rpc", "idle"} {
		cfg, err := ParseFlags([]string{"--scenario", sc, "--token", "x"}, &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ReadPause != 0 {
			t.Errorf("%s: got read pause %s, want 0", sc, cfg.ReadPause)
		}
	}
	cfg, err := ParseFlags([]string{"--scenario", "fanout", "--token", "x", "--read-pause", "1ms"}, &bytes.Buffer{})
	if err != nil || cfg.ReadPause != time.Millisecond {
		t.Fatalf("got read pause %v (%v), want 1ms", cfg.ReadPause, err)
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
	cfg, err := ParseFlags([]string{"--scenario", "fanout", "--token", "x", "--conns", "30", "--procs", "2"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	// Two children, 20 and 10 subscribers (child 0 publishes: offsets 6..100
	// after subscribing at 5, and child 1's subscribers at 5 and 10).
	rs := []*Result{
		{Opened: 21, DurationS: 2, Hist: []uint64{1, 2}, Fanout: &FanoutResult{Subscribers: 20, Publications: 95,
			Deliveries: 20 * 95, DeliveriesPerSec: 950, FinalOffset: 100, SumStartOffset: 20 * 5,
			PublishAck: &LatencyStats{Count: 95, P50Ms: 1.5}}},
		{Opened: 10, DurationS: 3, Errors: 1, FirstError: "boom", Hist: []uint64{0, 1, 4}, Fanout: &FanoutResult{Subscribers: 10,
			Deliveries: 5*95 + 5*90 - 7, Late: 25, DeliveriesPerSec: 400, SumStartOffset: 5*5 + 5*10,
			ClientCPUUsPerDelivery: 2}},
	}
	got := mergeResults(cfg, rs)
	f := got.Fanout
	wantExpected := int64(20*95 + 5*95 + 5*90)
	if f.Subscribers != 30 || f.Publications != 95 || f.Expected != wantExpected || f.Lost != 7 || f.DeliveriesPerSec != 1350 {
		t.Errorf("fanout: got %+v, want 30 subscribers, 95 publications, expected %d, lost 7, 1350 deliveries/s", f, wantExpected)
	}
	// Late deliveries are received, so not lost, but not in the phase:
	// client CPU per delivery is over the others (child 1: 2 µs × 893).
	if f.Late != 25 {
		t.Errorf("late: got %d, want 25 (child 1's)", f.Late)
	}
	if want := 2 * float64(5*95+5*90-7-25) / float64(20*95+5*95+5*90-7-25); math.Abs(f.ClientCPUUsPerDelivery-want) > 1e-9 {
		t.Errorf("client CPU per delivery: got %g, want %g (over the deliveries in the phase)", f.ClientCPUUsPerDelivery, want)
	}
	if a := f.PublishAck; a == nil || a.Count != 95 || a.P50Ms != 1.5 {
		t.Errorf("publish → acknowledgement: got %+v, want the publishing child's (95 samples, p50 1.5 ms)", a)
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

// TestBenchAwaitDeliveries: the measured phase ends when every delivery
// arrived, at the latest lateAfter after the last acknowledgement; what
// arrives after that, within the drain, is late, and what never arrives is
// lost (the wait gives up at the drain).
func TestBenchAwaitDeliveries(t *testing.T) {
	const expected = 100
	for _, tc := range []struct {
		name     string
		before   int64 // delivered before the wait starts
		afterEnd int64 // delivered by endPhase (after the phase ended)
		wantLate int64
		wantLost int64
	}{
		{"all on time", expected, 0, 0, 0},
		{"some late", 60, 40, 40, 0},
		{"some lost", 60, 30, 30, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			n.Store(tc.before)
			var onTime int64
			ends := 0
			start := time.Now()
			awaitDeliveries(context.Background(), 20*time.Millisecond, 200*time.Millisecond,
				func() bool { return n.Load() >= expected },
				func() {
					ends++
					onTime = n.Load()
					n.Add(tc.afterEnd) // arriving during the drain
				})
			if ends != 1 {
				t.Fatalf("endPhase called %d times, want once", ends)
			}
			if late, lost := n.Load()-onTime, expected-n.Load(); late != tc.wantLate || lost != tc.wantLost {
				t.Errorf("late %d, lost %d; want %d, %d", late, lost, tc.wantLate, tc.wantLost)
			}
			// A wait that never completes gives up at the drain, not before.
			if waited := time.Since(start); tc.wantLost > 0 && waited < 200*time.Millisecond {
				t.Errorf("waited %s with %d lost; want the whole 200ms drain", waited, tc.wantLost)
			}
		})
	}
}

// TestBenchResubscribed: a subscriber the server dropped with resubscribe
// advised resubscribes from its last position; the publications the server
// recovered count as received, in order, and a resubscription it could not
// resume starts over at the server's position (what it skipped stays lost).
func TestBenchResubscribed(t *testing.T) {
	req := resubscribeRequest("bench:fanout", "e1", 4)
	var sent struct {
		ID     string                   `json:"id"`
		Method string                   `json:"method"`
		Params protocol.SubscribeParams `json:"params"`
	}
	if err := json.Unmarshal(req, &sent); err != nil {
		t.Fatalf("resubscribe request %s: %v", req, err)
	}
	if sent.ID != resubscribeID || sent.Method != "channel.subscribe" || sent.Params.Topic != "bench:fanout" ||
		sent.Params.Since == nil || *sent.Params.Since != (protocol.StreamPosition{Epoch: "e1", Offset: 4}) {
		t.Fatalf("resubscribe request %s", req)
	}
	if got := scanString([]byte(`{"type":"res","id":"sub","ok":true,"result":{"epoch":"abc","offset":3}}`), markEpoch); got != "abc" {
		t.Fatalf("epoch of a subscribe answer: %q, want abc", got)
	}

	r := &benchRun{m: &meter{}}
	bc := &benchConn{run: r, kind: kindSubscriber, last: 4, epoch: "e1"}
	recovered := []byte(`{"type":"res","id":"resub","ok":true,"result":{"epoch":"e1","offset":8,"recovered":true,"publications":[` +
		`{"offset":5,"epoch":"e1","data":{"ts":1},"timeMs":1},{"offset":6,"epoch":"e1","data":{"ts":2},"timeMs":1},` +
		`{"offset":8,"epoch":"e1","data":{"ts":3},"timeMs":1}]}}`)
	id, ok, isRes := responseID(recovered)
	if !isRes || !ok || string(id) != resubscribeID {
		t.Fatalf("responseID: %q %v %v", id, ok, isRes)
	}
	bc.resubscribed(recovered, ok)
	if bc.recv.Load() != 3 || bc.gaps.Load() != 1 || bc.last != 8 || r.m.deliveries.Load() != 3 || bc.unrecovered.Load() != 0 {
		t.Fatalf("after a recovered resubscription: recv %d gaps %d last %d deliveries %d unrecovered %d; want 3 1 8 3 0",
			bc.recv.Load(), bc.gaps.Load(), bc.last, r.m.deliveries.Load(), bc.unrecovered.Load())
	}
	bc.resubscribed([]byte(`{"type":"res","id":"resub","ok":true,"result":{"epoch":"e2","offset":20,"recovered":false}}`), true)
	if bc.unrecovered.Load() != 1 || bc.epoch != "e2" || bc.last != 20 || bc.recv.Load() != 3 {
		t.Fatalf("after an unrecovered resubscription: unrecovered %d epoch %q last %d recv %d; want 1 e2 20 3",
			bc.unrecovered.Load(), bc.epoch, bc.last, bc.recv.Load())
	}
	bc.resubscribed([]byte(`{"type":"res","id":"resub","ok":false,"error":{"code":"unavailable","message":"x"}}`), false)
	if r.errs.Load() != 1 {
		t.Fatalf("a refused resubscription was not counted as an error")
	}
}
