package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/hub/brokertest"
	"github.com/junctionhq/junction/internal/store"
	"github.com/junctionhq/junction/protocol"
)

// TestStoreIdemRecordsContract runs the hub's IdemRecords contract against
// the store the binary keeps its idempotency records in (SQLite).
func TestStoreIdemRecordsContract(t *testing.T) {
	brokertest.Records(t, func(t *testing.T) hub.IdemRecords {
		ctx := context.Background()
		db, err := store.Open(ctx, filepath.Join(t.TempDir(), "junction.db"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		if _, err := db.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		return db
	})
}

// idemCount returns junction_idempotent_requests_total{outcome} of m.
func idemCount(t testing.TB, m *Main, outcome string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "junction_idempotent_requests_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return mt.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// heldServer starts the server with a namespace held:{id} whose publish
// rule asks an owner lookup that holds the first publication until release
// is called (or the test ends).
func heldServer(t *testing.T) (m *Main, entered <-chan struct{}, release func(), lookups *atomic.Int32) {
	t.Helper()
	in := make(chan struct{})
	out := make(chan struct{})
	lookups = new(atomic.Int32)
	m = startServer(t, withNamespaces(hub.NamespaceConfig{
		Pattern: "held:{id}", Subscribe: []string{"any"}, Publish: []string{"owner & scope=write"}, Owner: "heldtest", HistorySize: 10,
	}), func(m *Main) {
		m.ConfigureHub = func(h *hub.Hub) {
			h.RegisterOwnerLookup("heldtest", hub.OwnerFunc(func(context.Context, hub.Topic) (string, error) {
				if lookups.Add(1) == 1 {
					close(in)
					<-out
				}
				return "alice", nil
			}))
		}
	})
	release = sync.OnceFunc(func() { close(out) })
	t.Cleanup(release) // on failure, before the server closes
	return m, in, release, lookups
}

// collect subscribes c to topic and returns the publications received.
func collect(t *testing.T, c *client.Client, topic string) func() []client.Publication {
	t.Helper()
	var mu sync.Mutex
	var got []client.Publication
	if _, err := c.Subscribe(t.Context(), topic, func(p client.Publication) {
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return func() []client.Publication {
		mu.Lock()
		defer mu.Unlock()
		return append([]client.Publication(nil), got...)
	}
}

// TestPublishIdemE2E: channel.publish with idem and the REST publish with
// Idempotency-Key share one key space per principal. Two concurrent
// duplicates (WebSocket and REST) publish once and answer the same
// position; a repeat after the first replays it; the key with other data is
// a conflict; subscribers see one publication.
func TestPublishIdemE2E(t *testing.T) {
	m, entered, release, lookups := heldServer(t)
	pubs := collect(t, dialClient(t, m, "carol", "c1", "phone"), "held:1")
	alice := dialClient(t, m, "alice", "a1", "phone")
	tok := mintToken(t, m, "alice", "a1", "phone")

	type pos struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}
	var viaWS pos
	wsErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		wsErr <- alice.CallIdem(ctx, "channel.publish", map[string]any{"topic": "held:1", "data": map[string]int{"n": 1}}, "k1", &viaWS)
	}()
	<-entered
	type restRes struct {
		status int
		raw    []byte
	}
	rest := make(chan restRes, 1)
	go func() {
		status, raw := apiCall(t, m, tok, "POST", "/api/v1/channels/held:1/publish", `{"data": {"n": 1}}`, "Idempotency-Key", "k1")
		rest <- restRes{status, raw}
	}()
	eventually(t, "the REST duplicate to wait for the WebSocket publish", func() bool { return idemCount(t, m, "waited") == 1 })
	release()
	if err := <-wsErr; err != nil {
		t.Fatal(err)
	}
	r := <-rest
	var viaREST pos
	if r.status != 200 || json.Unmarshal(r.raw, &viaREST) != nil {
		t.Fatalf("REST duplicate: status %d, %s", r.status, r.raw)
	}
	if viaWS.Offset != 1 || viaREST != viaWS {
		t.Fatalf("got %+v (WebSocket) and %+v (REST), want offset 1 twice", viaWS, viaREST)
	}

	// Later repeats replay; other data with the key is a conflict.
	var again pos
	apiJSON(t, m, tok, "POST", "/api/v1/channels/held:1/publish", map[string]any{"data": map[string]int{"n": 1}}, 200, &again, "Idempotency-Key", "k1")
	if again != viaWS {
		t.Fatalf("REST repeat: got %+v, want %+v", again, viaWS)
	}
	if status, raw := apiCall(t, m, tok, "POST", "/api/v1/channels/held:1/publish", map[string]any{"data": map[string]int{"n": 2}}, "Idempotency-Key", "k1"); status != 409 {
		t.Fatalf("REST with the key and other data: status %d %s, want 409", status, raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := alice.CallIdem(ctx, "channel.publish", map[string]any{"topic": "held:1", "data": map[string]int{"n": 2}}, "k1", nil)
	if codeOf(err) != protocol.CodeConflict {
		t.Fatalf("WebSocket with the key and other data: got %v, want conflict", err)
	}
	// Another principal's key is its own.
	var other pos
	apiJSON(t, m, mintToken(t, m, "alice", "a2", "phone"), "POST", "/api/v1/channels/held:1/publish", map[string]any{"data": "other device"}, 200, &other, "Idempotency-Key", "k1")
	if other.Offset != 2 {
		t.Fatalf("another device's k1: got %+v, want offset 2", other)
	}
	if n := lookups.Load(); n != 2 {
		t.Fatalf("publish rule checks: got %d, want 2 (the duplicates and repeats did not run)", n)
	}
	eventually(t, "offset 2 at the subscriber", func() bool {
		got := pubs()
		return len(got) > 0 && got[len(got)-1].Offset == 2
	})
	if got := pubs(); len(got) != 2 || got[0].Offset != 1 {
		t.Fatalf("subscriber got %d publications %+v, want offsets 1 and 2 once each", len(got), got)
	}
}

// TestPublishIdemSurvivesRestart: the binary keeps idempotency records in
// the store, so a repeat after a restart answers the first position and
// publishes nothing.
func TestPublishIdemSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	ns := hub.NamespaceConfig{Pattern: "room:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, HistorySize: 10}
	configure := func(c *Config) {
		c.Data = dir
		withNamespaces(ns)(c)
	}
	m := startServer(t, configure)
	tok := mintToken(t, m, "alice", "a1", "phone")
	var first struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}
	apiJSON(t, m, tok, "POST", "/api/v1/channels/room:1/publish", map[string]any{"data": 1}, 200, &first, "Idempotency-Key", "restart")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}

	m2 := startServer(t, configure)
	var again = first
	again.Offset = 0
	apiJSON(t, m2, tok, "POST", "/api/v1/channels/room:1/publish", map[string]any{"data": 1}, 200, &again, "Idempotency-Key", "restart")
	if again != first {
		t.Fatalf("repeat after restart: got %+v, want the first %+v", again, first)
	}
	var hist protocol.HistoryResult
	apiJSON(t, m2, tok, "GET", "/api/v1/channels/room:1/history", nil, 200, &hist)
	if len(hist.Publications) != 0 {
		t.Fatalf("history after the repeat: got %d publications, want 0 (the repeat published nothing)", len(hist.Publications))
	}
}

// TestRPCCallIdemE2E: two concurrent rpc.call with one key run the target
// once; the second waits for the first (counted before the target answers)
// and both get its result; a later repeat replays it; other params with the
// key are a conflict.
func TestRPCCallIdemE2E(t *testing.T) {
	m := rpcServer(t, nil)
	var runs atomic.Int32
	entered := make(chan struct{})
	out := make(chan struct{})
	release := sync.OnceFunc(func() { close(out) })
	machine(t, m, "u1", "mac1", false, map[string]client.RPCHandler{"job.run": func(_ context.Context, req *client.RPCRequest) (any, error) {
		n := runs.Add(1)
		if n == 1 {
			close(entered)
			<-out
		}
		return map[string]any{"run": n, "params": req.Params}, nil
	}})
	t.Cleanup(release) // on failure, before the machine closes
	phone := dialClient(t, m, "u1", "phone1", "phone")

	params := map[string]any{"x": 1}
	results := make([]string, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var res json.RawMessage
			err := phone.CallIdem(ctx, "rpc.call", map[string]any{"target": map[string]string{"deviceId": "mac1"}, "method": "job.run", "params": params}, "job-1", &res)
			if err != nil {
				t.Error(err)
			}
			results[i] = string(res)
		})
	}
	<-entered
	eventually(t, "the duplicate call to wait", func() bool { return idemCount(t, m, "waited") == 1 })
	release()
	wg.Wait()
	const want = `{"params":{"x":1},"run":1}`
	for i, r := range results {
		if r != want {
			t.Errorf("call %d: got %s, want %s", i, r, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var res json.RawMessage
	if err := phone.CallIdem(ctx, "rpc.call", map[string]any{"target": map[string]string{"deviceId": "mac1"}, "method": "job.run", "params": params}, "job-1", &res); err != nil || string(res) != want {
		t.Fatalf("later repeat: got %s, %v, want %s", res, err, want)
	}
	err := phone.CallIdem(ctx, "rpc.call", map[string]any{"target": map[string]string{"deviceId": "mac1"}, "method": "job.run", "params": map[string]int{"x": 2}}, "job-1", nil)
	if codeOf(err) != protocol.CodeConflict {
		t.Fatalf("other params with the key: got %v, want conflict", err)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("target runs: got %d, want 1", n)
	}
}
