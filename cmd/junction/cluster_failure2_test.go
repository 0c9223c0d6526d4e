package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/redistest"
	"github.com/junctionhq/junction/protocol"
)

// More failure tests of a cluster with real processes (the harness is in
// cluster_failure_test.go): a device moving nodes mid-call, Redis restarted
// with its data kept (AOF) and with its data lost, and a node partitioned
// from Redis by a TCP proxy in the test. Each asserts what a client sees,
// as docs/deploy/cluster.md's failure table states it.

// failureConfig2 is failureConfig with presence on the feed, the
// built-in snapshot (the last publication: what a subscriber that cannot
// recover starts from), and short presence and device claim ttls
// (refreshed every second), so that what Redis lost comes back within a
// second or two.
const failureConfig2 = `hub:
  requests_per_second: -1
  presence_ttl: 3s
  rpc:
    lease_ttl: 3s
  namespaces:
    - pattern: "feed:{id}"
      subscribe: ["any"]
      publish: ["scope=write"]
      history_size: 1000
      presence: true
      snapshot: retained
`

// connectNode connects a client to node i (directly, not through HAProxy)
// and closes it when the test ends.
func (fc *failureCluster) connectNode(i int, user, device, kind string, setup func(*client.Client)) *client.Client {
	fc.t.Helper()
	c := client.New(client.Options{URL: fc.wsURL(i), Token: fc.tokenOf(user, device, kind),
		Reconnect: true, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if setup != nil {
		setup(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		fc.t.Fatalf("connect %s to node%d: %v", device, i+1, err)
	}
	fc.t.Cleanup(func() { _ = c.Close() })
	return c
}

// lbNode connects a client through HAProxy and returns the node it
// landed on ("" when it could not connect).
func (fc *failureCluster) lbNode() string {
	c := client.New(client.Options{URL: fc.lbURL, Token: fc.token("alice", "lb")})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		return ""
	}
	defer c.Close()
	return c.Welcome().NodeID
}

// readyz returns node i's /readyz status code and body.
func (fc *failureCluster) readyz(i int) (int, map[string]any) {
	resp, err := http.Get(fc.nodes[i].url + "/readyz")
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body)
	return resp.StatusCode, body
}

// readyCheck returns the value of /readyz's checks[name] in body.
func readyCheck(body map[string]any, name string) string {
	checks, _ := body["checks"].(map[string]any)
	v, _ := checks[name].(string)
	return v
}

// metric returns the sum of node i's samples of the metric name (every
// label set) from /metrics.
func (fc *failureCluster) metric(i int, name string) float64 {
	fc.t.Helper()
	resp, err := http.Get(fc.nodes[i].url + "/metrics")
	if err != nil {
		fc.t.Fatalf("node%d /metrics: %v", i+1, err)
	}
	defer resp.Body.Close()
	var sum float64
	found := false
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
			continue // another metric with this prefix
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			fc.t.Fatalf("node%d metric line %q: %v", i+1, line, err)
		}
		sum += v
		found = true
	}
	if !found {
		fc.t.Fatalf("node%d exports no %s", i+1, name)
	}
	return sum
}

// alive fails the test when a node process exited.
func (fc *failureCluster) alive(nodes ...int) {
	fc.t.Helper()
	for _, i := range nodes {
		select {
		case err := <-fc.nodes[i].exited:
			fc.t.Fatalf("node%d exited: %v\n%s", i+1, err, fc.nodes[i].stderr)
		default:
		}
	}
}

// allReady waits until every node's /readyz answers 200.
func (fc *failureCluster) allReady() {
	fc.t.Helper()
	eventuallyLong(fc.t, "every node ready", func() bool {
		for i := range fc.nodes {
			if code, _ := fc.readyz(i); code != http.StatusOK {
				return false
			}
		}
		return true
	})
}

// redisExists runs EXISTS key on the cluster's Redis.
func (fc *failureCluster) redisExists(key string) bool {
	out, err := fc.rs.Do("EXISTS", key)
	return err == nil && out == ":1"
}

// redisHLen runs HLEN key on the cluster's Redis (-1 on error).
func (fc *failureCluster) redisHLen(key string) int {
	out, err := fc.rs.Do("HLEN", key)
	if err != nil || !strings.HasPrefix(out, ":") {
		return -1
	}
	n, _ := strconv.Atoi(out[1:])
	return n
}

// feedSub is a subscriber of feed:1 recording what it receives.
type feedSub struct {
	c    *client.Client
	node int
	mu   sync.Mutex
	pubs []client.Publication
	subs []client.Subscribed
}

func (s *feedSub) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.pubs) }

// subscribeFeed connects n subscribers of feed:1, subscriber i to node
// i%3, directly.
func (fc *failureCluster) subscribeFeed(n int) []*feedSub {
	fc.t.Helper()
	var all []*feedSub
	for i := range n {
		s := &feedSub{node: i % len(fc.nodes)}
		s.c = fc.connectNode(s.node, "alice", fmt.Sprintf("sub%d", i), "phone", nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.c.SubscribeWith(ctx, "feed:1", func(p client.Publication) {
			s.mu.Lock()
			s.pubs = append(s.pubs, p)
			s.mu.Unlock()
		}, client.SubscribeOptions{OnSubscribed: func(x client.Subscribed) {
			s.mu.Lock()
			s.subs = append(s.subs, x)
			s.mu.Unlock()
		}})
		cancel()
		if err != nil {
			fc.t.Fatal(err)
		}
		all = append(all, s)
	}
	return all
}

// publishRetry publishes v on feed:1 until a publish succeeds (within a
// minute), as a client does through an outage: a failed publish is
// retryable, and may or may not have been published. It returns the
// accepted position and how many attempts failed.
func publishRetry(ctx context.Context, pub *client.Client, v int) (string, uint64, int, error) {
	deadline := time.Now().Add(time.Minute)
	failed := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		epoch, off, err := pub.Publish(pctx, "feed:1", v)
		cancel()
		if err == nil {
			return epoch, off, failed, nil
		}
		failed++
		if time.Now().After(deadline) {
			return "", 0, failed, fmt.Errorf("publish %d: still failing after a minute: %w", v, err)
		}
		time.Sleep(50 * time.Millisecond) // the retry's pace; nothing is ordered by it
	}
}

// feedHistory reads every publication feed:1 retains, through node i.
func (fc *failureCluster) feedHistory(c *client.Client) protocol.HistoryResult {
	fc.t.Helper()
	var res protocol.HistoryResult
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Call(ctx, "channel.history", protocol.HistoryParams{Topic: "feed:1"}, &res); err != nil {
		fc.t.Fatalf("channel.history: %v", err)
	}
	return res
}

// presenceCount returns how many clients feed:1's presence lists, asked
// through c.
func presenceCount(c *client.Client) int {
	var res protocol.PresenceResult
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Call(ctx, "channel.presence", protocol.TopicParams{Topic: "feed:1"}, &res); err != nil {
		return -1
	}
	return len(res.Clients)
}

func intData(raw json.RawMessage) int {
	var n int
	_ = json.Unmarshal(raw, &n)
	return n
}

// serveMachine connects machine m1 to node i, serving job.block (waits
// for its cancel, signalling started) and job.echo (answers the node).
func (fc *failureCluster) serveMachine(i int, started chan<- struct{}) *client.Client {
	fc.t.Helper()
	return fc.connectNode(i, "alice", "m1", "machine", func(m *client.Client) {
		_ = m.Serve("job.block", func(ctx context.Context, req *client.RPCRequest) (any, error) {
			select {
			case started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return nil, ctx.Err()
		})
		_ = m.Serve("job.echo", func(ctx context.Context, req *client.RPCRequest) (any, error) {
			return map[string]int{"node": i + 1}, nil
		})
	})
}

// echoNode calls m1's job.echo through caller and returns the node that
// answered.
func echoNode(caller *client.Client, timeout time.Duration) (int, error) {
	var res struct{ Node int }
	err := caller.CallDevice(context.Background(), "m1", "job.echo", nil, &res, client.WithCallTimeout(timeout))
	return res.Node, err
}

// TestClusterFailureDeviceMoves: a caller on node 1 calls machine m1 on
// node 2, and m1 connects to node 3 while the call runs (the newest
// connection of a device wins cluster-wide). The contract (docs/rpc.md:
// "target disconnects during the call"): node 2 closes m1's older
// connection with 4009 (replaced) and the call in flight fails at once
// with unavailable, "target disconnected during the call" — the request
// went to the old connection, which may have run it, so it is not
// replayed on the new one. New calls reach m1 on node 3. Then m1 leaves
// node 3 and a new call made while it is offline waits (the offline
// grace) and is answered where m1 reconnects, node 2.
func TestClusterFailureDeviceMoves(t *testing.T) {
	fc := startFailureClusterWith(t, failureOptions{nodes: 3, config: failureConfig2})
	started := make(chan struct{}, 1)
	old := fc.serveMachine(1, started)
	caller := fc.connectNode(0, "alice", "phone1", "phone", nil)
	if n, err := echoNode(caller, 10*time.Second); err != nil || n != 2 {
		t.Fatalf("call to m1 on node 2: node %d, %v", n, err)
	}

	errc := make(chan error, 1)
	go func() {
		errc <- caller.CallDevice(context.Background(), "m1", "job.block", nil, nil, client.WithCallTimeout(time.Minute))
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not reach m1 on node 2 within 10s")
	}
	moved := time.Now()
	moving := fc.serveMachine(2, started)
	select {
	case err := <-errc:
		var pe *protocol.Error
		if !errors.As(err, &pe) || pe.Code != protocol.CodeUnavailable || pe.Message != "target disconnected during the call" {
			t.Fatalf("call in flight when its target moved: %v, want unavailable \"target disconnected during the call\"", err)
		}
		if !pe.Retryable {
			t.Errorf("unavailable should be retryable: %+v", pe)
		}
		t.Logf("the call failed %v after m1 connected to node 3", time.Since(moved).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the call still waits 20s after its target moved to another node")
	}
	eventuallyLong(t, "m1's old connection closed with 4009", func() bool { return old.CloseCode() == 4009 })
	if n, err := echoNode(caller, 10*time.Second); err != nil || n != 3 {
		t.Fatalf("new call after m1 moved to node 3: node %d, %v", n, err)
	}

	// m1 leaves node 3; a call made while it is offline waits for it and
	// is answered on the node it reconnects to inside the grace window.
	if err := moving.Close(); err != nil {
		t.Fatal(err)
	}
	type answer struct {
		node int
		err  error
	}
	ans := make(chan answer, 1)
	go func() {
		n, err := echoNode(caller, 30*time.Second)
		ans <- answer{n, err}
	}()
	// A call to an offline device waits (up to the 15 s grace): no answer
	// within half a second (a bound on a negative, not an ordering).
	select {
	case a := <-ans:
		t.Fatalf("a call to an offline device answered at once: node %d, %v", a.node, a.err)
	case <-time.After(500 * time.Millisecond):
	}
	fc.serveMachine(1, nil)
	select {
	case a := <-ans:
		if a.err != nil || a.node != 2 {
			t.Fatalf("call waiting for m1, which reconnected to node 2: node %d, %v", a.node, a.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the call waiting for m1 was not answered 20s after m1 reconnected to node 2")
	}
	fc.alive(0, 1, 2)
}

// checkFeedStream checks that every subscriber received exactly the
// publications of hist (every retained one, in order, once each) and that
// every resubscription recovered in one epoch.
func checkFeedStream(t *testing.T, all []*feedSub, hist protocol.HistoryResult) {
	t.Helper()
	for i, s := range all {
		s.mu.Lock()
		var gotOff, wantOff []uint64
		var gotV, wantV []int
		for _, p := range s.pubs {
			gotOff, gotV = append(gotOff, p.Offset), append(gotV, intData(p.Data))
			if p.Epoch != hist.Epoch {
				t.Errorf("subscriber %d (node%d): publication %d in epoch %s, want one epoch %s", i, s.node+1, p.Offset, p.Epoch, hist.Epoch)
			}
		}
		for _, p := range hist.Publications {
			wantOff, wantV = append(wantOff, p.Offset), append(wantV, intData(p.Data))
		}
		if !slices.Equal(gotOff, wantOff) || !slices.Equal(gotV, wantV) {
			t.Errorf("subscriber %d (node%d): got %d publications (offsets %v... values %v...), want the %d of the stream exactly once in order",
				i, s.node+1, len(gotOff), gotOff[:min(len(gotOff), 10)], gotV[:min(len(gotV), 10)], len(wantOff))
		}
		for _, x := range s.subs[1:] {
			if !x.Recovered || x.Epoch != hist.Epoch {
				t.Errorf("subscriber %d (node%d): a resubscription %+v, want recovered in epoch %s", i, s.node+1, x, hist.Epoch)
			}
		}
		s.mu.Unlock()
	}
}

// TestClusterFailureRedisRestartAOF: Redis (AOF, appendfsync always) is
// killed with SIGKILL and restarted with its data in the middle of a
// stream published on node 3 to subscribers on every node. The publisher
// retries what fails while Redis is down; every subscriber receives every
// publication the stream holds exactly once, in order, in one epoch (each
// value the publisher was told was published among them). Presence and
// m1's device claim are kept: presence lists every subscriber, and a call
// from node 1 reaches m1 on node 2.
func TestClusterFailureRedisRestartAOF(t *testing.T) {
	fc := startFailureClusterWith(t, failureOptions{nodes: 3, config: failureConfig2})
	const subscribers = 6
	all := fc.subscribeFeed(subscribers)
	fc.serveMachine(1, nil)
	caller := fc.connectNode(0, "alice", "phone1", "phone", nil)
	if n, err := echoNode(caller, 10*time.Second); err != nil || n != 2 {
		t.Fatalf("call to m1 on node 2: node %d, %v", n, err)
	}
	eventuallyLong(t, "presence lists every subscriber", func() bool { return presenceCount(caller) == subscribers })
	pub := fc.connectNode(2, "bob", "pub", "phone", nil)
	minCount := func() int {
		m := 1 << 30
		for _, s := range all {
			m = min(m, s.count())
		}
		return m
	}
	errsBefore := fc.metric(0, "junction_broker_pubsub_errors_total")

	ctx := context.Background()
	var wg sync.WaitGroup
	acked := make(map[int]uint64)
	var ackMu sync.Mutex
	failures := 0
	// The publisher publishes 1, 2, ... until told where to stop: 100
	// values after the last one acknowledged once Redis is back, so that
	// the restart is in the middle of the stream.
	var stopAt atomic.Int64
	stopAt.Store(1 << 30)
	wg.Go(func() {
		for v := 1; int64(v) <= stopAt.Load(); v++ {
			_, off, failed, err := publishRetry(ctx, pub, v)
			if err != nil {
				t.Error(err)
				return
			}
			ackMu.Lock()
			acked[v] = off
			failures += failed
			ackMu.Unlock()
		}
	})
	eventuallyLong(t, "the stream at every subscriber", func() bool { return minCount() >= 50 })
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	if err := fc.rs.Restart(rctx, true); err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()
	restarted := time.Now()
	ackMu.Lock()
	atRestart := len(acked)
	stopAt.Store(int64(atRestart + 100))
	ackMu.Unlock()
	wg.Wait()
	total := len(acked)
	hist := fc.feedHistory(caller)
	eventuallyLong(t, "the whole stream at every subscriber", func() bool { return minCount() >= len(hist.Publications) })
	t.Logf("publisher: %d acknowledged when Redis was back, %d failed attempts; the stream holds %d publications of %d values; all delivered %v after the restart",
		atRestart, failures, len(hist.Publications), total, time.Since(restarted).Round(time.Millisecond))
	if len(hist.Publications) > 1000 {
		t.Fatalf("the stream holds %d publications, more than the history (1000) the check reads", len(hist.Publications))
	}
	// The stream: offsets 1..n in one epoch, holding every acknowledged
	// value at its acknowledged offset.
	byOff := map[uint64]int{}
	for i, p := range hist.Publications {
		if p.Offset != uint64(i+1) || p.Epoch != hist.Epoch {
			t.Fatalf("history: publication %d at %s/%d, want offsets from 1 in epoch %s", i, p.Epoch, p.Offset, hist.Epoch)
		}
		byOff[p.Offset] = intData(p.Data)
	}
	for v, off := range acked {
		if byOff[off] != v {
			t.Errorf("value %d acknowledged at offset %d; the stream holds %d there", v, off, byOff[off])
		}
	}
	checkFeedStream(t, all, hist)
	// Presence and the device claim survived (kept by AOF and refreshed).
	eventuallyLong(t, "presence lists every subscriber after the restart", func() bool { return presenceCount(caller) == subscribers })
	if n, err := echoNode(caller, 10*time.Second); err != nil || n != 2 {
		t.Fatalf("call to m1 on node 2 after the restart: node %d, %v", n, err)
	}
	fc.allReady()
	if after := fc.metric(0, "junction_broker_pubsub_errors_total"); after <= errsBefore {
		t.Errorf("node1's junction_broker_pubsub_errors_total %v after a Redis restart, was %v: the outage is not visible", after, errsBefore)
	}
	fc.alive(0, 1, 2)
}

// TestClusterFailureRedisRestartEmpty: Redis is killed and restarted
// without its data between two parts of a stream. Subscribers on every
// node receive the first part exactly once in order, then a
// resubscription that says recovered: false in a new epoch with a fresh
// snapshot (the namespace's: here the last publication), then every
// publication of the new epoch after that position, exactly once in
// order: never a gap passed off as continuity. Nodes re-claim what Redis
// lost: their node leases, m1's claim (a call from node 1 reaches it on
// node 2) and the presence entries.
func TestClusterFailureRedisRestartEmpty(t *testing.T) {
	fc := startFailureClusterWith(t, failureOptions{nodes: 3, config: failureConfig2})
	const subscribers, first, total = 6, 100, 200
	all := fc.subscribeFeed(subscribers)
	fc.serveMachine(1, nil)
	caller := fc.connectNode(0, "alice", "phone1", "phone", nil)
	if n, err := echoNode(caller, 10*time.Second); err != nil || n != 2 {
		t.Fatalf("call to m1 on node 2: node %d, %v", n, err)
	}
	pub := fc.connectNode(2, "bob", "pub", "phone", nil)
	ctx := context.Background()
	var epoch1 string
	for v := 1; v <= first; v++ {
		e, off, _, err := publishRetry(ctx, pub, v)
		if err != nil || off != uint64(v) || (epoch1 != "" && e != epoch1) {
			t.Fatalf("publish %d: %s/%d, %v", v, e, off, err)
		}
		epoch1 = e
	}
	minCount := func() int {
		m := total * 2
		for _, s := range all {
			m = min(m, s.count())
		}
		return m
	}
	eventuallyLong(t, "the first part at every subscriber", func() bool { return minCount() >= first })
	if !fc.redisExists("junction:device:{m1}") || fc.redisHLen("junction:{feed:1}:presence") != subscribers {
		t.Fatal("m1's claim or the presence entries are not in Redis before the restart")
	}
	var resetsBefore, errsBefore []float64
	for i := range fc.nodes {
		resetsBefore = append(resetsBefore, fc.metric(i, "junction_broker_resets_total"))
		errsBefore = append(errsBefore, fc.metric(i, "junction_broker_pubsub_errors_total"))
	}

	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	if err := fc.rs.Restart(rctx, false); err != nil {
		cancel()
		t.Fatal(err)
	}
	cancel()
	// Nodes re-claim what Redis lost, within a refresh.
	eventuallyLong(t, "every node's lease, m1's claim and the presence entries back in Redis", func() bool {
		for i := range fc.nodes {
			if !fc.redisExists(fmt.Sprintf("junction:node:{node%d}:lease", i+1)) {
				return false
			}
		}
		return fc.redisExists("junction:device:{m1}") && fc.redisHLen("junction:{feed:1}:presence") == subscribers
	})
	fc.allReady()
	if n, err := echoNode(caller, 10*time.Second); err != nil || n != 2 {
		t.Fatalf("call to m1 on node 2 after Redis lost its data: node %d, %v", n, err)
	}
	if n := presenceCount(caller); n != subscribers {
		t.Fatalf("presence after Redis lost its data: %d clients, want %d", n, subscribers)
	}

	var epoch2 string
	var lastOff uint64
	for v := first + 1; v <= total; v++ {
		e, off, _, err := publishRetry(ctx, pub, v)
		if err != nil {
			t.Fatal(err)
		}
		if e == epoch1 || (epoch2 != "" && (e != epoch2 || off != lastOff+1)) {
			t.Fatalf("publish %d after Redis lost its data: %s/%d (epoch before %s, last %s/%d)", v, e, off, epoch1, epoch2, lastOff)
		}
		epoch2, lastOff = e, off
	}
	done := func(s *feedSub) bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := len(s.pubs)
		return n > 0 && s.pubs[n-1].Epoch == epoch2 && s.pubs[n-1].Offset == lastOff
	}
	eventuallyLong(t, "the second part's last publication at every subscriber", func() bool {
		for _, s := range all {
			if !done(s) {
				return false
			}
		}
		return true
	})
	for i, s := range all {
		s.mu.Lock()
		var part1 []int
		var part2 []client.Publication
		for _, p := range s.pubs {
			switch p.Epoch {
			case epoch1:
				part1 = append(part1, intData(p.Data))
			case epoch2:
				part2 = append(part2, p)
			default:
				t.Errorf("subscriber %d: publication in an unknown epoch %s", i, p.Epoch)
			}
		}
		if !slices.Equal(part1, seq(1, first)) {
			t.Errorf("subscriber %d (node%d): first part %v..., want 1..%d exactly once in order", i, s.node+1, part1[:min(len(part1), 10)], first)
		}
		last := s.subs[len(s.subs)-1]
		if len(s.subs) != 2 || !last.Resubscribed || last.Recovered || last.Epoch != epoch2 {
			t.Errorf("subscriber %d (node%d): subscriptions %+v, want one resubscription in epoch %s with recovered: false", i, s.node+1, s.subs, epoch2)
		}
		// The fresh snapshot: the new epoch's publication at the
		// resubscription's position (value first+offset).
		var snap protocol.Publication
		if err := json.Unmarshal(last.Snapshot, &snap); err != nil || snap.Epoch != epoch2 || snap.Offset != last.Offset ||
			intData(snap.Data) != first+int(last.Offset) {
			t.Errorf("subscriber %d (node%d): snapshot %s at %s/%d, want the new epoch's publication %d (value %d)",
				i, s.node+1, last.Snapshot, last.Epoch, last.Offset, last.Offset, first+int(last.Offset))
		}
		// After the reset: every publication after its position, in order.
		var offs, vals []int
		for _, p := range part2 {
			offs, vals = append(offs, int(p.Offset)), append(vals, intData(p.Data))
		}
		if !slices.Equal(offs, seq(int(last.Offset)+1, int(lastOff))) {
			t.Errorf("subscriber %d (node%d): new epoch's offsets %v, want %d..%d", i, s.node+1, offs, last.Offset+1, lastOff)
		}
		if want := seq(total-len(vals)+1, total); !slices.Equal(vals, want) {
			t.Errorf("subscriber %d (node%d): new epoch's values %v, want %v", i, s.node+1, vals, want)
		}
		s.mu.Unlock()
	}
	// Visible in every node's metrics: the pub/sub connections broke, and
	// the topic's subscribers were reset.
	for i := range fc.nodes {
		if after := fc.metric(i, "junction_broker_resets_total"); after <= resetsBefore[i] {
			t.Errorf("node%d's junction_broker_resets_total %v after Redis lost the topic, was %v: the reset is not visible", i+1, after, resetsBefore[i])
		}
		if after := fc.metric(i, "junction_broker_pubsub_errors_total"); after <= errsBefore[i] {
			t.Errorf("node%d's junction_broker_pubsub_errors_total %v after a Redis restart, was %v", i+1, after, errsBefore[i])
		}
	}
	t.Logf("epoch %s → %s", epoch1, epoch2)
	fc.alive(0, 1, 2)
}

// TestClusterFailurePartition: node 3 reaches Redis through a TCP proxy
// in the test, which cuts it off for a while. During the cut node 3
// reports not ready on /readyz (checks.broker "unavailable", 503, so
// HAProxy takes it out of the pool), refuses calls it would route
// (unavailable), and calls from node 1 to a device on node 3 fail with
// unavailable too; the other nodes go on. After the proxy is restored
// node 3 is ready again without a restart: routed calls work both ways,
// its subscriber receives every publication made during the cut exactly
// once in order, and its metrics count the broken pub/sub connections.
// No node crashes.
func TestClusterFailurePartition(t *testing.T) {
	var proxy *redistest.CutProxy
	fc := startFailureClusterWith(t, failureOptions{nodes: 3, config: failureConfig2,
		broker: func(i int, redisURL string) string {
			if i != 2 {
				return redisURL
			}
			proxy = redistest.StartCutProxy(t, strings.TrimPrefix(redisURL, "redis://"))
			return "redis://" + proxy.Addr()
		}})
	const subscribers, total = 6, 200
	all := fc.subscribeFeed(subscribers) // subscribers 2 and 5 on node 3
	fc.serveMachine(1, nil)              // m1 on node 2
	fc.connectNode(2, "alice", "m3", "machine", func(m *client.Client) {
		_ = m.Serve("job.echo", func(ctx context.Context, req *client.RPCRequest) (any, error) {
			return map[string]int{"node": 3}, nil
		})
	})
	onPartitioned := fc.connectNode(2, "alice", "phone3", "phone", nil)
	caller := fc.connectNode(0, "alice", "phone1", "phone", nil)
	callM3 := func(timeout time.Duration) (int, error) {
		var res struct{ Node int }
		err := caller.CallDevice(context.Background(), "m3", "job.echo", nil, &res, client.WithCallTimeout(timeout))
		return res.Node, err
	}
	if n, err := echoNode(onPartitioned, 10*time.Second); err != nil || n != 2 {
		t.Fatalf("call from node 3 to m1 on node 2: node %d, %v", n, err)
	}
	if n, err := callM3(10 * time.Second); err != nil || n != 3 {
		t.Fatalf("call from node 1 to m3 on node 3: node %d, %v", n, err)
	}
	if code, body := fc.readyz(2); code != http.StatusOK || readyCheck(body, "broker") != "ok" {
		t.Fatalf("node3 /readyz before the cut: %d %v", code, body)
	}
	errsBefore := fc.metric(2, "junction_broker_pubsub_errors_total")
	pub := fc.connectNode(0, "bob", "pub", "phone", nil)
	ctx := context.Background()
	for v := 1; v <= total/2; v++ {
		if _, _, _, err := publishRetry(ctx, pub, v); err != nil {
			t.Fatal(err)
		}
	}

	proxy.SetCut(true)
	cut := time.Now()
	eventuallyLong(t, "node3 not ready", func() bool {
		code, body := fc.readyz(2)
		return code == http.StatusServiceUnavailable && readyCheck(body, "broker") == "unavailable" && body["status"] == "not ready"
	})
	t.Logf("node3 not ready %v after the cut", time.Since(cut).Round(time.Millisecond))
	for _, i := range []int{0, 1} {
		if code, body := fc.readyz(i); code != http.StatusOK {
			t.Fatalf("node%d /readyz during node3's cut: %d %v", i+1, code, body)
		}
	}
	// HAProxy's health check takes node 3 out of the pool: four
	// connections in a row through it land on nodes 1 and 2.
	eventuallyLong(t, "HAProxy sends no connection to node3", func() bool {
		for range 4 {
			if fc.lbNode() == "node3" {
				return false
			}
		}
		return true
	})
	// A call node 3 would route to another node: refused, unavailable.
	if _, err := echoNode(onPartitioned, 10*time.Second); errCode(err) != protocol.CodeUnavailable {
		t.Fatalf("call from the partitioned node to m1 on node 2: %v, want unavailable", err)
	}
	// A call from node 1 to a device on node 3: node 3 cannot be reached
	// (its node channel has no listener, then its lease expires, then m3
	// is offline): unavailable, within the offline grace.
	if _, err := callM3(30 * time.Second); errCode(err) != protocol.CodeUnavailable {
		t.Fatalf("call from node 1 to m3 on the partitioned node: %v, want unavailable", err)
	}
	// The rest of the cluster publishes on.
	for v := total/2 + 1; v <= total; v++ {
		if _, _, _, err := publishRetry(ctx, pub, v); err != nil {
			t.Fatal(err)
		}
	}
	fc.alive(0, 1, 2)

	proxy.SetCut(false)
	healed := time.Now()
	eventuallyLong(t, "node3 ready again", func() bool {
		code, body := fc.readyz(2)
		return code == http.StatusOK && readyCheck(body, "broker") == "ok"
	})
	t.Logf("node3 ready %v after the proxy was restored", time.Since(healed).Round(time.Millisecond))
	eventuallyLong(t, "HAProxy sends connections to node3 again", func() bool { return fc.lbNode() == "node3" })
	eventuallyLong(t, "the whole stream at every subscriber", func() bool {
		for _, s := range all {
			if s.count() < total {
				return false
			}
		}
		return true
	})
	hist := fc.feedHistory(caller)
	if len(hist.Publications) != total {
		t.Fatalf("history holds %d publications, want %d", len(hist.Publications), total)
	}
	checkFeedStream(t, all, hist)
	if n, err := echoNode(onPartitioned, 30*time.Second); err != nil || n != 2 {
		t.Fatalf("call from node 3 to m1 on node 2 after healing: node %d, %v", n, err)
	}
	if n, err := callM3(30 * time.Second); err != nil || n != 3 {
		t.Fatalf("call from node 1 to m3 on node 3 after healing: node %d, %v", n, err)
	}
	if after := fc.metric(2, "junction_broker_pubsub_errors_total"); after <= errsBefore {
		t.Errorf("node3's junction_broker_pubsub_errors_total %v after the cut, was %v: the partition is not visible", after, errsBefore)
	}
	fc.alive(0, 1, 2)
}
