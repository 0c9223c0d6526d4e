package web

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/internal/ws"
)

// startFront serves handler through a Front on a loopback port. Its
// ReadHeaderTimeout (which bounds the front door's head too) is long enough
// for a slow machine: only TestFrontSilentClientTimesOut, which waits for
// it to pass, shortens it.
func startFront(t *testing.T, handler http.Handler) (*Front, string) {
	t.Helper()
	return startFrontTimeout(t, handler, 10*time.Second)
}

func startFrontTimeout(t *testing.T, handler http.Handler, headTimeout time.Duration) (*Front, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: headTimeout}
	f := NewFront(handler, srv, slog.New(slog.DiscardHandler))
	served := make(chan error, 1)
	go func() { served <- f.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return f, ln.Addr().String()
}

// rawExchange writes req on a new connection and returns everything the
// server sends until it closes the connection.
func rawExchange(t *testing.T, addr, req string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(nc)
	if err != nil {
		t.Fatalf("read: %v (got %q)", err, b)
	}
	return string(b)
}

func TestFrontHandsOffOtherRequests(t *testing.T) {
	_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(*frontWriter); ok {
			t.Errorf("%s %s was served by the front door", r.Method, r.URL.Path)
		}
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}))
	// Three pipelined requests in one write, the last closing: net/http
	// must see every byte the front door read while sniffing.
	got := rawExchange(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"+
		"POST /api/v1/thing HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"+
		"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	for _, want := range []string{"GET /healthz ", "POST /api/v1/thing hello", "GET /last "} {
		if !strings.Contains(got, want) {
			t.Errorf("response lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "HTTP/1.1 200 OK") != 3 {
		t.Errorf("want 3 responses, got:\n%s", got)
	}
	// A request line longer than the sniffing buffer is handed off too.
	long := "/x" + strings.Repeat("a", 6000)
	got = rawExchange(t, addr, "GET "+long+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 200 OK") || !strings.Contains(got, "GET /xaaaaaaaa") {
		t.Errorf("long request line: got %.200q", got)
	}
	// Paths that only look like /ws are not the gateway.
	for _, p := range []string{"/ws/", "/wsx", "/ws2?x", "/ws/iotx", "/ws/io", "/ws/iot/"} {
		got := rawExchange(t, addr, "GET "+p+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if !strings.Contains(got, "GET "+strings.SplitN(p, "?", 2)[0]) {
			t.Errorf("%s: got %.200q", p, got)
		}
	}
}

func TestFrontRefusedHandshake(t *testing.T) {
	_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(*frontWriter); !ok && r.Method == http.MethodGet {
			t.Errorf("GET /ws was not served by the front door")
		}
		if r.Method == http.MethodGet && (r.RemoteAddr == "" || r.URL.Query().Get("token") != "abc") {
			t.Errorf("request: remote %q, query %q", r.RemoteAddr, r.URL.RawQuery)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"code":"unauthorized"}}`)
	}))
	got := rawExchange(t, addr, "GET /ws?token=abc HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
	if err != nil {
		t.Fatalf("%v in %q", err, got)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || !resp.Close ||
		resp.Header.Get("Content-Type") != "application/json" || string(body) != `{"error":{"code":"unauthorized"}}` {
		t.Fatalf("got %d %v %q", resp.StatusCode, resp.Header, body)
	}
	// HEAD is not a handshake: net/http answers it.
	if got := rawExchange(t, addr, "HEAD /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(got, "HTTP/1.1 401") {
		t.Fatalf("HEAD /ws: %q", got)
	}
}

func TestFrontMalformedHandshake(t *testing.T) {
	_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("handler called for a malformed request")
	}))
	for _, req := range []string{
		"GET /ws HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
		"GET /ws HTTP/9\r\n\r\n",
	} {
		if got := rawExchange(t, addr, req); !strings.HasPrefix(got, "HTTP/1.1 400 Bad Request\r\n") {
			t.Errorf("%q: got %q", req, got)
		}
	}
}

func TestFrontHijackGetsEarlyBytes(t *testing.T) {
	_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nc, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		early, _ := rw.Reader.Peek(rw.Reader.Buffered())
		_, _ = io.WriteString(nc, "early="+string(early))
		_ = nc.Close()
	}))
	if got := rawExchange(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\nFRAME"); got != "early=FRAME" {
		t.Fatalf("got %q", got)
	}
}

func TestFrontSilentClientTimesOut(t *testing.T) {
	_, addr := startFrontTimeout(t, http.NotFoundHandler(), 500*time.Millisecond)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	// Half a request line, then silence: the server gives up after its
	// ReadHeaderTimeout and closes.
	_, _ = io.WriteString(nc, "GET /w")
	if b, err := io.ReadAll(nc); err != nil || len(b) != 0 {
		t.Fatalf("got %q, %v; want the connection closed without a response", b, err)
	}
}

func TestFrontHandlerPanic(t *testing.T) {
	_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			panic("boom")
		}
		_, _ = io.WriteString(w, "alive")
	}))
	if got := rawExchange(t, addr, "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
		t.Fatalf("a panicking handshake answered %q", got)
	}
	if got := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "alive") {
		t.Fatalf("server did not survive: %q", got)
	}
}

// watchWouldBlock sets testHookWouldBlock for the test and returns the
// channel it signals on. Call it before startFront: the hook is cleared
// after the front door stops.
func watchWouldBlock(t *testing.T) chan struct{} {
	t.Helper()
	ch := make(chan struct{}, 16)
	testHookWouldBlock = func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	t.Cleanup(func() { testHookWouldBlock = nil })
	return ch
}

// awaitWouldBlock waits until the server has read what came so far of a
// head and waits for more.
func awaitWouldBlock(t *testing.T, ch chan struct{}) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return // no bare descriptors: every head is read as a net.Conn
	}
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("the server did not wait for the rest of the head")
	}
}

// TestFrontBareDescriptor: a handshake whose head arrived whole is offered
// to the handler as a bare descriptor (ws.FDHijacker) with the bytes sent
// after the head; one whose head arrived in pieces was read as a net.Conn
// and is offered only through http.Hijacker, with the same bytes.
func TestFrontBareDescriptor(t *testing.T) {
	// The server reports when it has read what came so far of a head and
	// would wait for more: the second piece is sent after that.
	wouldBlock := watchWouldBlock(t)
	_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fh, ok := w.(ws.FDHijacker)
		if !ok {
			t.Errorf("the front door's writer is not a ws.FDHijacker")
			return
		}
		if fd, early, ok := fh.HijackFD(); ok {
			f := os.NewFile(uintptr(fd), "hijacked")
			_, _ = io.WriteString(f, "bare early="+string(early)+" from "+r.RemoteAddr)
			_ = f.Close()
			return
		}
		nc, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		early, _ := rw.Reader.Peek(rw.Reader.Buffered())
		_, _ = io.WriteString(nc, "net early="+string(early)+" from "+r.RemoteAddr)
		_ = nc.Close()
	}))
	exchange := func(parts ...string) (got, local string) {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
		for len(wouldBlock) > 0 {
			<-wouldBlock
		}
		for i, p := range parts {
			if i > 0 {
				awaitWouldBlock(t, wouldBlock)
			}
			if _, err := io.WriteString(nc, p); err != nil {
				t.Fatal(err)
			}
		}
		b, err := io.ReadAll(nc)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, b)
		}
		return string(b), nc.LocalAddr().String()
	}
	// A connection queued before the accept loop set TCP_DEFER_ACCEPT may
	// be accepted before its request arrives (and is then read as a
	// net.Conn); once a first exchange is through, the loop runs.
	if got, _ := exchange("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"); !strings.Contains(got, "early=") {
		t.Fatalf("first exchange: %q", got)
	}
	got, local := exchange("GET /ws HTTP/1.1\r\nHost: x\r\n\r\nFRAME")
	if want := "bare early=FRAME from " + local; got != want {
		t.Errorf("head in one piece: got %q, want %q", got, want)
	}
	got, local = exchange("GET /ws HTTP/1.1\r\nHo", "st: x\r\n\r\nFRAME")
	if want := "net early=FRAME from " + local; got != want {
		t.Errorf("head in two pieces: got %q, want %q", got, want)
	}
}

// TestFrontUpgrade runs WebSocket connections through the front door and the
// transport end to end, on each transport: upgraded on bare descriptors
// (epoll) or on the net.Conn the front door makes of them (portable),
// messages both ways, and the other paths still served.
func TestFrontUpgrade(t *testing.T) {
	for _, kind := range []ws.Kind{ws.Epoll, ws.Portable} {
		t.Run(string(kind), func(t *testing.T) {
			if _, err := ws.ParseKind(string(kind)); err != nil {
				t.Skip(err)
			}
			tr := ws.New(ws.Config{Kind: kind})
			if err := tr.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tr.Close() })
			echo := echoHandler{}
			_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/ws" {
					_, _ = io.WriteString(w, "plain")
					return
				}
				if _, err := tr.Upgrade(w, r, "", echo); err != nil {
					t.Errorf("upgrade: %v", err)
				}
			}))
			for i := range 20 {
				nc, _, _, err := gws.Dial(context.Background(), "ws://"+addr+"/ws")
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				msg := strings.Repeat("m", i*100)
				if err := wsutil.WriteClientText(nc, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				got, err := wsutil.ReadServerText(nc)
				if err != nil || string(got) != msg {
					t.Fatalf("echo %d: %.20q, %v", i, got, err)
				}
				_ = nc.Close()
			}
			if got := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "plain") {
				t.Fatalf("plain request: %q", got)
			}
		})
	}
}

// echoHandler echoes every message.
type echoHandler struct{}

func (echoHandler) OnMessage(c *ws.Conn, p []byte) { _ = c.SendText(p) }
func (echoHandler) OnClose(*ws.Conn, int, string)  {}

// lockedBuffer is a log destination safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestFrontPanicLogRateLimited: a handshake that panics, repeated, drops
// each connection without an answer and logs one line, not one per request.
func TestFrontPanicLogRateLimited(t *testing.T) {
	var logs lockedBuffer
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 500 * time.Millisecond}
	f := NewFront(handler, srv, slog.New(slog.NewTextHandler(&logs, nil)))
	served := make(chan error, 1)
	go func() { served <- f.Serve(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = f.Shutdown(ctx)
		<-served
	}()
	for i := range 20 {
		if got := rawExchange(t, ln.Addr().String(), "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"); got != "" {
			t.Fatalf("request %d: a panicking handshake answered %q", i, got)
		}
	}
	if n := strings.Count(logs.String(), "panic serving a request"); n != 1 {
		t.Fatalf("got %d panic log lines for 20 panics, want 1:\n%s", n, logs.String())
	}
}

// TestFrontRefusesLikeNetHTTP: a head that http.ReadRequest parses but
// http.Server refuses (whitespace before a colon, RFC 9112 §5.1; a bad
// Host) gets the same 400 from the front door
// on /ws as from net/http on any other path, whether it arrived whole (a
// bare descriptor) or in two pieces (a net.Conn).
func TestFrontRefusesLikeNetHTTP(t *testing.T) {
	wouldBlock := watchWouldBlock(t)
	_, addr := startFront(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "served")
	}))
	for _, tc := range []struct{ name, head, want string }{
		{"space before colon", "Host: x\r\nAuthorization : Bearer t\r\n", "invalid header name"},
		{"space before the Host colon", "Host : x\r\n", "missing required Host header"},
		{"tab before colon", "Host: x\r\nUpgrade\t: websocket\r\n", "malformed request head"},
		{"no space, but a bad name", "Host: x\r\nX(y): z\r\n", "malformed request head"},
		{"no host", "Upgrade: websocket\r\n", "missing required Host header"},
		{"two hosts", "Host: x\r\nHost: y\r\n", "malformed request head"},
		{"host with a slash", "Host: x/y\r\n", "malformed Host header"},
		{"host with a space", "Host: x y\r\n", "malformed Host header"},
		{"control byte in a value", "Host: x\r\nX-A: a\x01b\r\n", "malformed request head"},
		{"DEL in a value", "Host: x\r\nX-A: a\x7fb\r\n", "malformed request head"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/ws", "/other"} {
				req := "GET " + path + " HTTP/1.1\r\n" + tc.head + "Connection: keep-alive\r\n\r\n"
				for _, parts := range [][]string{{req}, {req[:10], req[10:]}} {
					got := exchangeParts(t, addr, wouldBlock, parts...)
					// net/http's body does not say why; the front door's does.
					if !strings.HasPrefix(got, "HTTP/1.1 400 ") || path == "/ws" && !strings.HasSuffix(got, "\r\n\r\n"+tc.want+"\n") {
						t.Errorf("%s in %d pieces: got %q, want a 400 saying %q", path, len(parts), got, tc.want)
					}
				}
			}
		})
	}
}

// exchangeParts writes parts on a new connection, each after the server
// has read the previous one and waits for more (so the head is read in
// pieces, as a net.Conn), and returns what the server sends until it
// closes.
func exchangeParts(t *testing.T, addr string, wouldBlock chan struct{}, parts ...string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	for len(wouldBlock) > 0 {
		<-wouldBlock
	}
	for i, p := range parts {
		if i > 0 {
			awaitWouldBlock(t, wouldBlock)
		}
		if _, err := io.WriteString(nc, p); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := io.ReadAll(nc)
	return string(b)
}

// TestIsWebSocketRequestLine: the front door serves GET /ws and GET /ws/iot
// (with or without a query) itself, nothing else.
func TestIsWebSocketRequestLine(t *testing.T) {
	for line, want := range map[string]bool{
		"GET /ws HTTP/1.1": true, "GET /ws?token=x HTTP/1.1": true,
		"GET /ws/iot HTTP/1.1": true, "GET /ws/iot?token=x HTTP/1.1": true,
		"GET /ws/iot/ HTTP/1.1": false, "GET /ws/iotx HTTP/1.1": false, "GET /ws/ HTTP/1.1": false,
		"GET /ws/io HTTP/1.1": false, "POST /ws/iot HTTP/1.1": false, "GET /ws/iot": false,
	} {
		if got := isWebSocketRequestLine([]byte(line)); got != want {
			t.Errorf("isWebSocketRequestLine(%q) = %v, want %v", line, got, want)
		}
	}
}

// TestServedByFront: upgradeWS recognises the front door's writer as
// ServeHTTP passes it on, so that a handshake it upgrades makes no header
// map; any other writer is told to close a refused connection.
func TestServedByFront(t *testing.T) {
	fw := &frontWriter{}
	rec := httptest.NewRecorder()
	for _, tc := range []struct {
		name string
		w    http.ResponseWriter
		want bool
	}{
		{"front door", fw, true},
		{"front door through ServeHTTP", &statusWriter{ResponseWriter: fw}, true},
		{"net/http", rec, false},
		{"net/http through ServeHTTP", &statusWriter{ResponseWriter: rec}, false},
	} {
		if got := servedByFront(tc.w); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if fw.header != nil {
		t.Errorf("the front door's writer made a header map unasked")
	}
}
