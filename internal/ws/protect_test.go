package ws

// The paths that protect the server from its peers: a peer that stops
// reading and then drains, the write and close timeouts, and the refused
// upgrades. The timeouts run on Config.clock and Config.tick, so the test
// decides when time has passed, never a sleep.

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/protocol"
)

// fakeClock is a transport clock (Config.clock) that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(int64(time.Hour)) // > 0: zero means "unset" in Conn's clock fields
	return c
}

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) set(ns int64)            { c.ns.Store(ns) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// ticker drives the heartbeat (Config.tick). pass returns once the
// heartbeat has finished the pass of the tick it sends: the heartbeat takes
// ticks from an unbuffered channel, so the second send completes only after
// the first pass is over.
type ticker chan time.Time

func (tk ticker) pass(t *testing.T) {
	t.Helper()
	for range 2 {
		select {
		case tk <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatalf("the heartbeat took no tick within 10s")
		}
	}
}

// stallFrames is the stalled-peer test's stream: n frames of 64 KiB (32 MiB
// for 512, more than loopback's socket buffers hold on both sides), each
// starting with its index.
func stallFrame(i int) []byte {
	p := make([]byte, 64<<10)
	copy(p, fmt.Sprintf("%08d", i))
	return PrepareText(p)
}

// readStallFrames reads frames from..to-1 of stallFrame's stream, in order.
func readStallFrames(t *testing.T, c *client, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, op, err := wsutil.ReadServerData(c.rw)
		if err != nil {
			t.Fatalf("read frame %d: %v", i, err)
		}
		if op != gws.OpText || len(b) != 64<<10 || string(b[:8]) != fmt.Sprintf("%08d", i) {
			t.Fatalf("frame %d: got opcode %v, %d bytes starting %q; want text, %d bytes starting %08d", i, op, len(b), b[:min(8, len(b))], 64<<10, i)
		}
	}
}

// waitStalled waits until the transport found c's socket full: the epoll
// writer then handed c to its loop to wait for EPOLLOUT (the portable
// writer blocks in its write instead, which the stream's size guarantees).
func waitStalled(t *testing.T, kind Kind, c *Conn) {
	t.Helper()
	if kind != Epoll {
		return
	}
	waitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.wstate == wWaitOut && c.unwritable.Load() != 0
	}, "the socket to be found full (wWaitOut)")
}

// TestStallThenDrain: a peer that stops reading until its socket is full,
// for less than WriteTimeout, and then reads again gets every frame, in
// order, including those queued while it stalled; the connection stays
// open, and the stall no longer counts against WriteTimeout once the
// socket drained. On Epoll this is the loop's writable path (EPOLLOUT hands
// the connection back to the writers).
func TestStallThenDrain(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		const half, n = 256, 512
		clk, tick := newFakeClock(), make(ticker)
		const wt = 10 * time.Second
		h := newTestHandler(false)
		tr, url := startServer(t, Config{Kind: kind, MaxQueueBytes: 64 << 20, WriteTimeout: wt, PingInterval: -1, tick: tick, clock: clk.now}, h)
		cl := dial(t, url) // reads nothing until told
		c := h.waitConn(t)
		for i := range half {
			if err := c.Send(stallFrame(i)); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		waitStalled(t, kind, c)
		// Queued while the socket is full (Epoll: appended to the frames
		// the loop holds).
		for i := half; i < n; i++ {
			if err := c.Send(stallFrame(i)); err != nil {
				t.Fatalf("Send %d while stalled: %v", i, err)
			}
		}
		if kind == Epoll {
			// Not yet WriteTimeout: the heartbeat leaves it alone.
			clk.set(c.unwritable.Load() + int64(wt) - 1)
			tick.pass(t)
			if s := c.state.Load(); s != stateOpen {
				t.Fatalf("state %d after a stall shorter than WriteTimeout, want open", s)
			}
		}
		readStallFrames(t, cl, 0, n)
		if kind == Epoll {
			waitFor(t, func() bool { return c.unwritable.Load() == 0 }, "the stall to be forgotten once the socket drained")
			clk.advance(10 * wt)
			tick.pass(t)
		}
		if s := c.state.Load(); s != stateOpen {
			t.Fatalf("state %d after the peer drained, want open", s)
		}
		if err := c.Send(stallFrame(n)); err != nil {
			t.Fatalf("Send after the drain: %v", err)
		}
		readStallFrames(t, cl, n, n+1)
		if got := tr.SlowConsumers(); got != 0 {
			t.Fatalf("SlowConsumers() = %d, want 0", got)
		}
		select {
		case ev := <-h.closed:
			t.Fatalf("OnClose %d %q during a stall within the limits", ev.code, ev.reason)
		default:
		}
	})
}

// TestWriteTimeoutByTheClock: a socket that stays full is cut exactly when
// WriteTimeout has passed on the transport clock since it was found full,
// not a tick before: OnClose reports 1006 "write timeout" and the
// transport forgets the connection. (TestWriteTimeout runs the same on the
// real clock, for both kinds; the portable writer's timeout is its write
// deadline, which has no transport clock.)
func TestWriteTimeoutByTheClock(t *testing.T) {
	if !epollSupported {
		t.Skip("epoll only")
	}
	clk, tick := newFakeClock(), make(ticker)
	const wt = 10 * time.Second
	h := newTestHandler(false)
	tr, url := startServer(t, Config{Kind: Epoll, MaxQueueBytes: 64 << 20, WriteTimeout: wt, PingInterval: -1, tick: tick, clock: clk.now}, h)
	_ = dial(t, url) // never reads
	c := h.waitConn(t)
	for i := range 512 {
		if err := c.Send(stallFrame(i)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	waitStalled(t, Epoll, c)
	full := c.unwritable.Load()
	clk.set(full + int64(wt) - 1)
	tick.pass(t)
	if s := c.state.Load(); s != stateOpen {
		t.Fatalf("state %d a nanosecond before WriteTimeout, want open", s)
	}
	clk.set(full + int64(wt))
	tick.pass(t)
	ev := h.waitClose(t)
	if ev.code != protocol.CloseAbnormal || ev.reason != "write timeout" {
		t.Fatalf("OnClose got %d %q, want %d \"write timeout\"", ev.code, ev.reason, protocol.CloseAbnormal)
	}
	if n := tr.Len(); n != 0 {
		t.Fatalf("Len() = %d after the write timeout, want 0", n)
	}
}

// TestCloseTimeout: after Close, a peer that reads the close frame but
// neither answers it nor hangs up holds the connection for WriteTimeout on
// the transport clock, no longer: then the socket is closed (the peer reads
// the end of the stream) and OnClose reports the code and reason Close was
// given.
func TestCloseTimeout(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		clk, tick := newFakeClock(), make(ticker)
		const wt = 10 * time.Second
		h := newTestHandler(false)
		tr, url := startServer(t, Config{Kind: kind, WriteTimeout: wt, PingInterval: -1, tick: tick, clock: clk.now}, h)
		cl := dial(t, url)
		c := h.waitConn(t)
		begun := clk.now()
		c.Close(protocol.CloseForbidden, "forbidden")
		_ = cl.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := gws.ReadFrame(cl.rw)
		if err != nil {
			t.Fatalf("read the close frame: %v", err)
		}
		if code, reason := gws.ParseCloseFrameData(f.Payload); f.Header.OpCode != gws.OpClose || int(code) != protocol.CloseForbidden || reason != "forbidden" {
			t.Fatalf("got opcode %v code %d %q, want a close frame %d \"forbidden\"", f.Header.OpCode, code, reason, protocol.CloseForbidden)
		}
		// The peer does not answer. A nanosecond short of WriteTimeout the
		// connection still waits for it.
		clk.set(begun + int64(wt) - 1)
		tick.pass(t)
		if s := c.state.Load(); s != stateClosing {
			t.Fatalf("state %d before the close timeout, want closing", s)
		}
		if n := tr.Len(); n != 1 {
			t.Fatalf("Len() = %d before the close timeout, want 1", n)
		}
		clk.set(begun + int64(wt))
		tick.pass(t)
		ev := h.waitClose(t)
		if ev.code != protocol.CloseForbidden || ev.reason != "forbidden" {
			t.Fatalf("OnClose got %d %q, want %d \"forbidden\"", ev.code, ev.reason, protocol.CloseForbidden)
		}
		if n := tr.Len(); n != 0 {
			t.Fatalf("Len() = %d after the close timeout, want 0", n)
		}
		_ = cl.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := gws.ReadFrame(cl.rw); err == nil {
			t.Fatalf("the peer read another frame after the close frame, want the end of the stream")
		} else if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
			// The stream ended.
		} else {
			t.Fatalf("the peer's read after the close timeout: %v, want EOF or a reset", err)
		}
	})
}

// noHijack is a ResponseWriter that cannot hand its connection over (as
// HTTP/2's cannot): it hides the server's Hijacker.
type noHijack struct{ w http.ResponseWriter }

func (n noHijack) Header() http.Header         { return n.w.Header() }
func (n noHijack) Write(b []byte) (int, error) { return n.w.Write(b) }
func (n noHijack) WriteHeader(code int)        { n.w.WriteHeader(code) }

// TestUpgradeRefusals: each way Upgrade refuses answers plain HTTP with its
// documented status (and body), returns an error the caller can tell apart,
// and registers nothing.
func TestUpgradeRefusals(t *testing.T) {
	good := func(r *http.Request) {
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	}
	eachKind(t, func(t *testing.T, kind Kind) {
		for _, tc := range []struct {
			name       string
			state      string // "new" (not started), "closed" or "" (started)
			method     string
			mod        func(r *http.Request)
			hideHijack bool
			status     int
			body       string
			header     [2]string // a header the answer must carry
			isErr      error     // errors.Is the returned error, when set
			handshake  bool      // the returned error is a *HandshakeError
		}{
			{name: "not started", state: "new", mod: good, status: 503, body: "server shutting down", isErr: ErrClosed},
			{name: "closed", state: "closed", mod: good, status: 503, body: "server shutting down", isErr: ErrClosed},
			{name: "wrong method", method: http.MethodPost, mod: good, status: 405, handshake: true},
			{name: "wrong version", mod: func(r *http.Request) { good(r); r.Header.Set("Sec-WebSocket-Version", "8") }, status: 426, header: [2]string{"Sec-WebSocket-Version", "13"}, handshake: true},
			{name: "no key", mod: func(r *http.Request) { good(r); r.Header.Del("Sec-WebSocket-Key") }, status: 400, handshake: true},
			{name: "not an upgrade", mod: func(*http.Request) {}, status: 400, handshake: true},
			{name: "cannot hijack", mod: good, hideHijack: true, status: 500, body: "cannot take over the connection", isErr: http.ErrNotSupported},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tr := New(Config{Kind: kind})
				if tc.state != "new" {
					if err := tr.Start(); err != nil {
						t.Fatalf("Start: %v", err)
					}
				}
				t.Cleanup(func() { _ = tr.Close() })
				if tc.state == "closed" {
					_ = tr.Close()
				}
				h := newTestHandler(false)
				type result struct {
					c   *Conn
					err error
				}
				results := make(chan result, 1)
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tc.hideHijack {
						w = noHijack{w}
					}
					c, err := tr.Upgrade(w, r, "", h)
					results <- result{c, err}
				}))
				defer srv.Close()
				req, err := http.NewRequest(orDefault(tc.method, http.MethodGet), srv.URL+"/ws", nil)
				if err != nil {
					t.Fatal(err)
				}
				tc.mod(req)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatalf("request: %v", err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tc.status)
				}
				if tc.body != "" && strings.TrimSpace(string(body)) != tc.body {
					t.Fatalf("body %q, want %q", body, tc.body)
				}
				if tc.header[0] != "" && resp.Header.Get(tc.header[0]) != tc.header[1] {
					t.Fatalf("%s: %q, want %q", tc.header[0], resp.Header.Get(tc.header[0]), tc.header[1])
				}
				res := <-results
				if res.c != nil || res.err == nil {
					t.Fatalf("Upgrade returned %v, %v; want no connection and an error", res.c, res.err)
				}
				if tc.isErr != nil && !errors.Is(res.err, tc.isErr) {
					t.Fatalf("Upgrade error %v, want one that is %v", res.err, tc.isErr)
				}
				var he *HandshakeError
				if errors.As(res.err, &he) != tc.handshake || (tc.handshake && he.Status != tc.status) {
					t.Fatalf("Upgrade error %v (%T): HandshakeError %v, want %v with status %d", res.err, res.err, he != nil, tc.handshake, tc.status)
				}
				if n := tr.Len(); n != 0 {
					t.Fatalf("Len() = %d after a refusal, want 0", n)
				}
			})
		}
	})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
