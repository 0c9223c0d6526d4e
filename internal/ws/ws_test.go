package ws

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/protocol"
)

// closeEvent is one OnClose call.
type closeEvent struct {
	code   int
	reason string
}

// testHandler records what a connection receives and optionally echoes it.
type testHandler struct {
	echo   bool
	mu     sync.Mutex
	msgs   []string
	msgCh  chan string
	closed chan closeEvent
	conns  chan *Conn
}

func newTestHandler(echo bool) *testHandler {
	return &testHandler{
		echo:   echo,
		msgCh:  make(chan string, 1<<16),
		closed: make(chan closeEvent, 1024),
		conns:  make(chan *Conn, 1024),
	}
}

func (h *testHandler) OnMessage(c *Conn, payload []byte) {
	h.mu.Lock()
	h.msgs = append(h.msgs, string(payload))
	h.mu.Unlock()
	select {
	case h.msgCh <- string(payload):
	default:
	}
	if h.echo {
		_ = c.SendText(payload)
	}
}

func (h *testHandler) OnClose(c *Conn, code int, reason string) {
	h.closed <- closeEvent{code, reason}
}

// waitClose waits for one OnClose and returns it.
func (h *testHandler) waitClose(t *testing.T) closeEvent {
	t.Helper()
	select {
	case ev := <-h.closed:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatalf("OnClose not called within 5s")
		return closeEvent{}
	}
}

// waitConn returns the next connection the server upgraded.
func (h *testHandler) waitConn(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-h.conns:
		return c
	case <-time.After(5 * time.Second):
		t.Fatalf("no connection upgraded within 5s")
		return nil
	}
}

// testKinds are the transports this system runs.
func testKinds() []Kind {
	if epollSupported {
		return []Kind{Epoll, Portable}
	}
	return []Kind{Portable}
}

// eachKind runs fn as one subtest per transport (named after its Kind), so
// that both implementations pass the same tests.
func eachKind(t *testing.T, fn func(t *testing.T, kind Kind)) {
	t.Helper()
	for _, k := range testKinds() {
		t.Run(string(k), func(t *testing.T) { fn(t, k) })
	}
}

// startServer starts a Transport and an HTTP server on 127.0.0.1 whose
// handler upgrades every request with h. It returns the ws:// URL.
func startServer(t testing.TB, cfg Config, h *testHandler) (*Transport, string) {
	t.Helper()
	tr := New(cfg)
	if err := tr.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := tr.Upgrade(w, r, "junction.v1", h)
		if err != nil {
			return
		}
		h.conns <- c
	}))
	t.Cleanup(func() {
		srv.Close()
		_ = tr.Close()
	})
	return tr, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// client is a test WebSocket client built on gobwas/ws.
type client struct {
	net.Conn
	rw io.ReadWriter // buffered reads, direct writes
}

func dial(t testing.TB, url string) *client {
	t.Helper()
	d := gws.Dialer{Protocols: []string{"junction.v1"}}
	nc, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { nc.Close() })
	if br == nil {
		br = bufio.NewReaderSize(nc, 64<<10)
	}
	return &client{Conn: nc, rw: struct {
		io.Reader
		io.Writer
	}{br, nc}}
}

func (c *client) send(t testing.TB, msg string) {
	t.Helper()
	if err := wsutil.WriteClientText(c.Conn, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func (c *client) recv(t testing.TB) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, op, err := wsutil.ReadServerData(c.rw)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if op != gws.OpText {
		t.Fatalf("got opcode %v, want text", op)
	}
	return string(b)
}

// readClose reads frames until a close frame, answers it as a well-behaved
// client does and returns its code.
func (c *client) readClose(t testing.TB) int {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, err := gws.ReadFrame(c.rw)
		if err != nil {
			t.Fatalf("read until close: %v", err)
		}
		if f.Header.OpCode == gws.OpClose {
			code, _ := gws.ParseCloseFrameData(f.Payload)
			_ = wsutil.WriteClientMessage(c.Conn, gws.OpClose, f.Payload[:min(len(f.Payload), 2)])
			return int(code)
		}
	}
}

// readCloseOrCut reads frames until a close frame, whose code it returns, or
// until the connection ends without one (cut true: EOF or reset).
func (c *client) readCloseOrCut(t testing.TB) (code int, cut bool) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		f, err := gws.ReadFrame(c.rw)
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("read until close: %v", err)
		case err != nil:
			return 0, true
		case f.Header.OpCode == gws.OpClose:
			code, _ := gws.ParseCloseFrameData(f.Payload)
			return int(code), false
		}
	}
}

func TestEcho(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		tests := []struct {
			name string
			msgs []string
		}{
			{name: "one", msgs: []string{"hello"}},
			{name: "empty", msgs: []string{""}},
			{name: "several", msgs: []string{"a", "bb", "ccc", `{"type":"req"}`}},
			{name: "medium", msgs: []string{strings.Repeat("m", 300)}},
			{name: "large", msgs: []string{strings.Repeat("L", 70000), "after"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newTestHandler(true)
				_, url := startServer(t, Config{Kind: kind, MaxMessageBytes: 1 << 20}, h)
				c := dial(t, url)
				for _, m := range tt.msgs {
					c.send(t, m)
				}
				for i, want := range tt.msgs {
					if got := c.recv(t); got != want {
						t.Fatalf("message %d: got %.40q (len %d), want %.40q (len %d)", i, got, len(got), want, len(want))
					}
				}
			})
		}
	})
}

func TestFragmentedMessage(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(true)
		_, url := startServer(t, Config{Kind: kind}, h)
		c := dial(t, url)
		frames := []gws.Frame{
			gws.NewFrame(gws.OpText, false, []byte("hel")),
			gws.NewFrame(gws.OpPing, true, []byte("p")), // control frame between fragments
			gws.NewFrame(gws.OpContinuation, false, []byte("lo ")),
			gws.NewFrame(gws.OpContinuation, true, []byte("world")),
		}
		for _, f := range frames {
			if err := gws.WriteFrame(c.Conn, gws.MaskFrame(f)); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := gws.ReadFrame(c.rw)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if f.Header.OpCode != gws.OpPong || string(f.Payload) != "p" {
			t.Fatalf("got %v %q, want pong \"p\"", f.Header.OpCode, f.Payload)
		}
		if got, want := c.recv(t), "hello world"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// TestSplitWrites sends a frame one byte per write, so every read ends in a
// partial frame.
func TestSplitWrites(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(true)
		_, url := startServer(t, Config{Kind: kind}, h)
		c := dial(t, url)
		var buf strings.Builder
		for _, m := range []string{"first", strings.Repeat("x", 200)} {
			b, _ := gws.CompileFrame(gws.MaskFrame(gws.NewTextFrame([]byte(m))))
			buf.Write(b)
		}
		for _, b := range []byte(buf.String()) {
			if _, err := c.Write([]byte{b}); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
		if got, want := c.recv(t), "first"; got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
		if got, want := c.recv(t), strings.Repeat("x", 200); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

func TestPingFromClient(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind}, h)
		c := dial(t, url)
		if err := wsutil.WriteClientMessage(c.Conn, gws.OpPing, []byte("are you there")); err != nil {
			t.Fatalf("write ping: %v", err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := gws.ReadFrame(c.rw)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if f.Header.OpCode != gws.OpPong || string(f.Payload) != "are you there" {
			t.Fatalf("got %v %q, want pong %q", f.Header.OpCode, f.Payload, "are you there")
		}
		if f.Header.Masked {
			t.Fatalf("got a masked server frame, want unmasked")
		}
	})
}

func TestProtocolViolations(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		tests := []struct {
			name string
			// frame is written raw (not masked by the test unless mask is set).
			frame gws.Frame
			mask  bool
			want  int
		}{
			{name: "binary", frame: gws.NewBinaryFrame([]byte{1, 2, 3}), mask: true, want: protocol.CloseUnsupportedData},
			{name: "too big", frame: gws.NewTextFrame(make([]byte, 2000)), mask: true, want: protocol.CloseTooBig},
			{name: "unmasked", frame: gws.NewTextFrame([]byte("hi")), want: protocol.CloseProtocolError},
			{name: "reserved bits", frame: gws.Frame{Header: gws.Header{Fin: true, Rsv: 4, OpCode: gws.OpText, Length: 2}, Payload: []byte("hi")}, mask: true, want: protocol.CloseProtocolError},
			{name: "reserved opcode", frame: gws.Frame{Header: gws.Header{Fin: true, OpCode: 0x3, Length: 2}, Payload: []byte("hi")}, mask: true, want: protocol.CloseProtocolError},
			{name: "long control", frame: gws.NewFrame(gws.OpPing, true, make([]byte, 126)), mask: true, want: protocol.CloseProtocolError},
			{name: "bare continuation", frame: gws.NewFrame(gws.OpContinuation, true, []byte("x")), mask: true, want: protocol.CloseProtocolError},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				h := newTestHandler(false)
				_, url := startServer(t, Config{Kind: kind, MaxMessageBytes: 1000}, h)
				c := dial(t, url)
				f := tt.frame
				if tt.mask {
					f = gws.MaskFrame(f)
				}
				b, err := gws.CompileFrame(f)
				if err != nil {
					t.Fatalf("compile: %v", err)
				}
				if _, err := c.Write(b); err != nil {
					t.Fatalf("write: %v", err)
				}
				if got := c.readClose(t); got != tt.want {
					t.Fatalf("client got close %d, want %d", got, tt.want)
				}
				if ev := h.waitClose(t); ev.code != tt.want {
					t.Fatalf("OnClose got %d %q, want %d", ev.code, ev.reason, tt.want)
				}
			})
		}
	})
}

func TestPeerClose(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind}, h)
		c := dial(t, url)
		if err := wsutil.WriteClientMessage(c.Conn, gws.OpClose, gws.NewCloseFrameBody(4001, "bye")); err != nil {
			t.Fatalf("write close: %v", err)
		}
		if got, want := c.readClose(t), 4001; got != want {
			t.Fatalf("echoed close got %d, want %d", got, want)
		}
		ev := h.waitClose(t)
		if ev.code != 4001 || ev.reason != "bye" {
			t.Fatalf("OnClose got %d %q, want 4001 \"bye\"", ev.code, ev.reason)
		}
	})
}

func TestAbruptClose(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		tr, url := startServer(t, Config{Kind: kind}, h)
		c := dial(t, url)
		h.waitConn(t)
		c.Close()
		if ev := h.waitClose(t); ev.code != protocol.CloseAbnormal {
			t.Fatalf("OnClose got %d, want %d", ev.code, protocol.CloseAbnormal)
		}
		waitFor(t, func() bool { return tr.Len() == 0 }, "Len() == 0")
	})
}

// waitFor polls cond for up to 5s.
func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHeartbeat drives the heartbeat with its own ticks (Config.tick), so
// no timing decides the outcome: a tick pings both clients; the live one
// answers, and the next tick finds its ping answered and pings again, while
// it finds the dead one's ping outstanding past PongTimeout (1ns) and closes
// it with 4102. The live one survives every round.
func TestHeartbeat(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		tick := make(chan time.Time)
		tr, url := startServer(t, Config{Kind: kind, PingInterval: time.Nanosecond, PongTimeout: time.Nanosecond, WriteTimeout: 10 * time.Second, tick: tick}, h)
		beat := func() { t.Helper(); heartbeatTick(t, tick) }

		// A live client answers every ping, and reports (in transport
		// clock) when it got it: the server read the pong after that.
		live := dial(t, url)
		liveConn := h.waitConn(t)
		pinged := make(chan int64, 16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				f, err := gws.ReadFrame(live.rw)
				if err != nil {
					return
				}
				if f.Header.OpCode != gws.OpPing {
					continue
				}
				pinged <- tr.now()
				if f.Header.Masked {
					gws.Cipher(f.Payload, f.Header.Mask, 0)
				}
				if err := wsutil.WriteClientMessage(live.Conn, gws.OpPong, f.Payload); err != nil {
					return
				}
			}
		}()
		answered := func(round int) {
			t.Helper()
			var at int64
			select {
			case at = <-pinged:
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: the live client got no ping", round)
			}
			waitFor(t, func() bool { return liveConn.lastRead.Load() >= at }, "the server to read the pong")
		}

		// A dead client never reads nor answers.
		_ = dial(t, url)
		deadConn := h.waitConn(t)

		beat() // pings both
		answered(1)
		beat() // the dead one's ping is outstanding: 4102; the live one is pinged again
		ev := h.waitClose(t)
		if ev.code != protocol.CloseHeartbeatTimeout {
			t.Fatalf("OnClose got %d %q, want %d", ev.code, ev.reason, protocol.CloseHeartbeatTimeout)
		}
		if s := deadConn.state.Load(); s != stateClosed {
			t.Fatalf("dead connection state %d, want closed", s)
		}
		for round := 2; round <= 6; round++ {
			answered(round)
			beat()
		}
		answered(7)
		if s := liveConn.state.Load(); s != stateOpen {
			t.Fatalf("live connection state %d after 7 answered pings, want open", s)
		}
		live.Close()
		<-done
	})
}

func TestSlowConsumer(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind, MaxQueueBytes: 1 << 20, WriteTimeout: 5 * time.Second}, h)
		slow := dial(t, url)
		slowConn := h.waitConn(t)
		fast := dial(t, url)
		fastConn := h.waitConn(t)

		frame := PrepareText([]byte(strings.Repeat("s", 64<<10)))
		var received int
		done := make(chan error, 1)
		go func() {
			for {
				if _, _, err := wsutil.ReadServerData(fast.rw); err != nil {
					done <- err
					return
				}
				received++
			}
		}()
		var err error
		sent := 0
		for i := 0; i < 10000 && err == nil; i++ {
			if err = slowConn.Send(frame); err != nil {
				break
			}
			if err := fastConn.Send(frame); err != nil {
				t.Fatalf("Send to the reading client: %v", err)
			}
			sent++
			if i%8 == 0 {
				waitFor(t, func() bool { f, _ := fastConn.QueueLen(); return f < 8 }, "fast queue to drain")
			}
		}
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("Send to the slow client got %v, want ErrQueueFull", err)
		}
		if err := slowConn.Send(frame); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after overflow got %v, want ErrClosed", err)
		}
		// The slow client now reads: frames, then the close frame, or a reset
		// when the close frame did not fit in the full socket.
		if got, cut := slow.readCloseOrCut(t); !cut && got != protocol.CloseSlowConsumer {
			t.Fatalf("slow client got close %d, want %d or a reset", got, protocol.CloseSlowConsumer)
		}
		if ev := h.waitClose(t); ev.code != protocol.CloseSlowConsumer {
			t.Fatalf("OnClose got %d, want %d", ev.code, protocol.CloseSlowConsumer)
		}
		fastConn.Close(protocol.CloseNormal, "done")
		if err := <-done; err == nil {
			t.Fatalf("fast reader ended without error")
		}
		if received != sent {
			t.Fatalf("fast client received %d frames, want %d", received, sent)
		}
	})
}

// TestSlowConsumerReleasedAtOnce: a connection closed with 4108 while its
// socket is full does not wait for WriteTimeout (an hour here) to be
// released: it is cut, OnClose reports 4108 and the transport forgets it;
// the peer sees its stream end.
func TestSlowConsumerReleasedAtOnce(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		for _, tt := range []struct {
			name  string
			close func(c *Conn, frame []byte) error // overflows or closes c
		}{
			{name: "queue overflow", close: func(c *Conn, frame []byte) error {
				for range 100_000 {
					if err := c.Send(frame); err != nil {
						return err
					}
				}
				return nil
			}},
			{name: "Close 4108", close: func(c *Conn, frame []byte) error {
				// Fill the socket first (frames stay queued once it is full).
				for {
					if f, _ := c.QueueLen(); f > 4 {
						break
					}
					if err := c.Send(frame); err != nil {
						return err
					}
					time.Sleep(time.Millisecond)
				}
				c.Close(protocol.CloseSlowConsumer, "slow consumer")
				return ErrQueueFull
			}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				h := newTestHandler(false)
				tr, url := startServer(t, Config{Kind: kind, MaxQueueBytes: 1 << 20, WriteTimeout: time.Hour, PingInterval: -1}, h)
				slow := dial(t, url) // never reads until the end
				sc := h.waitConn(t)
				frame := PrepareText([]byte(strings.Repeat("s", 64<<10)))
				if err := tt.close(sc, frame); !errors.Is(err, ErrQueueFull) {
					t.Fatalf("filling the slow connection: got %v, want ErrQueueFull", err)
				}
				// Generous: the point is that it happens at all before the hour.
				select {
				case ev := <-h.closed:
					if ev.code != protocol.CloseSlowConsumer {
						t.Fatalf("OnClose got %d, want %d", ev.code, protocol.CloseSlowConsumer)
					}
				case <-time.After(30 * time.Second):
					t.Fatalf("OnClose not called: the slow consumer is held until WriteTimeout")
				}
				if n := tr.Len(); n != 0 {
					t.Fatalf("transport holds %d connections after OnClose, want 0", n)
				}
				if code, cut := slow.readCloseOrCut(t); !cut && code != protocol.CloseSlowConsumer {
					t.Fatalf("slow client got close %d, want %d or a reset", code, protocol.CloseSlowConsumer)
				}
			})
		}
	})
}

// TestWriteTimeout: a connection whose socket stays full for WriteTimeout
// (the peer reads nothing, the queue is within its bounds) is cut: OnClose
// reports 1006 "write timeout" and the transport forgets it.
func TestWriteTimeout(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		tr, url := startServer(t, Config{Kind: kind, MaxQueueBytes: 64 << 20, WriteTimeout: 200 * time.Millisecond, PingInterval: -1}, h)
		_ = dial(t, url) // never reads
		c := h.waitConn(t)
		// 32 MiB: more than loopback's socket buffers hold on both sides,
		// less than the queue bounds.
		frame := PrepareText(make([]byte, 64<<10))
		for i := range 512 {
			if err := c.Send(frame); err != nil {
				t.Fatalf("Send %d: %v", i, err)
			}
		}
		ev := h.waitClose(t)
		if ev.code != protocol.CloseAbnormal || ev.reason != "write timeout" {
			t.Fatalf("OnClose got %d %q, want %d \"write timeout\"", ev.code, ev.reason, protocol.CloseAbnormal)
		}
		waitFor(t, func() bool { return tr.Len() == 0 }, "Len() == 0")
	})
}

func TestManyFramesInOrder(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		const n = 10000
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind, MaxQueueFrames: 2 * n}, h)
		c := dial(t, url)
		sc := h.waitConn(t)
		go func() {
			for i := range n {
				if err := sc.Send(PrepareText(fmt.Appendf(nil, "%d", i))); err != nil {
					return
				}
			}
		}()
		for i := range n {
			if got, want := c.recv(t), fmt.Sprint(i); got != want {
				t.Fatalf("frame %d: got %q, want %q", i, got, want)
			}
		}
	})
}

func TestConnCloseTwice(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind}, h)
		c := dial(t, url)
		sc := h.waitConn(t)
		if err := sc.Send(PrepareText([]byte("before"))); err != nil {
			t.Fatalf("Send: %v", err)
		}
		sc.Close(protocol.CloseNormal, "bye")
		sc.Close(protocol.CloseGoingAway, "again")
		if err := sc.Send(PrepareText([]byte("after"))); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Close got %v, want ErrClosed", err)
		}
		if got := c.recv(t); got != "before" {
			t.Fatalf("got %q, want %q", got, "before")
		}
		if got := c.readClose(t); got != protocol.CloseNormal {
			t.Fatalf("client got close %d, want %d", got, protocol.CloseNormal)
		}
		c.Close()
		if ev := h.waitClose(t); ev.code != protocol.CloseNormal || ev.reason != "bye" {
			t.Fatalf("OnClose got %d %q, want %d \"bye\"", ev.code, ev.reason, protocol.CloseNormal)
		}
		select {
		case ev := <-h.closed:
			t.Fatalf("second OnClose %v", ev)
		case <-time.After(50 * time.Millisecond):
		}
	})
}

func TestTransportClose(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		before := runtime.NumGoroutine()
		h := newTestHandler(false)
		tr := New(Config{Kind: kind, WriteTimeout: time.Second})
		if err := tr.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, err := tr.Upgrade(w, r, "", h); err == nil {
				h.conns <- c
			}
		}))
		url := "ws" + strings.TrimPrefix(srv.URL, "http")
		const n = 5
		clients := make([]*client, n)
		for i := range clients {
			clients[i] = dial(t, url)
			h.waitConn(t)
		}
		if got := tr.Len(); got != n {
			t.Fatalf("Len() got %d, want %d", got, n)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		for range n {
			if ev := h.waitClose(t); ev.code != protocol.CloseGoingAway {
				t.Fatalf("OnClose got %d, want %d", ev.code, protocol.CloseGoingAway)
			}
		}
		for i, c := range clients {
			if got := c.readClose(t); got != protocol.CloseGoingAway {
				t.Fatalf("client %d got close %d, want %d", i, got, protocol.CloseGoingAway)
			}
			c.Close()
		}
		if got := tr.Len(); got != 0 {
			t.Fatalf("Len() after Close got %d, want 0", got)
		}
		srv.Close()
		waitFor(t, func() bool { return runtime.NumGoroutine() <= before }, fmt.Sprintf("goroutines back to %d", before))
	})
}

// clientHandler collects a RoleClient connection's messages.
type clientHandler struct {
	msgs   chan string
	closed chan int
}

func (h *clientHandler) OnMessage(c *Conn, p []byte)         { h.msgs <- string(p) }
func (h *clientHandler) OnClose(c *Conn, code int, _ string) { h.closed <- code }

func TestRoleClientAttach(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		sh := newTestHandler(true)
		_, url := startServer(t, Config{Kind: kind}, sh)

		ct := New(Config{Kind: kind})
		if err := ct.Start(); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = ct.Close() })
		nc, br, _, err := gws.Dialer{}.Dial(context.Background(), url)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		var buffered []byte
		if br != nil {
			buffered, _ = br.Peek(br.Buffered())
		}
		ch := &clientHandler{msgs: make(chan string, 16), closed: make(chan int, 1)}
		cc, err := ct.AttachWith(nc, RoleClient, ch, AttachOptions{Buffered: buffered})
		if err != nil {
			t.Fatalf("Attach: %v", err)
		}
		for _, m := range []string{"one", strings.Repeat("two", 100)} {
			if err := cc.SendText([]byte(m)); err != nil {
				t.Fatalf("SendText: %v", err)
			}
			select {
			case got := <-ch.msgs:
				if got != m {
					t.Fatalf("got %.20q, want %.20q", got, m)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("no echo within 5s")
			}
		}
		cc.Close(protocol.CloseNormal, "")
		select {
		case code := <-ch.closed:
			if code != protocol.CloseNormal {
				t.Fatalf("client OnClose got %d, want %d", code, protocol.CloseNormal)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("client OnClose not called")
		}
		if ev := sh.waitClose(t); ev.code != protocol.CloseNormal {
			t.Fatalf("server OnClose got %d, want %d", ev.code, protocol.CloseNormal)
		}
	})
}

func TestBadHandshake(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind}, h)
		resp, err := http.Get("http" + strings.TrimPrefix(url, "ws"))
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("got status %d, want 400", resp.StatusCode)
		}
	})
}

// TestSendBatch fans frames out to several connections through one Batch:
// every connection gets every frame in order, whether the batch flushed on
// its own (more than batchFlushAt ready connections) or by Flush; a full
// queue still closes with 4108 and refuses later frames.
func TestSendBatch(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		const conns, frames = 3, 500
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind, MaxQueueFrames: 2 * frames, WriteTimeout: time.Second}, h)
		clients := make([]*client, conns)
		servers := make([]*Conn, conns)
		for i := range conns {
			clients[i] = dial(t, url)
			servers[i] = h.waitConn(t)
		}
		go func() {
			var b Batch
			for i := range frames {
				f := PrepareText(fmt.Appendf(nil, "%d", i))
				for _, sc := range servers {
					_ = sc.SendBatch(&b, f)
				}
				if i%7 == 0 {
					b.Flush()
				}
			}
			b.Flush()
		}()
		for i := range frames {
			for j, c := range clients {
				if got, want := c.recv(t), fmt.Sprint(i); got != want {
					t.Fatalf("client %d, frame %d: got %q, want %q", j, i, got, want)
				}
			}
		}

		// Overflow through SendBatch: ErrQueueFull, then ErrClosed, then 4108.
		slow := servers[0]
		var b Batch
		big := PrepareText([]byte(strings.Repeat("s", 64<<10)))
		var err error
		for i := 0; i < 10000 && err == nil; i++ {
			err = slow.SendBatch(&b, big)
		}
		b.Flush()
		if !errors.Is(err, ErrQueueFull) {
			t.Fatalf("SendBatch to a client that does not read got %v, want ErrQueueFull", err)
		}
		if err := slow.SendBatch(&b, big); !errors.Is(err, ErrClosed) {
			t.Fatalf("SendBatch after overflow got %v, want ErrClosed", err)
		}
		if ev := h.waitClose(t); ev.code != protocol.CloseSlowConsumer {
			t.Fatalf("close code %d, want %d", ev.code, protocol.CloseSlowConsumer)
		}
	})
}

// TestSendFramesBatch: frames queued together reach the client in order,
// across calls and connections; a call whose frames overflow the queue
// queues those that fit, reports how many, and closes with 4108.
func TestSendFramesBatch(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		const maxFrames = 10
		h := newTestHandler(false)
		_, url := startServer(t, Config{Kind: kind, MaxQueueFrames: maxFrames, WriteTimeout: time.Second}, h)
		cl := dial(t, url)
		sc := h.waitConn(t)
		cl2 := dial(t, url)
		sc2 := h.waitConn(t)
		frames := func(from, n int) [][]byte {
			fs := make([][]byte, n)
			for i := range fs {
				fs[i] = PrepareText(fmt.Appendf(nil, "%d", from+i))
			}
			return fs
		}
		var b Batch
		for _, call := range [][2]int{{0, 3}, {3, 1}, {4, 4}} {
			for _, c := range []*Conn{sc, sc2} {
				if n, err := c.SendFramesBatch(&b, frames(call[0], call[1])); n != call[1] || err != nil {
					t.Fatalf("SendFramesBatch of %d frames: got %d queued, %v; want all, nil", call[1], n, err)
				}
			}
		}
		b.Flush()
		for i := range 8 {
			for j, c := range []*client{cl, cl2} {
				if got, want := c.recv(t), fmt.Sprint(i); got != want {
					t.Fatalf("client %d, frame %d: got %q, want %q", j, i, got, want)
				}
			}
		}

		// The writers may be done with the frames above or not: hold the
		// connection as a writer does, so that the queue is known.
		waitFor(t, func() bool {
			sc.mu.Lock()
			defer sc.mu.Unlock()
			if sc.wstate != wIdle || sc.qframes != 0 {
				return false
			}
			sc.wstate = wReady
			return true
		}, "the connection's queue to empty")
		if n, err := sc.SendFramesBatch(&b, frames(100, maxFrames-2)); n != maxFrames-2 || err != nil {
			t.Fatalf("SendFramesBatch up to the bound: got %d queued, %v; want %d, nil", n, err, maxFrames-2)
		}
		if n, err := sc.SendFramesBatch(&b, frames(200, 5)); n != 2 || !errors.Is(err, ErrQueueFull) {
			t.Fatalf("SendFramesBatch over the bound: got %d queued, %v; want 2, ErrQueueFull", n, err)
		}
		if n, err := sc.SendFramesBatch(&b, frames(300, 1)); n != 0 || !errors.Is(err, ErrClosed) {
			t.Fatalf("SendFramesBatch after overflow: got %d queued, %v; want 0, ErrClosed", n, err)
		}
		b.Flush()
		sc.t.schedule(sc) // hand the held connection to the writers
		if ev := h.waitClose(t); ev.code != protocol.CloseSlowConsumer {
			t.Fatalf("close code %d, want %d", ev.code, protocol.CloseSlowConsumer)
		}
	})
}

// TestReadPause: loops that pause between waits (Config.ReadPause) still
// read every message, in order, from several connections.
func TestReadPause(t *testing.T) {
	h := newTestHandler(true)
	_, url := startServer(t, Config{ReadPause: 2 * time.Millisecond}, h)
	clients := []*client{dial(t, url), dial(t, url), dial(t, url)}
	const n = 50
	for i := range n {
		for _, c := range clients {
			c.send(t, fmt.Sprint(i))
		}
	}
	for i := range n {
		for j, c := range clients {
			if got, want := c.recv(t), fmt.Sprint(i); got != want {
				t.Fatalf("client %d, message %d: got %q, want %q", j, i, got, want)
			}
		}
	}
}

// heartbeatTick gives the heartbeat (Config.tick) one tick; a send on the
// unbuffered channel also waits for the previous tick's checks to finish.
func heartbeatTick(t *testing.T, tick chan<- time.Time) {
	t.Helper()
	select {
	case tick <- time.Now():
	case <-time.After(5 * time.Second):
		t.Fatalf("the heartbeat took no tick within 5s")
	}
}

// TestHeartbeatWaitsForQueuedPing: a ping queued behind frames the server
// has not written yet cannot have been answered, so its PongTimeout counts
// from when nothing is left to write, not from when it was queued (a
// server whose writers fell behind would otherwise close every client
// behind its backlog with 4102). Once the peer read everything, the
// unanswered ping closes it.
func TestHeartbeatWaitsForQueuedPing(t *testing.T) {
	eachKind(t, func(t *testing.T, kind Kind) {
		h := newTestHandler(false)
		tick := make(chan time.Time)
		_, url := startServer(t, Config{Kind: kind, PingInterval: time.Nanosecond, PongTimeout: time.Nanosecond,
			WriteTimeout: time.Hour, MaxQueueBytes: 256 << 20, MaxQueueFrames: 1 << 12, tick: tick}, h)
		beat := func() { t.Helper(); heartbeatTick(t, tick) }
		cl := dial(t, url)
		sc := h.waitConn(t)
		// The client reads nothing yet: fill its socket, then leave frames
		// queued behind it.
		frame := PrepareText([]byte(strings.Repeat("q", 64<<10)))
		for sent := 0; ; sent += 16 {
			if sent >= 1024 {
				t.Fatal("64 MiB written to a client that reads nothing: the socket never filled")
			}
			for range 16 {
				if err := sc.Send(frame); err != nil {
					t.Fatalf("Send: %v", err)
				}
			}
			time.Sleep(20 * time.Millisecond)
			if f, _ := sc.QueueLen(); f > 8 {
				break // the socket is full and frames wait behind it
			}
		}

		beat() // pings, behind the queue
		beat() // the ping is outstanding past PongTimeout, but not written yet
		beat() // (this tick waits for the previous one's check to finish)
		if s := sc.state.Load(); s != stateOpen {
			t.Fatalf("closed (state %d) while its ping was still queued", s)
		}

		// The client reads everything, the ping included, and answers nothing.
		pinged := make(chan struct{})
		go func() {
			for {
				f, err := gws.ReadFrame(cl.rw)
				if err != nil {
					return
				}
				if f.Header.OpCode == gws.OpPing {
					close(pinged)
				}
			}
		}()
		select {
		case <-pinged:
		case <-time.After(10 * time.Second):
			t.Fatal("the client never got the ping")
		}
		waitFor(t, func() bool { f, _ := sc.QueueLen(); return f == 0 }, "the queue to drain")
		beat() // nothing left to write: the wait counted since the last tick is over
		ev := h.waitClose(t)
		if ev.code != protocol.CloseHeartbeatTimeout {
			t.Fatalf("OnClose got %d %q, want %d", ev.code, ev.reason, protocol.CloseHeartbeatTimeout)
		}
	})
}
