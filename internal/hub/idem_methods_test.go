package hub_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// idemCount returns junction_idempotent_requests_total{outcome}.
func (ts *testServer) idemCount(t testing.TB, outcome string) float64 {
	t.Helper()
	mfs, err := ts.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "junction_idempotent_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// waitUntil polls cond; the deadline only turns a hang into a failure.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func callIdem(t testing.TB, c *client.Client, method string, params any, idem string, result any) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return c.CallIdem(ctx, method, params, idem, result)
}

// TestChannelPublishIdem: a repeated channel.publish answers the first
// position and subscribers see one publication; another topic or data with
// the key is a conflict.
func TestChannelPublishIdem(t *testing.T) {
	ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
		{Pattern: "room:{roomId}", Subscribe: []string{"any"}, Publish: []string{"any"}, HistorySize: 10},
	}}, nil)
	alice := ts.dial(t, "alice/a1/read,write")
	bob := ts.dial(t, "bob/b1/read")
	rb := newRecorder(bob)
	mustCall(t, bob, "channel.subscribe", map[string]any{"topic": "room:1"}, nil)

	params := map[string]any{"topic": "room:1", "data": map[string]int{"n": 1}}
	var first, again protocol.PublishResult
	if err := callIdem(t, alice, "channel.publish", params, "k1", &first); err != nil {
		t.Fatal(err)
	}
	if err := callIdem(t, alice, "channel.publish", params, "k1", &again); err != nil {
		t.Fatal(err)
	}
	if first.Offset != 1 || again != first {
		t.Fatalf("got positions %+v then %+v, want offset 1 twice", first, again)
	}
	// The same data spelled with other whitespace is the same request.
	raw := json.RawMessage(`{"topic":"room:1","data":{ "n" : 1 }}`)
	if err := callIdem(t, alice, "channel.publish", raw, "k1", &again); err != nil || again != first {
		t.Fatalf("respaced repeat: got %+v, %v, want %+v", again, err, first)
	}
	for name, p := range map[string]any{
		"other data":  map[string]any{"topic": "room:1", "data": map[string]int{"n": 2}},
		"other topic": map[string]any{"topic": "room:2", "data": map[string]int{"n": 1}},
	} {
		err := callIdem(t, alice, "channel.publish", p, "k1", nil)
		if codeOf(err) != protocol.CodeConflict {
			t.Fatalf("%s with the key: got %v, want conflict", name, err)
		}
	}
	// Keys are per principal: bob's k1 is his own (and he may not publish).
	var second protocol.PublishResult
	if err := callIdem(t, alice, "channel.publish", map[string]any{"topic": "room:1", "data": 2}, "k2", &second); err != nil || second.Offset != 2 {
		t.Fatalf("new key: got %+v, %v, want offset 2", second, err)
	}
	rb.waitFor(t, "offset 2", func() bool {
		msgs := rb.msgs["room:1"]
		return len(msgs) > 0 && msgs[len(msgs)-1].Offset == 2
	})
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if n := len(rb.msgs["room:1"]); n != 2 {
		t.Fatalf("subscriber got %d publications, want 2 (the repeats published nothing)", n)
	}
}

// TestChannelPublishIdemInFlight holds the first publish in its owner
// lookup until a duplicate of the same principal waits for it: the
// duplicate answers the first position and one publication is made.
func TestChannelPublishIdemInFlight(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var lookups atomic.Int32
	ts := startHub(t, hub.Config{Namespaces: []hub.NamespaceConfig{
		{Pattern: "held:{id}", Subscribe: []string{"any"}, Publish: []string{"owner"}},
	}}, func(h *hub.Hub) {
		h.RegisterOwnerLookup("held", hub.OwnerFunc(func(ctx context.Context, _ hub.Topic) (string, error) {
			if lookups.Add(1) == 1 {
				close(entered)
				<-release
			}
			return "alice", nil
		}))
	})
	alice := ts.dial(t, "alice/a1/read,write")
	bob := ts.dial(t, "bob/b1/read")
	rb := newRecorder(bob)
	mustCall(t, bob, "channel.subscribe", map[string]any{"topic": "held:1"}, nil)
	unhold := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unhold) // on failure, before the hub closes

	var viaWS protocol.PublishResult
	wsErr := make(chan error, 1)
	go func() {
		wsErr <- callIdem(t, alice, "channel.publish", map[string]any{"topic": "held:1", "data": "x"}, "k", &viaWS)
	}()
	<-entered
	// The same principal on another path (REST uses this function).
	p := &auth.Principal{UserID: "alice", DeviceID: "a1", Kind: "phone", Scopes: []string{"read", "write"}}
	direct := make(chan json.RawMessage, 1)
	go func() {
		res, err := ts.hub.PublishIdempotent(context.Background(), p, "k", "held:1", json.RawMessage(`"x"`), nil)
		if err != nil {
			t.Error(err)
		}
		direct <- res
	}()
	waitUntil(t, "the duplicate to wait", func() bool { return ts.idemCount(t, "waited") == 1 })
	unhold()
	if err := <-wsErr; err != nil {
		t.Fatal(err)
	}
	var dup protocol.PublishResult
	if err := json.Unmarshal(<-direct, &dup); err != nil {
		t.Fatal(err)
	}
	if viaWS.Offset != 1 || dup != viaWS {
		t.Fatalf("got %+v (first) and %+v (duplicate), want offset 1 twice", viaWS, dup)
	}
	if n := lookups.Load(); n != 1 {
		t.Fatalf("owner lookups: got %d, want 1 (the duplicate did not run)", n)
	}
	// A marker publication after: everything before it has been delivered.
	mustCall(t, alice, "channel.publish", map[string]any{"topic": "held:1", "data": "end"}, nil)
	rb.waitFor(t, "the marker", func() bool {
		return len(rb.msgs["held:1"]) > 0 && rb.msgs["held:1"][len(rb.msgs["held:1"])-1].Offset == 2
	})
	rb.mu.Lock()
	defer rb.mu.Unlock()
	if n := len(rb.msgs["held:1"]); n != 2 {
		t.Fatalf("subscriber got %d publications, want 2 (one for both duplicates, the marker)", n)
	}
}

// TestRPCCallIdem: two concurrent rpc.call with one key run the target
// once; the second waits for the first and answers its result; a later
// repeat replays it; other params with the key are a conflict.
func TestRPCCallIdem(t *testing.T) {
	ts := startHub(t, hub.Config{}, nil)
	var runs atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	machine := client.New(client.Options{URL: ts.url(), Token: "alice/mac2/read,write," + auth.ScopeRPCServe})
	if err := machine.Serve("job.run", func(_ context.Context, req *client.RPCRequest) (any, error) {
		n := runs.Add(1)
		if n == 1 {
			close(entered)
			<-release
		}
		return map[string]any{"run": n, "params": req.Params}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := machine.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = machine.Close() })
	phone := ts.dial(t, "alice/p1/read,write")
	unhold := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unhold) // on failure, before the machine closes

	call := map[string]any{"target": map[string]string{"deviceId": "mac2"}, "method": "job.run", "params": map[string]int{"x": 1}}
	results := make([]string, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			var res json.RawMessage
			if err := callIdem(t, phone, "rpc.call", call, "r1", &res); err != nil {
				t.Error(err)
			}
			results[i] = string(res)
		})
	}
	<-entered
	waitUntil(t, "the duplicate call to wait", func() bool { return ts.idemCount(t, "waited") == 1 })
	unhold()
	wg.Wait()
	want := `{"params":{"x":1},"run":1}`
	for i, r := range results {
		if r != want {
			t.Errorf("call %d: got %s, want %s", i, r, want)
		}
	}
	var res json.RawMessage
	if err := callIdem(t, phone, "rpc.call", call, "r1", &res); err != nil || string(res) != want {
		t.Fatalf("later repeat: got %s, %v, want %s", res, err, want)
	}
	other := map[string]any{"target": map[string]string{"deviceId": "mac2"}, "method": "job.run", "params": map[string]int{"x": 2}}
	if err := callIdem(t, phone, "rpc.call", other, "r1", nil); codeOf(err) != protocol.CodeConflict {
		t.Fatalf("other params with the key: got %v, want conflict", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("target runs: got %d, want 1", n)
	}
	// Without idem the fast path runs the target each time.
	for i := range 2 {
		if err := callIdem(t, phone, "rpc.call", call, "", &res); err != nil {
			t.Fatal(err)
		}
		if got, want := string(res), fmt.Sprintf(`{"params":{"x":1},"run":%d}`, i+2); got != want {
			t.Fatalf("call without idem: got %s, want %s", got, want)
		}
	}
}

// TestIdempotentMethod: a method registered with Idempotent honours idem
// through the same records: a repeat answers the first result without
// running the handler, other params with the key are a conflict, and a
// request without idem runs every time.
func TestIdempotentMethod(t *testing.T) {
	var runs atomic.Int32
	ts := startHub(t, hub.Config{}, func(h *hub.Hub) {
		h.Register(hub.Method{Name: "test.bump", Scope: hub.ScopeAuthenticated, Idempotent: true,
			Handler: func(context.Context, *hub.Call) (any, error) { return map[string]int32{"n": runs.Add(1)}, nil }})
	})
	c := ts.dial(t, "alice/a1/read")
	var a, b, d map[string]int
	if err := callIdem(t, c, "test.bump", map[string]int{"x": 1}, "k", &a); err != nil {
		t.Fatal(err)
	}
	if err := callIdem(t, c, "test.bump", json.RawMessage(`{ "x": 1 }`), "k", &b); err != nil {
		t.Fatal(err)
	}
	if a["n"] != 1 || b["n"] != 1 || runs.Load() != 1 {
		t.Fatalf("got %v then %v after %d runs, want n=1 twice after 1 run", a, b, runs.Load())
	}
	if err := callIdem(t, c, "test.bump", map[string]int{"x": 2}, "k", nil); codeOf(err) != protocol.CodeConflict {
		t.Fatalf("other params with the key: got %v, want conflict", err)
	}
	if err := callIdem(t, c, "test.bump", map[string]int{"x": 1}, "", &d); err != nil || d["n"] != 2 {
		t.Fatalf("without idem: got %v, %v, want n=2", d, err)
	}
}

// TestRPCCallIdemAcrossReconnect: a call with idem is not ended when its
// caller disconnects; the caller reconnects, repeats the key, waits for the
// call in flight and gets its result; the target ran once.
func TestRPCCallIdemAcrossReconnect(t *testing.T) {
	ts := startHub(t, hub.Config{}, nil)
	var runs atomic.Int32
	entered := make(chan struct{})
	release := make(chan struct{})
	machine := client.New(client.Options{URL: ts.url(), Token: "alice/mac/read,write," + auth.ScopeRPCServe})
	if err := machine.Serve("job.run", func(ctx context.Context, req *client.RPCRequest) (any, error) {
		n := runs.Add(1)
		if n == 1 {
			close(entered)
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err() // cancelled: the test fails on runs or the result
			}
		}
		return map[string]int32{"run": n}, nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := machine.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = machine.Close() })
	unhold := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unhold)

	call := map[string]any{"target": map[string]string{"deviceId": "mac"}, "method": "job.run"}
	first := ts.dial(t, "alice/p1/read,write")
	go func() { _ = callIdem(t, first, "rpc.call", call, "r", nil) }()
	<-entered
	_ = first.Close() // the caller goes away mid-call

	again := ts.dial(t, "alice/p1/read,write")
	var res json.RawMessage
	errc := make(chan error, 1)
	go func() { errc <- callIdem(t, again, "rpc.call", call, "r", &res) }()
	waitUntil(t, "the repeat to wait", func() bool { return ts.idemCount(t, "waited") == 1 })
	unhold()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if string(res) != `{"run":1}` || runs.Load() != 1 {
		t.Fatalf("got %s after %d runs, want the first run's result after 1", res, runs.Load())
	}
}
