package client

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/protocol"
)

// testServer is a small server speaking protocol v1 for the client's tests:
// it checks the bearer token, sends the welcome first, answers a few
// methods, pings, and lets tests push events, batch frames, send requests,
// close with a code, drop the TCP connection or go silent.
type testServer struct {
	t   *testing.T
	srv *httptest.Server
	URL string

	// Settings, written before the first connection.
	heartbeat        time.Duration // announced heartbeatMs; 0 for none
	heartbeatTimeout time.Duration // announced heartbeatTimeoutMs
	pingEvery        time.Duration // 0: no pings
	maxFrameBytes    int
	afterWelcome     [][]byte // frames batched with the welcome in one message
	start            string   // "": welcome first; "nothing": send nothing; "event": another event first
	noRefresh        bool     // answer auth.refresh with unknown_method
	features         []string // announced in the welcome

	conns chan *serverConn // every new connection
	wg    sync.WaitGroup   // the server's connection goroutines

	mu      sync.Mutex
	closed  bool                    // guarded by mu: set by close; wg gains no goroutine after it
	valid   func(token string) bool // guarded by mu
	tokens  []string                // guarded by mu: tokens of accepted upgrades
	all     []*serverConn           // guarded by mu
	reject  int                     // guarded by mu: HTTP status for every upgrade, 0 for none
	refused int                     // guarded by mu: upgrades refused with an HTTP status
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{
		t:                t,
		heartbeat:        100 * time.Millisecond,
		heartbeatTimeout: 400 * time.Millisecond,
		pingEvery:        50 * time.Millisecond,
		maxFrameBytes:    protocol.DefaultMaxFrameBytes,
		conns:            make(chan *serverConn, 64),
		valid:            func(tok string) bool { return tok == "good" },
		features:         []string{FeatureBatch},
	}
	ts.srv = httptest.NewServer(ts)
	ts.URL = "ws" + strings.TrimPrefix(ts.srv.URL, "http") + "/ws"
	t.Cleanup(ts.close)
	return ts
}

func (ts *testServer) close() {
	ts.mu.Lock()
	// A hijacked connection's handler is no longer waited for by
	// srv.Close: it starts its goroutines under mu unless closed is set,
	// so that every wg.Add happens before the Wait below.
	ts.closed = true
	for _, sc := range ts.all {
		sc.nc.Close()
	}
	ts.mu.Unlock()
	ts.srv.Close()
	ts.wg.Wait()
}

func (ts *testServer) setValid(fn func(string) bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.valid = fn
}

func (ts *testServer) setReject(status int) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.reject = status
}

func (ts *testServer) acceptedTokens() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.tokens...)
}

func (ts *testServer) refusedCount() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.refused
}

func (ts *testServer) connCount() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.all)
}

func writeHTTPError(w http.ResponseWriter, status int, code protocol.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": protocol.Errorf(code, "%s", msg)})
}

func (ts *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	ts.mu.Lock()
	reject, valid := ts.reject, ts.valid
	ts.mu.Unlock()
	switch {
	case reject != 0:
		ts.mu.Lock()
		ts.refused++
		ts.mu.Unlock()
		writeHTTPError(w, reject, protocol.CodeUnavailable, "try later")
		return
	case ok && tok == "lockdown":
		writeHTTPError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "lockdown")
		return
	case ok && tok == "revoked":
		writeHTTPError(w, http.StatusForbidden, protocol.CodeForbidden, "device revoked")
		return
	case !ok || !valid(tok):
		writeHTTPError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "invalid token")
		return
	}
	nc, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		ts.t.Errorf("test server: upgrade: %v", err)
		return
	}
	sc := &serverConn{
		ts:        ts,
		nc:        nc,
		br:        rw.Reader,
		responses: make(chan *protocol.Frame, 64),
		binaries:  make(chan []byte, 64),
		events:    make(chan *protocol.Frame, 1024),
		done:      make(chan struct{}),
	}
	ts.mu.Lock()
	if ts.closed {
		ts.mu.Unlock()
		nc.Close()
		return
	}
	ts.all = append(ts.all, sc)
	sc.n = len(ts.all)
	ts.tokens = append(ts.tokens, tok)
	ts.wg.Add(2) // the read and ping goroutines started below
	ts.mu.Unlock()

	welcome, _ := json.Marshal(protocol.Welcome{
		Protocol:           protocol.Version,
		ConnID:             fmt.Sprintf("c%d", sc.n),
		NodeID:             "test",
		Principal:          protocol.Principal{UserID: "u1", DeviceID: "d1", Kind: "machine", Scopes: []string{"read", "write"}},
		HeartbeatMs:        ts.heartbeat.Milliseconds(),
		HeartbeatTimeoutMs: ts.heartbeatTimeout.Milliseconds(),
		Limits:             protocol.Limits{MaxFrameBytes: ts.maxFrameBytes},
		Features:           ts.features,
	})
	switch ts.start {
	case "":
		sc.sendBatch(append([][]byte{protocol.AppendEvent(nil, protocol.EventWelcome, "", "", 0, welcome)}, ts.afterWelcome...)...)
	case "event":
		sc.send(event("hello", 1))
	}
	go func() {
		defer ts.wg.Done()
		sc.read()
	}()
	go func() {
		defer ts.wg.Done()
		sc.pingLoop()
	}()
	ts.conns <- sc
}

// nextConn returns the next connection the server accepted.
func (ts *testServer) nextConn(t *testing.T) *serverConn {
	t.Helper()
	select {
	case sc := <-ts.conns:
		return sc
	case <-time.After(10 * time.Second):
		t.Fatalf("test server: no connection within 10s")
		return nil
	}
}

// serverConn is the server side of one connection.
type serverConn struct {
	ts *testServer
	n  int // 1 for the first connection
	nc net.Conn
	br *bufio.Reader

	wmu       sync.Mutex // serializes writes
	silent    atomic.Bool
	pongs     atomic.Int64
	msgs      atomic.Int64 // text messages received
	closeCode atomic.Int32 // code of the client's close frame
	nextID    atomic.Int64

	responses chan *protocol.Frame // responses the client sent
	events    chan *protocol.Frame // events the client sent
	binaries  chan []byte          // binary messages the client sent
	done      chan struct{}        // closed when read returns

	rmu      sync.Mutex
	refresh  []string // tokens received with auth.refresh
	received []string // methods received
}

type lockedWriter struct{ sc *serverConn }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.sc.wmu.Lock()
	defer w.sc.wmu.Unlock()
	return w.sc.nc.Write(p)
}

func (sc *serverConn) read() {
	defer close(sc.done)
	defer sc.nc.Close()
	control := wsutil.ControlFrameHandler(lockedWriter{sc}, ws.StateServerSide)
	rd := &wsutil.Reader{Source: sc.br, State: ws.StateServerSide, OnIntermediate: control}
	for {
		hdr, err := rd.NextFrame()
		if err != nil {
			return
		}
		switch hdr.OpCode {
		case ws.OpClose:
			// Parsed by hand: wsutil.ControlHandler rejects 1012-1014,
			// which RFC 6455 did not define yet.
			p, _ := io.ReadAll(rd)
			code, _ := ws.ParseCloseFrameData(p)
			sc.closeCode.Store(int32(code))
			return
		case ws.OpPong:
			sc.pongs.Add(1)
		}
		if hdr.OpCode.IsControl() {
			if err := control(hdr, rd); err != nil {
				return
			}
			continue
		}
		data, err := io.ReadAll(rd)
		if err != nil {
			return
		}
		if hdr.OpCode == ws.OpBinary {
			sc.binaries <- data
			continue
		}
		if hdr.OpCode != ws.OpText {
			continue
		}
		sc.msgs.Add(1)
		protocol.Split(data, func(b []byte) {
			f, err := protocol.Decode(b)
			if err != nil {
				sc.ts.t.Errorf("test server: client sent an invalid frame %q: %v", b, err)
				return
			}
			sc.handle(f)
		})
	}
}

func (sc *serverConn) handle(f *protocol.Frame) {
	switch f.Type {
	case protocol.TypeResponse:
		sc.responses <- f
		return
	case protocol.TypeEvent:
		sc.events <- f
		return
	}
	if sc.silent.Load() {
		return
	}
	sc.rmu.Lock()
	sc.received = append(sc.received, f.Method)
	sc.rmu.Unlock()
	switch f.Method {
	case "sys.ping":
		sc.send(protocol.AppendResult(nil, f.ID, json.RawMessage(`{"pong":true}`)))
	case "echo":
		sc.send(protocol.AppendResult(nil, f.ID, f.Params))
	case "echo.idem":
		res, _ := json.Marshal(map[string]string{"idem": f.Idem})
		sc.send(protocol.AppendResult(nil, f.ID, res))
	case "fail":
		var e protocol.Error
		json.Unmarshal(f.Params, &e)
		b, _ := protocol.AppendError(nil, f.ID, &e)
		sc.send(b)
	case "never":
	case "auth.refresh":
		if sc.ts.noRefresh {
			b, _ := protocol.AppendError(nil, f.ID, protocol.Errorf(protocol.CodeUnknownMethod, "unknown method %q", f.Method))
			sc.send(b)
			return
		}
		var p struct{ Token string }
		json.Unmarshal(f.Params, &p)
		sc.rmu.Lock()
		sc.refresh = append(sc.refresh, p.Token)
		sc.rmu.Unlock()
		sc.send(protocol.AppendResult(nil, f.ID, json.RawMessage(`{}`)))
	default:
		b, _ := protocol.AppendError(nil, f.ID, protocol.Errorf(protocol.CodeUnknownMethod, "unknown method %q", f.Method))
		sc.send(b)
	}
}

func (sc *serverConn) refreshTokens() []string {
	sc.rmu.Lock()
	defer sc.rmu.Unlock()
	return append([]string(nil), sc.refresh...)
}

func (sc *serverConn) pingLoop() {
	if sc.ts.pingEvery <= 0 {
		return
	}
	t := time.NewTicker(sc.ts.pingEvery)
	defer t.Stop()
	for {
		select {
		case <-sc.done:
			return
		case <-t.C:
			if sc.silent.Load() {
				continue
			}
			sc.wmu.Lock()
			ws.WriteFrame(sc.nc, ws.NewPingFrame([]byte("hb")))
			sc.wmu.Unlock()
		}
	}
}

// send writes one frame as one message.
func (sc *serverConn) send(frame []byte) { sc.sendBatch(frame) }

// sendBatch writes frames as one message, separated by '\n'.
func (sc *serverConn) sendBatch(frames ...[]byte) {
	msg := []byte{}
	for i, f := range frames {
		if i > 0 {
			msg = append(msg, '\n')
		}
		msg = append(msg, f...)
	}
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	wsutil.WriteServerText(sc.nc, msg)
}

func (sc *serverConn) sendBinary(p []byte) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	wsutil.WriteServerBinary(sc.nc, p)
}

func event(name string, data any) []byte {
	b, _ := json.Marshal(data)
	return protocol.AppendEvent(nil, name, "", "", 0, b)
}

// request sends a request to the client and returns its id.
func (sc *serverConn) request(method string, params any) string {
	id := fmt.Sprintf("s%d", sc.nextID.Add(1))
	p, _ := json.Marshal(params)
	b, _ := protocol.AppendRequest(nil, id, method, p, "", nil)
	sc.send(b)
	return id
}

// response waits for the client's response to request id.
func (sc *serverConn) response(t *testing.T, id string) *protocol.Frame {
	t.Helper()
	for {
		select {
		case f := <-sc.responses:
			if f.ID == id {
				return f
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("test server: no response to %s within 10s", id)
			return nil
		}
	}
}

// closeWith sends a close frame with code; the connection ends when the
// client echoes it.
func (sc *serverConn) closeWith(code int, reason string) {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	ws.WriteFrame(sc.nc, ws.NewCloseFrame(ws.NewCloseFrameBody(ws.StatusCode(code), reason)))
}

// drop closes the TCP connection without a close frame.
func (sc *serverConn) drop() { sc.nc.Close() }

// goSilent stops pings and answers; the connection stays open.
func (sc *serverConn) goSilent() { sc.silent.Store(true) }

// eventually waits up to a generous bound for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitClosed waits for ch to be closed.
func waitClosed(t *testing.T, what string, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10s", what)
	}
}

// clientGoroutines returns the stacks of the goroutines running the
// client's code.
func clientGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "client.(*Client).") || strings.Contains(g, "client.(*conn).") {
			out = append(out, g)
		}
	}
	return out
}

// checkNoLeaks fails when a goroutine of the client is still running a
// while after every client was closed.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := clientGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %d client goroutines after Close, want 0:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stateLog records the states a client goes through.
type stateLog struct {
	mu     sync.Mutex
	states []State
	errs   []error
}

func (l *stateLog) record(s State, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states = append(l.states, s)
	l.errs = append(l.errs, err)
}

func (l *stateLog) count(s State) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, x := range l.states {
		if x == s {
			n++
		}
	}
	return n
}

// options returns test options for ts: short backoff and timeouts.
func (ts *testServer) options() Options {
	return Options{
		URL:              ts.URL,
		Token:            "good",
		MinBackoff:       5 * time.Millisecond,
		MaxBackoff:       50 * time.Millisecond,
		HandshakeTimeout: 5 * time.Second,
		CallTimeout:      5 * time.Second,
	}
}

// dial connects a client to ts and closes it, checking for leaks, at the
// end of the test.
func (ts *testServer) dial(t *testing.T, opts Options) *Client {
	t.Helper()
	c, err := Dial(t.Context(), opts)
	if err != nil {
		t.Fatalf("Dial: got error %v, want nil", err)
	}
	t.Cleanup(func() {
		c.Close()
		checkNoLeaks(t)
	})
	return c
}

// watchConn is the client's side of a connection, wrapped so that a test
// moves the watchdog's clock: elapse makes the read deadline the client set
// last come sooner, as if that much time had passed without a frame; stall
// does it to every deadline the client sets from then on.
type watchConn struct {
	net.Conn
	mu       sync.Mutex
	deadline time.Time     // guarded by mu: the read deadline the client asked for
	pull     time.Duration // guarded by mu: subtracted from that deadline
	sticky   bool          // guarded by mu: pull stays for later deadlines
	sets     int           // guarded by mu: SetReadDeadline calls
}

func (w *watchConn) SetReadDeadline(d time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sets++
	w.deadline = d
	if !w.sticky {
		w.pull = 0
	}
	return w.applyLocked()
}

func (w *watchConn) applyLocked() error {
	if w.deadline.IsZero() {
		return w.Conn.SetReadDeadline(w.deadline)
	}
	return w.Conn.SetReadDeadline(w.deadline.Add(-w.pull))
}

func (w *watchConn) elapse(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pull = d
	_ = w.applyLocked()
}

func (w *watchConn) stall(d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pull, w.sticky = d, true
	_ = w.applyLocked()
}

func (w *watchConn) deadlineSets() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.sets
}

// watchDialer returns a netDial for Options that wraps every connection in
// a watchConn and hands it to the test on the returned channel.
func watchDialer() (func(ctx context.Context, network, addr string) (net.Conn, error), <-chan *watchConn) {
	ch := make(chan *watchConn, 16)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		w := &watchConn{Conn: nc}
		ch <- w
		return w, nil
	}, ch
}
