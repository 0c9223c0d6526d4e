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
	"net/netip"
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
//
// On Linux, a TCP listener is accepted from directly (accept4 on a duplicate
// of its descriptor, with TCP_DEFER_ACCEPT so that a connection is accepted
// once its request has arrived): a socket stays a bare descriptor while its
// request head is read without waiting, and a WebSocket upgrade hands the
// descriptor to the transport (ws.FDHijacker), so a WebSocket connection
// never gets a net.Conn, a runtime poller registration or addresses kept in
// memory (with the epoll transport; the portable one declines the descriptor
// and hijacks through http.Hijacker, which makes a net.Conn of it). A
// connection whose head has not fully arrived, or that is not a handshake,
// becomes a net.Conn (net.FileConn) and goes on as before.
type Front struct {
	handler http.Handler
	srv     *http.Server // serves the handed-off connections
	log     *slog.Logger
	timeout time.Duration // to read a request head
	maxHead int           // largest request head

	mu      sync.Mutex
	ln      net.Listener // guarded by mu: set by Serve
	lfile   io.Closer    // guarded by mu: the duplicate listener a raw accept loop uses
	handoff *handoffListener
	work    chan incoming // unbuffered: a send succeeds only if a worker waits
	done    chan struct{}
	closed  atomic.Bool
	wg      sync.WaitGroup // accept loop and workers
	backoff time.Duration  // owned by the accept loop
	panics  *panicLog      // set once at construction
	// after is the accept loop's timer (time.After), set once at
	// construction; tests replace it before Serve to decide when a backoff
	// ends.
	after func(time.Duration) <-chan time.Time
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
		work:    make(chan incoming),
		done:    make(chan struct{}),
		panics:  &panicLog{log: log},
		after:   time.After,
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
	if raw, err := f.acceptRaw(ln); raw {
		return f.serveErr(err, srvErr)
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			if f.retryAccept(err) {
				continue
			}
			return f.serveErr(err, srvErr)
		}
		f.dispatch(incoming{fd: -1, nc: nc})
	}
}

// serveErr is what Serve returns after its accept loop ended with err.
func (f *Front) serveErr(err error, srvErr <-chan error) error {
	if f.closed.Load() {
		return http.ErrServerClosed
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

// retryAccept reports whether an accept that failed with err should be
// retried: when out of descriptors or similar, after a pause that doubles
// while the failures go on, as net/http does.
func (f *Front) retryAccept(err error) bool {
	if f.closed.Load() {
		return false
	}
	var ne net.Error
	if !(errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)) {
		return false
	}
	f.backoff = min(max(2*f.backoff, 5*time.Millisecond), time.Second)
	f.log.Error("accept failed; retrying", "err", err, "in", f.backoff)
	select {
	case <-f.after(f.backoff):
		return true
	case <-f.done:
		return false
	}
}

// incoming is an accepted connection: a bare descriptor (fd >= 0, with the
// peer's address) or a net.Conn.
type incoming struct {
	fd   int
	nc   net.Conn
	peer netip.AddrPort
}

// dispatch gives in to an idle handshake goroutine, or to a new one.
func (f *Front) dispatch(in incoming) {
	f.backoff = 0
	select {
	case f.work <- in:
	default:
		f.wg.Add(1)
		go f.worker(in)
	}
}

// workerIdle is how long a handshake goroutine waits for another connection
// before it exits.
const workerIdle = 10 * time.Second

// worker serves in, then further connections handed to it, until it has
// been idle for workerIdle or the front door closes.
func (f *Front) worker(in incoming) {
	defer f.wg.Done()
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f.serveConn(in)
		idle.Reset(workerIdle)
		select {
		case in = <-f.work:
		case <-idle.C:
			return
		case <-f.done:
			return
		}
	}
}

// headReader is the pooled state of one request-head read.
type headReader struct {
	conn frontConn
	lr   io.LimitedReader
	br   *bufio.Reader
}

var headReaders = sync.Pool{New: func() any {
	h := &headReader{}
	h.br = bufio.NewReaderSize(&h.lr, 4096)
	return h
}}

// serveConn reads the request line of in and either serves a WebSocket
// handshake or hands the connection to the http.Server.
func (f *Front) serveConn(in incoming) {
	hr := headReaders.Get().(*headReader)
	defer func() {
		hr.conn = frontConn{}
		hr.lr.R = nil
		hr.br.Reset(&hr.lr)
		headReaders.Put(hr)
	}()
	c := &hr.conn
	*c = frontConn{fd: in.fd, nc: in.nc, timeout: f.timeout}
	hr.lr = io.LimitedReader{R: c, N: int64(f.maxHead)}
	hr.br.Reset(&hr.lr)
	if c.nc != nil {
		_ = c.nc.SetReadDeadline(time.Now().Add(f.timeout))
	}

	line, err := peekLine(hr.br)
	if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
		c.close() // nothing (or not even a line) arrived in time
		return
	}
	if err != nil || !isWebSocketRequestLine(line) {
		f.handOff(c, hr.br)
		return
	}
	req := readHeadFast(hr.br)
	if req == nil {
		if req, err = http.ReadRequest(hr.br); err != nil {
			if hr.lr.N == 0 {
				// Over MaxHeaderBytes: what net/http answers for the
				// other paths (RFC 6585 §5).
				refuseRaw(c, http.StatusRequestHeaderFieldsTooLarge, "request head too large\n")
				return
			}
			refuseRaw(c, http.StatusBadRequest, "malformed request head\n")
			return
		}
		if why := headRefusal(req); why != "" {
			refuseRaw(c, http.StatusBadRequest, why+"\n")
			return
		}
	}
	if c.nc != nil {
		req.RemoteAddr = c.nc.RemoteAddr().String()
		_ = c.nc.SetReadDeadline(time.Time{})
	} else {
		req.RemoteAddr = in.peer.String()
	}
	w := &frontWriter{c: c, br: hr.br, status: http.StatusOK}
	f.serveHandshake(w, req)
	if !w.hijacked {
		w.finish(req.Method == http.MethodHead)
	}
}

// readHeadFast returns the request whose head br holds whole, parsed by
// parseHead, and consumes the head; nil, consuming nothing, when the head
// is not all buffered or parseHead declines it.
func readHeadFast(br *bufio.Reader) *http.Request {
	b, _ := br.Peek(br.Buffered())
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil
	}
	req := parseHead(b[:end+4])
	if req != nil {
		_, _ = br.Discard(end + 4)
	}
	return req
}

// serveHandshake runs the handler on a handshake, containing a panic the way
// net/http would (the connection is dropped, the server goes on), logged at
// most once per panicLogEvery.
func (f *Front) serveHandshake(w *frontWriter, req *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				f.panics.report("websocket handshake", v, req.RemoteAddr)
			}
			if !w.hijacked {
				w.hijacked = true // nothing more is written
				w.c.close()
			}
		}
	}()
	f.handler.ServeHTTP(w, req)
}

// handOff passes c, with what br has buffered, to the http.Server.
func (f *Front) handOff(c *frontConn, br *bufio.Reader) {
	nc, err := c.netConn()
	if err != nil {
		f.log.Warn("cannot hand a connection to the http server", "err", err)
		c.close()
		return
	}
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
// once it drains. The listener given to Serve is closed; it must be closed
// this way, not directly, since the raw accept loop listens on a duplicate.
func (f *Front) Shutdown(ctx context.Context) error {
	if f.closed.Swap(true) {
		return nil
	}
	close(f.done)
	var errs []error
	f.mu.Lock()
	ln, lfile := f.ln, f.lfile
	f.mu.Unlock()
	if ln != nil {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if lfile != nil {
		_ = lfile.Close()
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

// isWebSocketRequestLine reports whether line requests GET /ws or
// GET /ws/iot (with or without a query): the only requests the front door
// serves itself.
func isWebSocketRequestLine(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("GET /ws"))
	if ok && len(rest) > 0 && rest[0] == '/' {
		rest, ok = bytes.CutPrefix(rest, []byte("/iot"))
	}
	return ok && len(rest) > 0 && (rest[0] == ' ' || rest[0] == '?')
}

// frontWriter is the http.ResponseWriter of a handshake served by the front
// door. An upgrade hijacks it; anything else is buffered and written, with
// Connection: close, when the handler returns.
type frontWriter struct {
	c        *frontConn
	br       *bufio.Reader
	header   http.Header // made by the first Header call: an upgrade needs none
	status   int
	wrote    bool
	body     []byte
	hijacked bool
}

// servedByFront reports whether w, as ServeHTTP passes it on (wrapped in
// its statusWriter), answers a handshake served by the front door.
func servedByFront(w http.ResponseWriter) bool {
	if sw, ok := w.(*statusWriter); ok {
		w = sw.ResponseWriter
	}
	_, ok := w.(*frontWriter)
	return ok
}

func (w *frontWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header, 4)
	}
	return w.header
}

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

// Hijack hands the connection over as a net.Conn (making one of a bare
// descriptor); the reader holds bytes the client sent after its request
// head, which the caller copies before Hijack's caller returns (the reader
// goes back to a pool).
func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	nc, err := w.c.netConn()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	w.c.nc = nil // the caller's now
	return nc, bufio.NewReadWriter(w.br, nil), nil
}

// HijackFD hands a bare descriptor over to the WebSocket transport (see
// ws.FDHijacker), with the bytes read after the request head; they stay
// valid until the handler returns.
func (w *frontWriter) HijackFD() (int, []byte, bool) {
	if w.hijacked || w.c.fd < 0 {
		return -1, nil, false
	}
	w.hijacked = true
	fd := w.c.fd
	w.c.fd = -1 // the transport's now
	b, _ := w.br.Peek(w.br.Buffered())
	return fd, b, true
}

// finish writes the buffered response and closes the connection.
func (w *frontWriter) finish(head bool) {
	w.hijacked = true
	h := w.Header()
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
	w.c.closeAfter(b.Bytes())
}

// refuseRaw answers a request the front door could not parse, and closes.
func refuseRaw(c *frontConn, status int, body string) {
	c.closeAfter(fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(body), body))
}

// frontConn is the connection whose request head the front door reads: a
// bare descriptor (fd >= 0) until something would have to wait for it, or a
// net.Conn.
type frontConn struct {
	fd      int      // bare, non-blocking descriptor, or -1
	nc      net.Conn // or this
	timeout time.Duration
}

// testHookWouldBlock, when set (by tests, before the front door serves),
// is called when a head being read from a bare descriptor would block:
// the rest of it is then read as a net.Conn.
var testHookWouldBlock func()

// Read reads from the descriptor without waiting while it has data; when it
// would wait, the descriptor becomes a net.Conn, whose read deadline bounds
// the rest of the head, and the read goes on there.
func (c *frontConn) Read(p []byte) (int, error) {
	if c.nc == nil && c.fd >= 0 {
		n, err := readNow(c.fd, p)
		if !errors.Is(err, errWouldBlock) {
			return n, err
		}
		if testHookWouldBlock != nil {
			testHookWouldBlock()
		}
		if _, err := c.netConn(); err != nil {
			return 0, err
		}
		_ = c.nc.SetReadDeadline(time.Now().Add(c.timeout))
	}
	if c.nc == nil {
		return 0, net.ErrClosed
	}
	return c.nc.Read(p)
}

// netConn makes c a net.Conn, if it is not one yet, and returns it.
func (c *frontConn) netConn() (net.Conn, error) {
	if c.nc != nil {
		return c.nc, nil
	}
	if c.fd < 0 {
		return nil, net.ErrClosed
	}
	nc, err := fdConn(c.fd) // closes fd, even on error
	c.fd = -1
	if err != nil {
		return nil, err
	}
	c.nc = nc
	return nc, nil
}

// close closes the connection.
func (c *frontConn) close() {
	switch {
	case c.nc != nil:
		_ = c.nc.Close()
		c.nc = nil
	case c.fd >= 0:
		closeFD(c.fd)
		c.fd = -1
	}
}

// closeAfter writes b (a bare descriptor takes it without waiting as a
// rule; otherwise the rest is written with a deadline), ends the write side
// so the client reads the whole response before the end, and closes.
func (c *frontConn) closeAfter(b []byte) {
	if c.nc == nil && c.fd >= 0 {
		n, err := writeNow(c.fd, b)
		b = b[n:]
		switch {
		case err == nil:
			shutdownWrite(c.fd)
			c.close()
			return
		case !errors.Is(err, errWouldBlock):
			c.close()
			return
		}
		// The socket is full: the rest is written as a net.Conn, with a
		// deadline.
		if _, err := c.netConn(); err != nil {
			return
		}
	}
	if c.nc == nil {
		return
	}
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, _ = c.nc.Write(b)
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.close()
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
