package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/internal/redistest"
)

// inbox is a hub.NodeHandler that keeps what it receives.
type inbox struct {
	mu   sync.Mutex
	msgs []string // guarded by mu
}

func (n *inbox) HandleNodeMessage(m json.RawMessage) {
	n.mu.Lock()
	n.msgs = append(n.msgs, string(m))
	n.mu.Unlock()
}

func (n *inbox) list() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// sendPair starts node "a" (receiving into the returned inbox) and node
// "b" on one Redis, and a plain client of that Redis for the test.
func sendPair(t *testing.T) (a, b *Broker, in *inbox, admin *redis.Client) {
	t.Helper()
	srv := redistest.New(t, redistest.Options{})
	start := func(node string) *Broker {
		br, err := New(Config{URLs: []string{srv.URL()}, NodeID: node, Prefix: "ns:"})
		if err != nil {
			t.Fatal(err)
		}
		if err := br.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = br.Close() })
		return br
	}
	a, b = start("a"), start("b")
	in = &inbox{}
	if err := a.Receive(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	admin = redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: 2})
	t.Cleanup(func() { _ = admin.Close() })
	return a, b, in, admin
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// pause makes Redis hold every write command (PUBLISH included) until
// unpause: the writer's pipeline in flight waits, and what is sent
// meanwhile stays queued.
func pause(t *testing.T, admin *redis.Client) (unpause func()) {
	t.Helper()
	ctx := context.Background()
	if err := admin.Do(ctx, "CLIENT", "PAUSE", 60_000, "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unpause = func() {
		once.Do(func() {
			if err := admin.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Cleanup(unpause)
	return unpause
}

// TestNodeSendBatches: messages sent while the writer's pipeline is in
// flight all leave in the next one (one Redis round trip), each with its
// own outcome.
func TestNodeSendBatches(t *testing.T) {
	ctx := context.Background()
	_, b, in, admin := sendPair(t)
	w := b.shardOf("node:a").sender
	before := b.Stats()
	unpause := pause(t, admin)

	const n = 50
	errs := make(chan error, n)
	go func() { errs <- b.SendToNode(ctx, "a", json.RawMessage(`"m0"`)) }()
	// The writer took m0 and waits on Redis.
	waitUntil(t, "m0 taken", func() bool { return w.taken.Load() == 1 })
	for i := 1; i < n; i++ {
		go func() { errs <- b.SendToNode(ctx, "a", json.RawMessage(fmt.Sprintf(`"m%d"`, i))) }()
	}
	waitUntil(t, "the others queued", func() bool { return len(w.queue) == n-1 })
	unpause()
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("SendToNode: %v", err)
		}
	}
	waitUntil(t, "every message at a", func() bool { return len(in.list()) == n })
	after := b.Stats()
	if got := after.NodeSent - before.NodeSent; got != n {
		t.Fatalf("got %d messages sent, want %d", got, n)
	}
	if got := after.NodeBatches - before.NodeBatches; got != 2 {
		t.Fatalf("got %d pipelines, want 2 (m0, then the %d queued behind it)", got, n-1)
	}
	// Nobody listens on c's channel: each message of a batch gets its own
	// outcome.
	errC := make(chan error, 1)
	go func() { errC <- b.SendToNode(ctx, "c", json.RawMessage(`"to c"`)) }()
	if err := b.SendToNode(ctx, "a", json.RawMessage(`"last"`)); err != nil {
		t.Fatalf("SendToNode(a): %v", err)
	}
	if err := <-errC; err == nil || !strings.Contains(err.Error(), `node "c" is not reachable`) {
		t.Fatalf("SendToNode(c): %v, want not reachable", err)
	}
}

// TestNodeSendOrder: concurrent senders' messages to one node all arrive,
// each sender's in the order it sent them.
func TestNodeSendOrder(t *testing.T) {
	ctx := context.Background()
	_, b, in, _ := sendPair(t)
	const senders, each = 20, 50
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				if err := b.SendToNode(ctx, "a", json.RawMessage(fmt.Sprintf(`[%d,%d]`, s, i))); err != nil {
					t.Errorf("sender %d message %d: %v", s, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitUntil(t, "every message at a", func() bool { return len(in.list()) == senders*each })
	next := make([]int, senders)
	for _, m := range in.list() {
		var p [2]int
		if err := json.Unmarshal([]byte(m), &p); err != nil {
			t.Fatal(err)
		}
		if p[1] != next[p[0]] {
			t.Fatalf("sender %d: got message %d, want %d", p[0], p[1], next[p[0]])
		}
		next[p[0]]++
	}
}

// TestNodeSendAbandoned: a message whose sender gave up before the writer
// took it never leaves; one sent after it arrives.
func TestNodeSendAbandoned(t *testing.T) {
	ctx := context.Background()
	_, b, in, admin := sendPair(t)
	w := b.shardOf("node:a").sender
	unpause := pause(t, admin)
	first := make(chan error, 1)
	go func() { first <- b.SendToNode(ctx, "a", json.RawMessage(`"first"`)) }()
	waitUntil(t, "first taken", func() bool { return w.taken.Load() == 1 })
	cctx, cancel := context.WithCancel(ctx)
	gave := make(chan error, 1)
	go func() { gave <- b.SendToNode(cctx, "a", json.RawMessage(`"abandoned"`)) }()
	waitUntil(t, "abandoned queued", func() bool { return len(w.queue) == 1 })
	cancel()
	if err := <-gave; !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "not sent") {
		t.Fatalf("cancelled send: %v, want not sent: context canceled", err)
	}
	unpause()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := b.SendToNode(ctx, "a", json.RawMessage(`"after"`)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "after at a", func() bool { return len(in.list()) == 2 })
	if got := in.list(); got[0] != `"first"` || got[1] != `"after"` {
		t.Fatalf("got %q, want first and after only", got)
	}
}

// TestNodeSendClose: Close fails the messages still queued with
// hub.ErrBrokerClosed, answers the one in flight, and later sends fail.
func TestNodeSendClose(t *testing.T) {
	ctx := context.Background()
	_, b, in, admin := sendPair(t)
	w := b.shardOf("node:a").sender
	unpause := pause(t, admin)
	first := make(chan error, 1)
	go func() { first <- b.SendToNode(ctx, "a", json.RawMessage(`"first"`)) }()
	waitUntil(t, "first taken", func() bool { return w.taken.Load() == 1 })
	queued := make(chan error, 1)
	go func() { queued <- b.SendToNode(ctx, "a", json.RawMessage(`"queued"`)) }()
	waitUntil(t, "second queued", func() bool { return len(w.queue) == 1 })
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	if err := <-queued; !errors.Is(err, hub.ErrBrokerClosed) {
		t.Fatalf("queued send on Close: %v, want hub.ErrBrokerClosed", err)
	}
	unpause()
	if err := <-first; err != nil {
		t.Fatalf("the send in flight on Close: %v, want its outcome (delivered)", err)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if err := b.SendToNode(ctx, "a", json.RawMessage(`"late"`)); !errors.Is(err, hub.ErrBrokerClosed) {
		t.Fatalf("send after Close: %v, want hub.ErrBrokerClosed", err)
	}
	waitUntil(t, "first at a", func() bool { return len(in.list()) == 1 })
}
