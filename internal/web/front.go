package web

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Front is the front door of the one port. It accepts TCP connections and
// reads each request line itself: a WebSocket handshake on /ws is parsed and
// served right there (the handler runs as usual, but without net/http's
// per-connection goroutine, context and 8 KiB of buffers that a hijack would
// throw away), and every other connection is handed, with the bytes already
// read, to an http.Server that serves it as if it had accepted it.
//
// Handshakes run on a pool of goroutines that outlive one connection, so
// their stacks are grown once, not on every connect.
type Front struct {
	handler http.Handler
	srv     *http.Server // serves the handed-off connections
	log     *slog.Logger
	timeout time.Duration // to read a request head
	maxHead int           // largest request head

	mu      sync.Mutex
	ln      net.Listener // guarded by mu: set by Serve
	handoff *handoffListener
	work    chan net.Conn // unbuffered: a send succeeds only if a worker waits
	done    chan struct{}
	closed  atomic.Bool
	wg      sync.WaitGroup // accept loop and workers
}

// NewFront returns a front door for handler. srv serves every connection
// that is not a WebSocket handshake on /ws; its Handler should be handler.
// Its ReadHeaderTimeout and MaxHeaderBytes also bound the handshakes read
// here (defaults 10 s and 64 KiB).
func NewFront(handler http.Handler, srv *http.Server, log *slog.Logger) *Front {
	f := &Front{
		handler: handler,
		srv:     srv,
		log:     log,
		timeout: srv.ReadHeaderTimeout,
		maxHead: srv.MaxHeaderBytes,
		handoff: newHandoffListener(),
		work:    make(chan net.Conn),
		done:    make(chan struct{}),
	}
	if f.timeout <= 0 {
		f.timeout = 10 * time.Second
	}
	if f.maxHead <= 0 {
		f.maxHead = 64 << 10
	}
	return f
}

// Serve accepts connections on ln until Shutdown or an accept error that is
// not temporary; it returns http.ErrServerClosed after Shutdown.
func (f *Front) Serve(ln net.Listener) error {
	f.mu.Lock()
	if f.closed.Load() {
		f.mu.Unlock()
		return http.ErrServerClosed
	}
	f.ln = ln
	f.handoff.addr = ln.Addr()
	f.mu.Unlock()
	srvErr := make(chan error, 1)
	go func() { srvErr <- f.srv.Serve(f.handoff) }()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if f.closed.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or similar: wait, as net/http does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				f.log.Error("accept failed; retrying", "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-f.done:
					return http.ErrServerClosed
				}
				continue
			}
			select {
			case err2 := <-srvErr:
				if err2 != nil && !errors.Is(err2, http.ErrServerClosed) {
					return err2
				}
			default:
			}
			return err
		}
		backoff = 0
		select {
		case f.work <- nc:
		default:
			f.wg.Add(1)
			go f.worker(nc)
		}
	}
}

// workerIdle is how long a handshake goroutine waits for another connection
// before it exits.
const workerIdle = 10 * time.Second

// worker serves nc, then further connections handed to it, until it has
// been idle for workerIdle or the front door closes.
func (f *Front) worker(nc net.Conn) {
	defer f.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f.serveConn(nc)
		idle.Reset(workerIdle)
		select {
		case nc = <-f.work:
		case <-idle.C:
			return
		case <-f.done:
			return
		}
	}
}

// headReader is the pooled state of one request-head read.
type headReader struct {
	lr io.LimitedReader
	br *bufio.Reader
}

var headReaders = sync.Pool{New: func() any {
	h := &headReader{}
	h.br = bufio.NewReaderSize(&h.lr, 4096)
	return h
}}

// serveConn reads the request line of nc and either serves a WebSocket
// handshake or hands nc to the http.Server.
func (f *Front) serveConn(nc net.Conn) {
	hr := headReaders.Get().(*headReader)
	defer func() {
		hr.lr.R = nil
		hr.br.Reset(&hr.lr)
		headReaders.Put(hr)
	}()
	hr.lr = io.LimitedReader{R: nc, N: int64(f.maxHead)}
	hr.br.Reset(&hr.lr)
	_ = nc.SetReadDeadline(time.Now().Add(f.timeout))

	line, err := peekLine(hr.br)
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		_ = nc.Close() // nothing (or not even a line) arrived in time
		return
	}
	if err != nil || !isWebSocketRequestLine(line) {
		f.handOff(nc, hr.br)
		return
	}
	req, err := http.ReadRequest(hr.br)
	if err != nil {
		refuseRaw(nc, http.StatusBadRequest, "malformed request head\n")
		return
	}
	req.RemoteAddr = nc.RemoteAddr().String()
	_ = nc.SetReadDeadline(time.Time{})
	w := &frontWriter{nc: nc, br: hr.br, header: make(http.Header, 4), status: http.StatusOK}
	f.serveHandshake(w, req)
	if !w.hijacked {
		w.finish(req.Method == http.MethodHead)
	}
}

// serveHandshake runs the handler on a handshake, containing a panic the way
// net/http would (the connection is dropped, the server goes on).
func (f *Front) serveHandshake(w *frontWriter, req *http.Request) {
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler {
			f.log.Error("panic serving a websocket handshake", "panic", v, "remote", req.RemoteAddr)
			if !w.hijacked {
				w.hijacked = true // nothing more is written
				_ = w.nc.Close()
			}
		}
	}()
	f.handler.ServeHTTP(w, req)
}

// handOff passes nc, with what br has buffered, to the http.Server.
func (f *Front) handOff(nc net.Conn, br *bufio.Reader) {
	var pre []byte
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		pre = append([]byte(nil), b...)
	}
	_ = nc.SetReadDeadline(time.Time{})
	if !f.handoff.put(&replayConn{Conn: nc, pre: pre}) {
		_ = nc.Close()
	}
}

// Shutdown stops accepting, lets the http.Server finish its requests
// (http.Server.Shutdown, bounded by ctx) and waits for the handshake
// goroutines. Handshakes in progress still complete: the hub refuses them
// once it drains.
func (f *Front) Shutdown(ctx context.Context) error {
	if f.closed.Swap(true) {
		return nil
	}
	close(f.done)
	var errs []error
	f.mu.Lock()
	ln := f.ln
	f.mu.Unlock()
	if ln != nil {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if err := f.srv.Shutdown(ctx); err != nil {
		errs = append(errs, err)
	}
	waited := make(chan struct{})
	go func() { f.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("websocket handshakes still running: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// peekLine returns the first line in br (without its "\n"), reading as
// needed; the bytes stay buffered. A line longer than the buffer gives
// bufio.ErrBufferFull.
func peekLine(br *bufio.Reader) ([]byte, error) {
	n := 1
	for {
		// Peek(n) reads until at least n bytes are buffered; look at all.
		if _, err := br.Peek(n); err != nil {
			return nil, err
		}
		b, _ := br.Peek(br.Buffered())
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[:i], nil
		}
		n = len(b) + 1
	}
}

// isWebSocketRequestLine reports whether line requests GET /ws (with or
// without a query): the only requests the front door serves itself.
func isWebSocketRequestLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("GET /ws"))
	return ok && len(rest) > 0 && (rest[0] == ' ' || rest[0] == '?')
}

// frontWriter is the http.ResponseWriter of a handshake served by the front
// door. An upgrade hijacks it; anything else is buffered and written, with
// Connection: close, when the handler returns.
type frontWriter struct {
	nc       net.Conn
	br       *bufio.Reader
	header   http.Header
	status   int
	wrote    bool
	body     []byte
	hijacked bool
}

func (w *frontWriter) Header() http.Header { return w.header }

func (w *frontWriter) WriteHeader(code int) {
	if w.wrote || w.hijacked {
		return
	}
	w.wrote = true
	w.status = code
}

func (w *frontWriter) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	if len(w.body)+len(p) > maxRefusalBytes {
		return 0, errors.New("web: handshake refusal body too large")
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

// maxRefusalBytes bounds the body of a refused handshake.
const maxRefusalBytes = 64 << 10

// Hijack hands the connection to the WebSocket transport; the reader holds
// bytes the client sent after its request head, which the caller copies
// before Hijack's caller returns (the reader goes back to a pool).
func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	return w.nc, bufio.NewReadWriter(w.br, nil), nil
}

// finish writes the buffered response and closes the connection.
func (w *frontWriter) finish(head bool) {
	w.hijacked = true
	h := w.header
	h.Set("Connection", "close")
	h.Set("Content-Length", strconv.Itoa(len(w.body)))
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	_ = h.Write(&b)
	b.WriteString("\r\n")
	if !head {
		b.Write(w.body)
	}
	closeAfter(w.nc, b.Bytes())
}

// refuseRaw answers a request the front door could not parse, and closes.
func refuseRaw(nc net.Conn, status int, body string) {
	closeAfter(nc, fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(body), body))
}

// closeAfter writes b (bounded by a deadline), ends the write side so the
// client reads the whole response before the end, and closes nc.
func closeAfter(nc net.Conn, b []byte) {
	_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = nc.Write(b)
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.Close()
}

// replayConn is a connection whose first bytes were already read: Read
// returns them first.
type replayConn struct {
	net.Conn
	pre []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// handoffListener is the net.Listener through which the front door passes
// connections to the http.Server.
type handoffListener struct {
	addr   net.Addr // set before the http.Server starts
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// put hands nc to the server's Accept; false once the listener is closed.
func (l *handoffListener) put(nc net.Conn) bool {
	select {
	case l.conns <- nc:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case nc := <-l.conns:
		return nc, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
