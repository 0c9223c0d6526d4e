package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/junctionhq/junction/client"
	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// The Go SDK against the real server: the behaviour its documentation
// promises and client/'s own tests check only against a hand-written
// server. RPC serving (Client.Serve called through the gateway) is covered
// by rpc_e2e_test.go (machine, TestRPCCallRelaysWithCallerMeta,
// TestRPCMachineReregistersAfterReconnect), and resume under load by
// TestChannelResumeAcrossReconnect.

// stallProxy forwards TCP connections to target (the e2e tests' one proxy).
// It can make the server
// go silent on the live connections (bytes from the server are dropped,
// its close included, while the client's still reach it), cut them, and
// hold new connections until released.
type stallProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	conns   []*stallConn  // guarded by mu
	gate    chan struct{} // guarded by mu: non-nil while new connections are held
	wg      sync.WaitGroup
	accepts atomic.Int32
}

type stallConn struct {
	in, out net.Conn
	silent  atomic.Bool
}

func newStallProxy(t *testing.T, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: target}
	p.wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			gate := p.gate
			p.mu.Unlock()
			if gate != nil {
				<-gate
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			p.accepts.Add(1)
			sc := &stallConn{in: in, out: out}
			p.mu.Lock()
			p.conns = append(p.conns, sc)
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(out, in); out.Close() })
			p.wg.Go(func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := out.Read(buf)
					if n > 0 && !sc.silent.Load() {
						if _, werr := in.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				if !sc.silent.Load() {
					in.Close()
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		p.release()
		p.cut()
		p.wg.Wait()
	})
	return p
}

// silence makes the server silent on every live connection.
func (p *stallProxy) silence() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.silent.Store(true)
	}
	return len(p.conns)
}

// cut closes every proxied connection, both sides.
func (p *stallProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.in.Close()
		c.out.Close()
	}
	n := len(p.conns)
	p.conns = nil
	return n
}

// hold makes new connections wait (accepted, not forwarded) until release.
func (p *stallProxy) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate == nil {
		p.gate = make(chan struct{})
	}
}

func (p *stallProxy) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// stateLog records a client's state changes for a test to wait on.
type stateLog struct {
	mu     sync.Mutex
	cond   *sync.Cond
	states []client.State
	errs   []error
}

func newStateLog() *stateLog {
	l := &stateLog{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

func (l *stateLog) record(s client.State, err error) {
	l.mu.Lock()
	l.states = append(l.states, s)
	l.errs = append(l.errs, err)
	l.cond.Broadcast()
	l.mu.Unlock()
}

// waitFor waits until the n-th occurrence of s (from 1) and returns its error.
func (l *stateLog) waitFor(t *testing.T, s client.State, n int) error {
	t.Helper()
	timer := time.AfterFunc(20*time.Second, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer timer.Stop()
	deadline := time.Now().Add(20 * time.Second)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		seen := 0
		for i, st := range l.states {
			if st == s {
				if seen++; seen == n {
					return l.errs[i]
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for state %v #%d; states %v, errors %v", s, n, l.states, l.errs)
		}
		l.cond.Wait()
	}
}

func (l *stateLog) count(s client.State) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, st := range l.states {
		if st == s {
			n++
		}
	}
	return n
}

func whoami(t *testing.T, c *client.Client) protocol.WhoamiResult {
	t.Helper()
	var w protocol.WhoamiResult
	if err := call(t, c, "conn.whoami", nil, &w); err != nil {
		t.Fatalf("conn.whoami: %v", err)
	}
	return w
}

// TestSDKTokenRefreshInBand: with a TokenFunc the SDK answers
// token.expiring with auth.refresh on the same connection, and the server
// takes the new credential: the connection (same id, never reconnected)
// now carries the new expiry.
func TestSDKTokenRefreshInBand(t *testing.T) {
	m := startServer(t, func(c *Config) {
		// Every expiring credential is warned at the hub's next expiry scan
		// (once a second): the test waits for the event, not for a duration.
		c.Hub.TokenExpiryWarning = 24 * time.Hour
	})
	claims := auth.Claims{UserID: "alice", DeviceID: "a1", Kind: "phone", Scopes: []string{auth.ScopeRead, auth.ScopeWrite}}
	var (
		calls     atomic.Int32
		mu        sync.Mutex
		expiries  []time.Time // of the tokens TokenFunc returned, in order
		refreshed = make(chan protocol.RefreshResult, 1)
		expiring  atomic.Int32
		refreshID atomic.Value
	)
	tokenFunc := func(context.Context) (string, error) {
		// The first token lives an hour (inside the warning window), the
		// refreshed one two days (outside it: no second warning).
		ttl := time.Hour
		if calls.Add(1) > 1 {
			ttl = 48 * time.Hour
		}
		tok, exp, err := m.Tokens.Issue(claims, ttl)
		mu.Lock()
		expiries = append(expiries, exp)
		mu.Unlock()
		return tok, err
	}
	states := newStateLog()
	opts := checkedOptions(m, client.Options{URL: m.WSURL() + "/ws", TokenFunc: tokenFunc, OnState: states.record})
	check := opts.OnFrame
	opts.OnFrame = func(sent bool, frame []byte) {
		if check != nil {
			check(sent, frame)
		}
		f, err := protocol.Decode(frame)
		if err != nil {
			return
		}
		switch {
		case sent && f.Type == protocol.TypeRequest && f.Method == "auth.refresh":
			refreshID.Store(f.ID)
		case !sent && f.Type == protocol.TypeEvent && f.Event == protocol.EventTokenExpiring:
			expiring.Add(1)
		case !sent && f.Type == protocol.TypeResponse && f.OK && refreshID.Load() == f.ID:
			var r protocol.RefreshResult
			if json.Unmarshal(f.Result, &r) == nil {
				refreshed <- r
			}
		}
	}
	c := client.New(opts)
	reconnects := atomic.Int32{}
	c.OnConnect(func(_ context.Context, _ *client.Client, reconnected bool) {
		if reconnected {
			reconnects.Add(1)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	before := whoami(t, c)

	var res protocol.RefreshResult
	select {
	case res = <-refreshed:
	case <-ctx.Done():
		t.Fatalf("no auth.refresh answered: TokenFunc called %d times, %d token.expiring seen", calls.Load(), expiring.Load())
	}
	mu.Lock()
	got := append([]time.Time(nil), expiries...)
	mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("TokenFunc called %d times, want 2 (connect, then the refresh)", len(got))
	}
	if expiring.Load() != 1 {
		t.Errorf("token.expiring events: got %d, want 1", expiring.Load())
	}
	if res.ExpiresAtMs != got[1].UnixMilli() {
		t.Errorf("auth.refresh result: expires %d, want the new token's %d", res.ExpiresAtMs, got[1].UnixMilli())
	}
	after := whoami(t, c)
	if after.ConnID != before.ConnID {
		t.Errorf("connection replaced: %s, then %s; the refresh must be in-band", before.ConnID, after.ConnID)
	}
	if before.Principal.ExpiresAtMs != got[0].UnixMilli() || after.Principal.ExpiresAtMs != got[1].UnixMilli() {
		t.Errorf("principal expiry: %d then %d, want %d then %d", before.Principal.ExpiresAtMs, after.Principal.ExpiresAtMs,
			got[0].UnixMilli(), got[1].UnixMilli())
	}
	if n := reconnects.Load(); n != 0 || states.count(client.StateDisconnected) != 0 {
		t.Errorf("reconnects %d, states %v: want none", n, states.states)
	}
}

// TestSDKWatchdogReconnects: when the server goes silent (no frame, no
// ping, no close), the SDK's watchdog ends the connection after the
// welcome's heartbeatMs + heartbeatTimeoutMs and reconnects.
func TestSDKWatchdogReconnects(t *testing.T) {
	m := startServer(t, func(c *Config) {
		// A 1s watchdog window, pings every 250ms: far from a slow
		// machine's scheduling delays, short for the test.
		c.Hub.HeartbeatInterval = 250 * time.Millisecond
		c.Hub.HeartbeatTimeout = 750 * time.Millisecond
	})
	proxy := newStallProxy(t, m.Addr().String())
	states := newStateLog()
	var silenced atomic.Bool
	var silentBeforeDisconnect atomic.Bool
	c := client.New(checkedOptions(m, client.Options{
		URL: "ws://" + proxy.ln.Addr().String() + "/ws", Token: mintToken(t, m, "alice", "a1", "phone"),
		Reconnect: true, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		OnState: func(s client.State, err error) {
			if s == client.StateDisconnected && states.count(client.StateDisconnected) == 0 {
				silentBeforeDisconnect.Store(silenced.Load())
			}
			states.record(s, err)
		},
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if w := c.Welcome(); w.HeartbeatMs != 250 || w.HeartbeatTimeoutMs != 750 {
		t.Fatalf("welcome heartbeat %d+%d ms, want 250+750", w.HeartbeatMs, w.HeartbeatTimeoutMs)
	}
	first := whoami(t, c)

	silenced.Store(true)
	if n := proxy.silence(); n != 1 {
		t.Fatalf("silenced %d connections, want 1", n)
	}
	err := states.waitFor(t, client.StateDisconnected, 1)
	if !silentBeforeDisconnect.Load() {
		t.Fatalf("disconnected (%v) before the server went silent", err)
	}
	if err == nil || !strings.Contains(err.Error(), "server silent") {
		t.Fatalf("disconnect error: got %v, want the watchdog's (server silent)", err)
	}
	if c.CloseCode() != 0 {
		t.Errorf("close code: got %d, want 0 (no close frame reached the client)", c.CloseCode())
	}
	states.waitFor(t, client.StateConnected, 2)
	if proxy.accepts.Load() != 2 {
		t.Errorf("proxied connections: got %d, want 2", proxy.accepts.Load())
	}
	if second := whoami(t, c); second.ConnID == first.ConnID {
		t.Errorf("same connection %s after the watchdog fired", first.ConnID)
	}
}

// TestSDKResumeMissesNothing: publications made while the subscriber is
// away (its connection cut, its reconnect held) arrive after the reconnect
// exactly once and in order, from history (a recovered resubscription).
func TestSDKResumeMissesNothing(t *testing.T) {
	m := startServer(t, withNamespaces(hub.NamespaceConfig{
		Pattern: "feed:{id}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}, HistorySize: 100,
	}))
	proxy := newStallProxy(t, m.Addr().String())
	states := newStateLog()
	sub := client.New(checkedOptions(m, client.Options{
		URL: "ws://" + proxy.ln.Addr().String() + "/ws", Token: mintToken(t, m, "alice", "a1", "phone"),
		Reconnect: true, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, OnState: states.record,
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sub.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })

	var (
		mu   sync.Mutex
		cond = sync.NewCond(&mu)
		got  []int
		subs []client.Subscribed
	)
	if _, err := sub.SubscribeWith(ctx, "feed:1", func(p client.Publication) {
		var n int
		_ = json.Unmarshal(p.Data, &n)
		mu.Lock()
		got = append(got, n)
		cond.Broadcast()
		mu.Unlock()
	}, client.SubscribeOptions{OnSubscribed: func(s client.Subscribed) {
		mu.Lock()
		subs = append(subs, s)
		cond.Broadcast()
		mu.Unlock()
	}}); err != nil {
		t.Fatal(err)
	}
	waitUntil := func(what string, cond2 func() bool) {
		t.Helper()
		timer := time.AfterFunc(20*time.Second, func() { mu.Lock(); cond.Broadcast(); mu.Unlock() })
		defer timer.Stop()
		deadline := time.Now().Add(20 * time.Second)
		mu.Lock()
		defer mu.Unlock()
		for !cond2() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: got %v, subscriptions %+v", what, got, subs)
			}
			cond.Wait()
		}
	}

	pub := dialClient(t, m, "bob", "b1", "phone")
	for i := 1; i <= 5; i++ {
		if _, _, err := pub.Publish(ctx, "feed:1", i); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil("the first 5", func() bool { return len(got) >= 5 })

	proxy.hold()
	if n := proxy.cut(); n != 1 {
		t.Fatalf("cut %d connections, want 1", n)
	}
	states.waitFor(t, client.StateDisconnected, 1)
	for i := 6; i <= 10; i++ {
		if _, _, err := pub.Publish(ctx, "feed:1", i); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	away := len(got)
	mu.Unlock()
	if away != 5 {
		t.Fatalf("got %d publications while away, want 5", away)
	}
	proxy.release()
	waitUntil("the resubscription and all 10", func() bool { return len(subs) >= 2 && len(got) >= 10 })
	states.waitFor(t, client.StateConnected, 2)

	mu.Lock()
	defer mu.Unlock()
	for i, n := range got {
		if n != i+1 {
			t.Fatalf("got %v, want 1..10: lost, duplicated or out of order", got)
		}
	}
	if len(got) != 10 {
		t.Fatalf("got %v, want 1..10", got)
	}
	if last := subs[len(subs)-1]; len(subs) != 2 || !last.Resubscribed || !last.Recovered || last.Offset != 10 {
		t.Fatalf("subscriptions %+v, want one recovered resubscription at offset 10", subs)
	}
}
