package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gobwas/ws"

	"github.com/junctionhq/junction/protocol"
)

// pipeServer upgrades sc, sends a welcome, hands sc to the test on conns
// and drains whatever the client writes until sc is closed.
func pipeServer(sc net.Conn, conns chan<- net.Conn) {
	u := ws.Upgrader{Protocol: func(p []byte) bool { return string(p) == protocol.Subprotocol }}
	if _, err := u.Upgrade(sc); err != nil {
		sc.Close()
		return
	}
	welcome, _ := json.Marshal(protocol.Welcome{Protocol: protocol.Version, ConnID: "c", NodeID: "pipe",
		Principal: protocol.Principal{UserID: "u", DeviceID: "d", Kind: "machine"}})
	b, _ := ws.CompileFrame(ws.NewTextFrame(protocol.AppendEvent(nil, protocol.EventWelcome, "", "", 0, welcome)))
	if _, err := sc.Write(b); err != nil {
		sc.Close()
		return
	}
	conns <- sc
	_, _ = io.Copy(io.Discard, sc)
}

// TestReconnectBackoffSchedule runs the reconnect loop on synctest's clock:
// the dial fails six times after a drop, and the gaps between attempts must
// each lie within the backoff of its attempt (MinBackoff up to
// min(MaxBackoff, MinBackoff·2^(n+1))), whatever the machine's speed.
func TestReconnectBackoffSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			minB     = 100 * time.Millisecond
			maxB     = time.Second
			failures = 6
		)
		var mu sync.Mutex
		var attempts []time.Time
		conns := make(chan net.Conn, 4)
		opts := Options{URL: "ws://backoff.invalid/ws", Token: "t", Reconnect: true, MinBackoff: minB, MaxBackoff: maxB}
		opts.netDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			attempts = append(attempts, time.Now())
			n := len(attempts)
			mu.Unlock()
			if n >= 2 && n < 2+failures {
				return nil, errors.New("connection refused")
			}
			cc, sc := net.Pipe()
			go pipeServer(sc, conns)
			return cc, nil
		}
		c := New(opts)
		if err := c.Connect(context.Background()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		first := <-conns
		dropped := time.Now()
		first.Close()
		second := <-conns
		synctest.Wait() // the client has taken the welcome
		if got := c.State(); got != StateConnected {
			t.Fatalf("state after the reconnect: %v, want connected", got)
		}

		mu.Lock()
		defer mu.Unlock()
		if len(attempts) != 2+failures {
			t.Fatalf("got %d dials, want %d", len(attempts), 2+failures)
		}
		prev := dropped
		for n, at := range attempts[1:] {
			ceil := minB
			for i := 0; i <= n && ceil < maxB; i++ {
				ceil *= 2
			}
			ceil = min(ceil, maxB)
			if gap := at.Sub(prev); gap < minB || gap > ceil {
				t.Errorf("attempt %d came %v after the previous, want within [%v, %v]", n, gap, minB, ceil)
			}
			prev = at
		}
		c.Close()
		second.Close()
	})
}

// TestShutdownReconnectAfterSchedule: after server.shutdown with
// reconnectAfterMs, the client comes back no sooner than asked and no later
// than that plus its jitter (a quarter of it, at least MinBackoff), on
// synctest's clock.
func TestShutdownReconnectAfterSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const after = 300 * time.Millisecond
		var mu sync.Mutex
		var attempts []time.Time
		conns := make(chan net.Conn, 4)
		opts := Options{URL: "ws://shutdown.invalid/ws", Token: "t", Reconnect: true, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
		opts.netDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			attempts = append(attempts, time.Now())
			mu.Unlock()
			cc, sc := net.Pipe()
			go pipeServer(sc, conns)
			return cc, nil
		}
		c := New(opts)
		if err := c.Connect(context.Background()); err != nil {
			t.Fatalf("Connect: %v", err)
		}
		first := <-conns
		data, _ := json.Marshal(protocol.Shutdown{ReconnectAfterMs: after.Milliseconds(), Reason: "deploy"})
		for _, fr := range []ws.Frame{
			ws.NewTextFrame(protocol.AppendEvent(nil, protocol.EventShutdown, "", "", 0, data)),
			ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusNormalClosure, "draining")),
		} {
			b, _ := ws.CompileFrame(fr)
			if _, err := first.Write(b); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		closed := time.Now()
		second := <-conns
		mu.Lock()
		gap := attempts[len(attempts)-1].Sub(closed)
		n := len(attempts)
		mu.Unlock()
		if n != 2 {
			t.Errorf("got %d dials, want 2", n)
		}
		if jitter := max(after/4, opts.MinBackoff); gap < after || gap > after+jitter {
			t.Errorf("reconnected %v after server.shutdown, want within [%v, %v]", gap, after, after+jitter)
		}
		c.Close()
		first.Close()
		second.Close()
	})
}
