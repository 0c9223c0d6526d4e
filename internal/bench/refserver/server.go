//go:build linux

package main

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// server is the reference server. Start launches its goroutines (two
// acceptors, the epoll reader, the writers and the HTTP server); Close
// stops and waits for them.
//
// Lock order: server.topicsMu, then topic.mu, then conn.mu, then
// readyList.mu; server.tableMu is never held with another lock.
type server struct {
	addr    string // set once: the listen address asked for
	data    string // set once: the data directory
	writers int    // set once: writer goroutines (the design: 2)

	tokens  *auth.Tokens // set once by Start
	lfd     int          // set once by Start: the listening socket
	epfd    int          // set once by Start
	wakeFD  int          // set once by Start: eventfd that wakes the reader on Close
	bound   netip.AddrPort
	ready   readyList
	httpSrv *http.Server
	httpLn  *handoffListener
	epoch   string // set once: the epoch of every topic
	nextID  atomic.Uint32
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup
	closed  atomic.Bool

	// Owned by the epoll reader: the topics published to in its pass over
	// epoll_wait's events, whose fan-out runs after the pass.
	dirty []*topic

	tableMu sync.RWMutex
	table   []*conn // guarded by tableMu: the open WebSocket connections by fd

	topicsMu sync.Mutex
	topics   map[string]*topic // guarded by topicsMu
}

// Start opens the listening socket and the signing key and launches the
// server's goroutines.
func (s *server) Start() error {
	ap, err := netip.ParseAddrPort(s.addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("--addr %q: want an IPv4 host:port", s.addr)
	}
	if err := os.MkdirAll(s.data, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	// The same key file and token configuration as 'junction serve' with
	// its defaults, so 'junction bench --data' mints tokens that verify.
	if s.tokens, _, err = auth.LoadTokens(s.data, auth.TokenConfig{Alg: auth.AlgHS256}); err != nil {
		return fmt.Errorf("load signing key: %w", err)
	}
	if s.lfd, err = listen(ap); err != nil {
		return err
	}
	sa, err := unix.Getsockname(s.lfd)
	if err != nil {
		unix.Close(s.lfd)
		return fmt.Errorf("getsockname: %w", err)
	}
	in4 := sa.(*unix.SockaddrInet4)
	s.bound = netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
	if s.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		unix.Close(s.lfd)
		return fmt.Errorf("epoll_create1: %w", err)
	}
	if s.wakeFD, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(s.lfd)
		unix.Close(s.epfd)
		return fmt.Errorf("eventfd: %w", err)
	}
	// Connection ids start at 1: id 0 in an epoll event is the wake-up.
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, s.wakeFD, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(s.wakeFD)}); err != nil {
		unix.Close(s.lfd)
		unix.Close(s.epfd)
		unix.Close(s.wakeFD)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	s.epoch = "REF" + strconv.FormatInt(time.Now().Unix()%100000, 36)
	s.topics = make(map[string]*topic)
	s.done = make(chan struct{})
	s.ready.cond.L = &s.ready.mu
	s.httpLn = &handoffListener{conns: make(chan net.Conn), done: s.done, addr: net.TCPAddrFromAddrPort(s.bound)}
	s.httpSrv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	s.wg.Go(func() { _ = s.httpSrv.Serve(s.httpLn) })
	s.wg.Go(s.readLoop)
	for range max(s.writers, 1) {
		s.wg.Go(s.writeLoop)
	}
	for range 2 {
		s.wg.Go(s.acceptLoop)
	}
	return nil
}

// Addr returns the address the server listens on.
func (s *server) Addr() string { return s.bound.String() }

// Close stops accepting, closes every connection and waits for the
// server's goroutines. It is safe to call twice.
func (s *server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.done)
	_ = unix.Shutdown(s.lfd, unix.SHUT_RDWR) // wakes the acceptors' accept4
	_ = s.httpSrv.Close()
	_, _ = unix.Write(s.wakeFD, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	s.ready.close()
	s.wg.Wait()
	s.tableMu.Lock()
	for fd, c := range s.table {
		if c != nil {
			unix.Close(fd)
		}
	}
	s.table = nil
	s.tableMu.Unlock()
	unix.Close(s.lfd)
	unix.Close(s.epfd)
	unix.Close(s.wakeFD)
	return nil
}

// listen opens a blocking IPv4 listening socket on ap.
func listen(ap netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("setsockopt: %w", err)
	}
	// Accepted sockets inherit TCP_NODELAY: frames leave as soon as written.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("setsockopt: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind %s: %w", ap, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen: %w", err)
	}
	return fd, nil
}

// acceptLoop accepts connections and runs each one's handshake, until Close.
func (s *server) acceptLoop() {
	buf := make([]byte, 8<<10) // the request head; owned by this loop
	for {
		fd, _, err := unix.Accept4(s.lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			if s.closed.Load() {
				return
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			// Out of file descriptors and the like: wait rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.handshake(fd, buf)
	}
}

// handshake reads the request head on the blocking socket fd: a WebSocket
// upgrade of /ws is answered here, anything else goes to the HTTP server.
func (s *server) handshake(fd int, buf []byte) {
	// Reading the head gives up after 10 s. The writes below are a few
	// hundred bytes on a fresh socket: they do not block.
	tv := unix.Timeval{Sec: 10}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	n, end := 0, -1
	for end < 0 {
		if n == len(buf) {
			writeAll(fd, []byte("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
			unix.Close(fd)
			return
		}
		m, ok := readSome(fd, buf[n:])
		if !ok {
			unix.Close(fd)
			return
		}
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			end = i + 4
		}
	}
	req, ok := parseHead(buf[:end])
	switch {
	case ok && isPublish(&req) && !req.chunked && req.contentLength >= 0 && req.contentLength <= maxFrameBytes:
		s.acceptREST(fd, req, buf, n, end)
		return
	case !ok || !req.upgrade || req.path != "/ws":
		s.handOff(fd, buf[:n])
		return
	}
	if n > end {
		// A client sends nothing before the 101; one that does is broken.
		unix.Close(fd)
		return
	}
	if len(req.key) != 24 {
		writeAll(fd, []byte("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"))
		unix.Close(fd)
		return
	}
	p, err := s.tokens.Verify(string(req.token))
	if err != nil {
		body := `{"error":{"code":"unauthorized","message":"invalid credential","retryable":false}}`
		writeAll(fd, []byte("HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body))
		unix.Close(fd)
		return
	}
	c := &conn{fd: fd, id: s.nextID.Add(1), srv: s, canRead: p.HasScope(auth.ScopeRead), canWrite: p.HasScope(auth.ScopeWrite)}
	var keyBuf [60]byte // the key aliases buf, which out overwrites
	sum := sha1.Sum(append(append(keyBuf[:0], req.key...), "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
	out := append(buf[:0], "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	out = base64.StdEncoding.AppendEncode(out, sum[:])
	if req.subprotocol {
		out = append(out, "\r\nSec-WebSocket-Protocol: "+protocol.Subprotocol...)
	}
	out = append(out, "\r\n\r\n"...)
	out = appendFrame(out, opText, s.welcome(c, p))
	if !writeAll(fd, out) {
		unix.Close(fd)
		return
	}
	// One fcntl rather than SetNonblock's two: an accepted socket's
	// flags are O_RDWR.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, unix.O_RDWR|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		return
	}
	s.register(c)
}

// welcome returns the welcome event's JSON for c, with the members Junction
// sends (only those the reference has: its limits, no heartbeat).
func (s *server) welcome(c *conn, p *auth.Principal) []byte {
	b := append(make([]byte, 0, 512), `{"type":"event","event":"welcome","data":{"protocol":1,"connId":"c-`...)
	b = strconv.AppendUint(b, uint64(c.id), 36)
	b = append(b, `","nodeId":"n-ref","principal":{"userId":`...)
	b = protocol.AppendString(b, p.UserID)
	b = append(b, `,"deviceId":`...)
	b = protocol.AppendString(b, p.DeviceID)
	b = append(b, `,"kind":`...)
	b = protocol.AppendString(b, p.Kind)
	b = append(b, `,"scopes":[`...)
	for i, sc := range p.Scopes {
		if i > 0 {
			b = append(b, ',')
		}
		b = protocol.AppendString(b, sc)
	}
	b = append(b, `],"expiresAtMs":`...)
	b = strconv.AppendInt(b, p.ExpiresAt().UnixMilli(), 10)
	return append(b, `},"heartbeatMs":0,"heartbeatTimeoutMs":0,"limits":{"maxFrameBytes":65536,"maxQueueBytes":1048576,"maxQueueFrames":4096},"features":["batch","channels"]}}`...)
}

// register hands the non-blocking WebSocket c to the epoll reader.
func (s *server) register(c *conn) {
	s.tableMu.Lock()
	if c.fd >= len(s.table) {
		s.table = append(s.table, make([]*conn, c.fd+1-len(s.table)+1024)...)
	}
	s.table[c.fd] = c
	s.tableMu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd), Pad: int32(c.id)}
	if err := unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		s.tableMu.Lock()
		s.table[c.fd] = nil
		s.tableMu.Unlock()
		unix.Close(c.fd)
	}
}

// lookup returns the open connection of fd whose id is id, or nil.
func (s *server) lookup(fd int, id uint32) *conn {
	s.tableMu.RLock()
	defer s.tableMu.RUnlock()
	if fd < len(s.table) {
		if c := s.table[fd]; c != nil && c.id == id {
			return c
		}
	}
	return nil
}

// forget removes fd's entry; the caller closes fd next.
func (s *server) forget(fd int) {
	s.tableMu.Lock()
	if fd < len(s.table) {
		s.table[fd] = nil
	}
	s.tableMu.Unlock()
}

// request is what handshake and the REST publish need of a request head.
type request struct {
	method        string
	path          string // without the query
	contentLength int    // -1 when malformed
	chunked       bool   // Transfer-Encoding other than identity
	close         bool   // Connection: close
	upgrade       bool   // GET with Upgrade: websocket
	key           []byte // Sec-WebSocket-Key
	token         []byte // the Authorization bearer token
	subprotocol   bool   // junction.v1 offered
}

// parseHead reads an HTTP/1.1 request head (ending with the blank line).
func parseHead(head []byte) (request, bool) {
	var r request
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, _, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 {
		return r, false
	}
	path, _, _ := bytes.Cut(target, []byte("?"))
	r.method, r.path = string(method), string(path)
	isGet := string(method) == "GET"
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Upgrade")):
			r.upgrade = isGet && bytes.EqualFold(value, []byte("websocket"))
		case bytes.EqualFold(name, []byte("Content-Length")):
			if r.contentLength, ok = atoi(value); !ok {
				r.contentLength = -1
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			r.chunked = !bytes.EqualFold(value, []byte("identity"))
		case bytes.EqualFold(name, []byte("Connection")):
			r.close = bytes.EqualFold(value, []byte("close"))
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Key")):
			r.key = value
		case bytes.EqualFold(name, []byte("Authorization")):
			if len(value) > 7 && bytes.EqualFold(value[:7], []byte("Bearer ")) {
				r.token = value[7:]
			}
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Protocol")):
			for p := range bytes.SplitSeq(value, []byte(",")) {
				if string(bytes.TrimSpace(p)) == protocol.Subprotocol {
					r.subprotocol = true
				}
			}
		}
	}
	return r, true
}

// atoi parses a non-negative decimal of at most 9 digits.
func atoi(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// readSome reads from the blocking socket fd; ok is false at its end, an
// error or the receive timeout.
func readSome(fd int, b []byte) (int, bool) {
	for {
		n, err := unix.Read(fd, b)
		if !errors.Is(err, unix.EINTR) {
			return n, err == nil && n > 0
		}
	}
}

// writeAll writes b to the blocking socket fd.
func writeAll(fd int, b []byte) bool {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false
		}
		b = b[n:]
	}
	return true
}

// handOff gives the socket fd, whose first bytes head were already read, to
// the HTTP server.
func (s *server) handOff(fd int, head []byte) {
	f := os.NewFile(uintptr(fd), "http")
	nc, err := net.FileConn(f) // a non-blocking duplicate in the runtime's poller
	f.Close()
	if err != nil {
		return
	}
	pc := &prefixConn{Conn: nc, prefix: bytes.Clone(head)}
	select {
	case s.httpLn.conns <- pc:
	case <-s.done:
		nc.Close()
	}
}

// prefixConn is a connection whose first bytes were read already.
type prefixConn struct {
	net.Conn
	prefix []byte // owned by the HTTP server's reader
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// handoffListener is the net.Listener of the HTTP server: the acceptors
// hand it the connections that are not WebSockets.
type handoffListener struct {
	conns chan net.Conn
	done  <-chan struct{}
	addr  net.Addr
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error   { return nil }
func (l *handoffListener) Addr() net.Addr { return l.addr }

// routes is the HTTP side beside the raw REST publish: health.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	return mux
}
