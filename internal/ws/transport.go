package ws

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/junctionhq/junction/protocol"
)

// Kind names a transport implementation. Both serve the same API with the
// same semantics (see the package documentation); they differ in what a
// connection costs.
type Kind string

const (
	// Epoll reads every connection from a few epoll loops and writes from a
	// small pool of writers with writev(2): no goroutine, buffer or timer per
	// idle connection. Linux only, and the default there.
	Epoll Kind = "epoll"
	// Portable serves each connection with a reader and a writer goroutine
	// over its net.Conn (a read buffer each, writes through net.Buffers). It
	// runs wherever Go does: the default elsewhere than Linux, and
	// selectable on Linux.
	Portable Kind = "portable"
)

// DefaultKind is the Kind a Config without one selects: Epoll on Linux,
// Portable elsewhere.
const DefaultKind = defaultKind

// ParseKind returns the Kind named s, DefaultKind for "", or an error when
// s names no transport or one this system cannot run (epoll off Linux).
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case "":
		return DefaultKind, nil
	case Portable:
		return k, nil
	case Epoll:
		if !epollSupported {
			return "", fmt.Errorf("transport %q: needs Linux; use %q", s, Portable)
		}
		return k, nil
	}
	return "", fmt.Errorf("transport %q: want %q or %q", s, Epoll, Portable)
}

// Config configures a Transport. The zero value of each field selects its
// default.
type Config struct {
	// MaxMessageBytes limits an inbound message after its fragments are
	// reassembled; a bigger message closes the connection with 1009.
	// Default 64 KiB.
	MaxMessageBytes int
	// MaxBinaryBytes limits an inbound binary message after reassembly; a
	// bigger one closes the connection with 1009. Binary messages reach
	// only a Handler that is a BinaryHandler, and only when this is set;
	// otherwise they close the connection with 1003. Default 0: refused.
	MaxBinaryBytes int
	// MaxQueueBytes bounds a connection's outbound queue in bytes. Default
	// 1 MiB; at most 1 GiB (larger values are lowered to it), so that a
	// queued frame's offset fits Conn's 32 bits.
	MaxQueueBytes int
	// MaxQueueFrames bounds a connection's outbound queue in frames. Default
	// 4096.
	MaxQueueFrames int
	// Loops is the number of epoll loops (goroutines) reading connections.
	// Default runtime.GOMAXPROCS(0), at most 256 (a connection holds its
	// loop's index in a byte). Epoll only.
	Loops int
	// Writers is the number of goroutines writing queued frames (Epoll
	// only; Portable has one per connection). Default
	// runtime.GOMAXPROCS(0): more writers than cores only take connections
	// off the ready list sooner, with fewer frames queued each, so more
	// write(2) calls per delivery (measured in BENCHMARKS.md).
	//
	// When the writers are as many as the processors (and at least two),
	// the last is a helper: it writes only while more than helperBacklog
	// connections wait on the ready list, for the first helperBurst of such
	// a backlog (a longer one is written by the other writers, which then
	// batch more per writev). Below that, writers busy with a
	// fan-out leave a processor, which polls the network at once, so that
	// the goroutines waiting for it (an HTTP publisher's next request, an
	// RPC relay, a handshake) are not left to the runtime's 10 ms network
	// poll (a writev is too short for the scheduler to hand its processor
	// away); above it, a pass over the ready list is long enough that the
	// helper's share of the writing is worth more.
	Writers int
	// WriteTimeout closes a connection whose socket stays full this long,
	// and bounds a close handshake. Default 10s.
	WriteTimeout time.Duration
	// PingInterval is how often a RoleServer connection is sent a WebSocket
	// ping. Default 30s; negative disables pings.
	PingInterval time.Duration
	// PongTimeout closes a connection with 4102 when nothing (a pong or any
	// other frame) is read within this after a ping. Default 10s.
	PongTimeout time.Duration
	// ReadPause makes each loop sleep this long after a wait that returned
	// fewer events than it can take, before it waits again: sockets that
	// become readable meanwhile are then read in one pass, and whoever
	// writes to them does not wake the loop for every write. Every read is
	// delayed by up to ReadPause. Default 0, reading at once. Epoll only.
	//
	// Only the load generator (junction bench) sets it, and it stays for
	// that: reading many busy connections, its loops would otherwise wake
	// for every frame, and a load client that spends more CPU per frame
	// than the server it shares the cores with measures itself. The server
	// pays one comparison per loop wake-up.
	ReadPause time.Duration
	// Kind selects the implementation. Default DefaultKind.
	Kind Kind

	// tick, when set (by tests only), drives the heartbeat instead of its
	// ticker: each value received is one pass over the connections, so a
	// test decides when pings go out and timeouts are checked.
	tick <-chan time.Time
	// clock, when set (by tests only), is the transport clock instead of
	// the time since New (see Transport.now): with tick, a test decides
	// when a write or close timeout has run out. It must return more than
	// zero (0 marks "not set" in the connections' clock fields).
	clock func() int64
}

// maxQueueBytes is the largest Config.MaxQueueBytes: a frame larger than
// the bound is refused, so every queued frame is shorter and Conn.pendOff,
// an offset into one, fits an int32.
const maxQueueBytes = 1 << 30

func (c Config) withDefaults() Config {
	procs := runtime.GOMAXPROCS(0)
	if c.Kind == "" {
		c.Kind = DefaultKind
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = 64 << 10
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 1 << 20
	}
	c.MaxQueueBytes = min(c.MaxQueueBytes, maxQueueBytes)
	if c.MaxQueueFrames <= 0 {
		c.MaxQueueFrames = 4096
	}
	if c.Loops <= 0 {
		c.Loops = procs
	}
	c.Loops = min(c.Loops, maxLoops)
	if c.Writers <= 0 {
		c.Writers = procs
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingInterval == 0 {
		c.PingInterval = 30 * time.Second
	}
	if c.PongTimeout <= 0 {
		c.PongTimeout = 10 * time.Second
	}
	return c
}

// Transport owns the goroutines that serve every connection registered with
// it: the epoll loops and writers (Epoll) or each connection's reader and
// writer (Portable), and the heartbeat.
type Transport struct {
	cfg   Config    // set once in New, defaults applied
	start time.Time // set once in New: origin of the transport clock

	loops []*loop       // set once in Start (Epoll)
	next  atomic.Uint32 // round-robin loop assignment
	gen   atomic.Uint32 // connection generations
	open  atomic.Int64  // registered connections not yet finished
	// finishing counts finish calls that have closed a connection but not
	// yet handed its OnClose to the loop; Close waits for them before it
	// stops the loops, so no OnClose is lost to a finish racing with it.
	finishing atomic.Int64
	wg        sync.WaitGroup // loops, writers, heartbeat
	hbStop    chan struct{}  // closed to stop the heartbeat
	started   atomic.Bool
	shutdown  atomic.Bool // Close began: Attach refused

	closeOnce sync.Once
	closeErr  error

	slowConsumers atomic.Int64 // connections closed with 4108

	// pt is set once in New: the Portable transport's state, nil for Epoll.
	// Next to readyMu, which schedule takes right after testing it.
	pt        *portable
	readyMu   sync.Mutex
	readyCond sync.Cond // signalled when ready gains a connection or writers stop
	ready     []*Conn   // guarded by readyMu: connections with frames to write
	readyHead int       // guarded by readyMu: index of the first entry of ready
	// urgent holds the connections made ready by Send (a reply, an event
	// for one connection): takeReady serves them before ready, where a
	// fan-out may have put thousands, so that a ping or an RPC reply does
	// not wait behind a whole fan-out (issue 11).
	urgent []*Conn // guarded by readyMu
	// loopsBusy counts the epoll loops between a wake-up and the end of
	// their pass (loopwrite_linux.go). Incremented without readyMu,
	// decremented under it. While it is above zero, scheduleUrgent wakes
	// no writer: the loop writes the urgent connections itself when its
	// pass ends, and the last busy loop hands what it left to the writers.
	loopsBusy atomic.Int32
	stopWrite bool // guarded by readyMu: writers exit once ready and urgent are empty
	// helperCond (with readyMu) is signalled when ready holds more than
	// helperBacklog connections or writers stop; the helper writer waits
	// on it (Config.Writers).
	helperCond sync.Cond
	// readySince is t.now() when the ready list last went from empty to not
	// empty: the start of the backlog (helperBurst). Guarded by readyMu.
	readySince int64

	// fds holds the Epoll loops' connections by descriptor. Last, so that it
	// leaves the layout of the fields above (readyMu's line) as it was.
	fds fdTable
}

// New returns a Transport configured by cfg. It has no side effects; call
// Start before registering connections.
func New(cfg Config) *Transport {
	t := &Transport{cfg: cfg.withDefaults(), start: time.Now(), hbStop: make(chan struct{})}
	t.readyCond.L = &t.readyMu
	t.helperCond.L = &t.readyMu
	if t.cfg.Kind == Portable {
		t.pt = newPortable()
	}
	return t
}

// Kind returns the implementation serving the transport's connections.
func (t *Transport) Kind() Kind { return t.cfg.Kind }

// now returns the transport clock: monotonic nanoseconds since New (or
// Config.clock's, in tests).
func (t *Transport) now() int64 {
	if t.cfg.clock != nil {
		return t.cfg.clock()
	}
	return int64(time.Since(t.start))
}

// Start starts the heartbeat goroutine and, for Epoll, creates the epoll
// instances and starts the loop and writer goroutines. It fails for a Kind
// this system cannot run (see ParseKind).
func (t *Transport) Start() error {
	if _, err := ParseKind(string(t.cfg.Kind)); err != nil {
		return fmt.Errorf("ws: start: %w", err)
	}
	if t.shutdown.Load() || !t.started.CompareAndSwap(false, true) {
		return errors.New("ws: start: transport already started or closed")
	}
	if t.pt != nil {
		t.wg.Go(t.heartbeat)
		return nil
	}
	for range t.cfg.Loops {
		l, err := newLoop(t)
		if err != nil {
			for _, l := range t.loops {
				l.closeFDs()
			}
			t.loops = nil
			return fmt.Errorf("ws: start: %w", err)
		}
		t.loops = append(t.loops, l)
	}
	for _, l := range t.loops {
		t.wg.Go(l.run)
	}
	helpers := t.cfg.helpers()
	for range t.cfg.Writers - helpers {
		t.wg.Go(t.writeLoop)
	}
	for range helpers {
		t.wg.Go(t.helpLoop)
	}
	t.wg.Go(t.heartbeat)
	return nil
}

// Close closes every connection with 1001 "going away", waits for them to
// finish (at most WriteTimeout, then the rest are cut), delivers their
// OnClose, stops the goroutines and waits for them. It is safe to call
// twice.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.shutdown.Store(true)
		if !t.started.Load() {
			return
		}
		for _, c := range t.conns(nil) {
			c.Disconnect(protocol.DisconnectGoingAway)
		}
		deadline := time.Now().Add(t.cfg.WriteTimeout)
		for t.open.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		// Cut what is left, including connections attached concurrently.
		for _, c := range t.conns(nil) {
			c.finish(protocol.CloseGoingAway, protocol.DisconnectGoingAway.Reason, false)
		}
		// A writer or the heartbeat may be finishing a connection at the
		// same moment (the cut above then skipped it): let it reach the loop.
		for t.finishing.Load() > 0 {
			time.Sleep(time.Millisecond)
		}
		close(t.hbStop)
		if t.pt != nil {
			t.pt.stop() // every reader has delivered its OnClose
		}
		t.readyMu.Lock()
		t.stopWrite = true
		t.readyCond.Broadcast()
		t.helperCond.Broadcast()
		t.readyMu.Unlock()
		for _, l := range t.loops {
			l.stop()
		}
		t.wg.Wait()
		for _, l := range t.loops {
			l.closeFDs()
		}
	})
	return t.closeErr
}

// Len returns the number of open connections.
func (t *Transport) Len() int { return int(t.open.Load()) }

// SlowConsumers returns how many connections were closed with 4108 because
// their outbound queue overflowed.
func (t *Transport) SlowConsumers() int64 { return t.slowConsumers.Load() }

// conns appends every registered connection to dst.
func (t *Transport) conns(dst []*Conn) []*Conn {
	return t.Conns(dst)
}

// Conns appends every registered connection to dst and returns it.
func (t *Transport) Conns(dst []*Conn) []*Conn {
	if t.pt != nil {
		return t.pt.appendConns(dst)
	}
	for _, l := range t.loops {
		dst = l.appendConns(dst)
	}
	return dst
}

// Upgrade completes the WebSocket handshake for a request the caller has
// already authenticated, registers the connection and returns it. When
// subprotocol is non-empty and the client offered it, it is answered in
// Sec-WebSocket-Protocol. On a bad handshake Upgrade answers with an HTTP
// error (400 for most; 405 for a wrong method and 426 for a wrong version,
// as RFC 6455 asks) and returns an error.
//
// Registering with the loop is Upgrade's last step, so reads start then:
// OnMessage and OnClose may run before Upgrade has returned to its caller.
// A caller that needs Value set in every callback uses UpgradeWith.
func (t *Transport) Upgrade(w http.ResponseWriter, r *http.Request, subprotocol string, h Handler) (*Conn, error) {
	return t.UpgradeWith(w, r, subprotocol, h, AttachOptions{})
}

// UpgradeWith is Upgrade with options (Value, Corked; Buffered and Preamble
// are set by the upgrade itself). The "101 Switching Protocols" response is
// queued as the connection's first bytes, so that with Corked it goes out in
// one write with the frames queued before Uncork.
func (t *Transport) UpgradeWith(w http.ResponseWriter, r *http.Request, subprotocol string, h Handler, opts AttachOptions) (*Conn, error) {
	if t.shutdown.Load() || !t.started.Load() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return nil, fmt.Errorf("ws: upgrade: %w", ErrClosed)
	}
	resp, err := ServerHandshake(r, subprotocol)
	if err != nil {
		var he *HandshakeError
		if errors.As(err, &he) {
			if he.Status == http.StatusUpgradeRequired {
				w.Header().Set("Sec-WebSocket-Version", "13")
			}
			http.Error(w, he.Reason, he.Status)
		}
		return nil, err
	}
	opts.Preamble = resp
	// The portable transport needs a net.Conn: it hijacks through
	// http.Hijacker, which makes one of a bare descriptor.
	if fh := fdHijacker(w); fh != nil && t.pt == nil {
		if fd, buffered, ok := fh.HijackFD(); ok {
			opts.Buffered = nil
			if len(buffered) > 0 {
				opts.Buffered = append([]byte(nil), buffered...)
			}
			c, err := t.AttachFD(fd, RoleServer, h, opts)
			if err != nil {
				return nil, fmt.Errorf("ws: upgrade: %w", err)
			}
			return c, nil
		}
	}
	nc, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return nil, fmt.Errorf("ws: upgrade: %w", err)
	}
	_ = nc.SetDeadline(time.Time{}) // the transport sets its own deadlines
	opts.Buffered = nil
	if rw != nil && rw.Reader != nil {
		if n := rw.Reader.Buffered(); n > 0 {
			b, _ := rw.Reader.Peek(n)
			opts.Buffered = append([]byte(nil), b...)
		}
	}
	c, err := t.AttachWith(nc, RoleServer, h, opts)
	if err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("ws: upgrade: %w", err)
	}
	return c, nil
}

// fdHijacker returns w, or the first writer it wraps (Unwrap, as
// http.ResponseController follows), that is an FDHijacker; nil if none.
func fdHijacker(w http.ResponseWriter) FDHijacker {
	for {
		if fh, ok := w.(FDHijacker); ok {
			return fh
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
}

// FDHijacker is implemented by an http.ResponseWriter whose connection is a
// bare socket descriptor rather than a net.Conn (Junction's front door,
// internal/web): UpgradeWith takes the descriptor itself, so the connection
// never gets a net.Conn, a runtime poller registration or addresses kept in
// memory.
type FDHijacker interface {
	// HijackFD takes over the connection and returns its descriptor
	// (connected, non-blocking, close-on-exec) and the bytes already read
	// after the request head, valid until the handler returns. ok is false,
	// and nothing is taken, when the connection is not a bare descriptor:
	// use http.Hijacker then.
	HijackFD() (fd int, buffered []byte, ok bool)
}

// AttachOptions are the optional settings of AttachWith.
type AttachOptions struct {
	// Value is stored as the connection's Value before it is registered
	// (the load generator's; see Conn.SetValue).
	Value any
	// Buffered holds bytes already read from the connection after the
	// handshake (for example what the *bufio.Reader returned by gobwas/ws's
	// Dialer holds); they are parsed before anything read from the socket.
	Buffered []byte
	// Preamble holds raw bytes (a handshake response) written before any
	// frame.
	Preamble []byte
	// Corked holds back every write until Uncork, so that the preamble and
	// the first frames go out together. The caller must call Uncork.
	Corked bool
}

// Attach registers an already handshaken connection playing role and
// returns it; reads start at once. For Epoll, nc must expose its file
// descriptor (syscall.Conn, as *net.TCPConn and *net.UnixConn do), so TLS
// connections are not supported; Portable takes any net.Conn. On success
// the Transport owns nc.
func (t *Transport) Attach(nc net.Conn, role Role, h Handler) (*Conn, error) {
	return t.AttachWith(nc, role, h, AttachOptions{})
}

// AttachWith is Attach with options.
func (t *Transport) AttachWith(nc net.Conn, role Role, h Handler, opts AttachOptions) (*Conn, error) {
	if t.shutdown.Load() || !t.started.Load() {
		return nil, fmt.Errorf("ws: attach: %w", ErrClosed)
	}
	if t.pt != nil {
		return t.attachPortable(nc, role, h, opts)
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("ws: attach: %T does not expose a file descriptor", nc)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("ws: attach: %w", err)
	}
	fd := -1
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return nil, fmt.Errorf("ws: attach: %w", err)
	}
	return t.attach(nc, fd, role, h, opts)
}

// AttachFD is AttachWith for a bare socket descriptor: connected, in
// non-blocking mode, and referred to by nothing else (no net.Conn, no
// duplicate), so that closing it also takes it out of the epoll set. The
// Transport owns fd from the call on: it is closed when the connection
// finishes, or at once when AttachFD fails. Portable makes a net.Conn of
// it (net.FileConn, Unix only).
func (t *Transport) AttachFD(fd int, role Role, h Handler, opts AttachOptions) (*Conn, error) {
	if fd < 0 {
		return nil, fmt.Errorf("ws: attach: bad descriptor %d", fd)
	}
	if t.pt != nil {
		nc, err := fileConn(fd)
		if err != nil {
			return nil, fmt.Errorf("ws: attach: %w", err)
		}
		c, err := t.AttachWith(nc, role, h, opts)
		if err != nil {
			_ = nc.Close()
		}
		return c, err
	}
	if t.shutdown.Load() || !t.started.Load() {
		closeFD(fd)
		return nil, fmt.Errorf("ws: attach: %w", ErrClosed)
	}
	return t.attach(nil, fd, role, h, opts)
}

// attach registers the connection on descriptor fd, owned by nc when nc is
// not nil. When it fails after registration began, the connection is
// finished, which closes its descriptor (nc too: the caller's Close of nc
// is then a no-op) and delivers OnClose.
func (t *Transport) attach(nc net.Conn, fd int, role Role, h Handler, opts AttachOptions) (*Conn, error) {
	li := t.next.Add(1) % uint32(len(t.loops))
	l := t.loops[li]
	gen := t.gen.Add(1)
	if gen == 0 { // 0 marks the loop's wake eventfd
		gen = t.gen.Add(1)
	}
	c := &Conn{
		t:    t,
		li:   uint8(li),
		x:    newConnOwn(nil, nc, opts),
		h:    h,
		fd:   int32(fd),
		gen:  gen,
		role: role,
		p:    parser{server: role == RoleServer, max: int32(min(t.cfg.MaxMessageBytes, 1<<30)), maxBinary: binaryLimit(t.cfg, h)},
	}
	c.applyOptions(opts)
	t.open.Add(1)
	if err := l.add(c); err != nil {
		// Transport.Close may have cut c meanwhile; finish is idempotent
		// and counts c out once (OnClose follows, as after the shutdown
		// check below).
		c.finish(protocol.CloseAbnormal, "attach failed", false)
		return nil, fmt.Errorf("ws: attach: %w", err)
	}
	if t.shutdown.Load() {
		// Close began while we registered; its sweep may have missed c.
		c.finish(protocol.CloseGoingAway, protocol.DisconnectGoingAway.Reason, false)
		return nil, fmt.Errorf("ws: attach: %w", ErrClosed)
	}
	if opts.Preamble != nil && !opts.Corked {
		c.Uncork()
	}
	return c, nil
}

// applyOptions sets up a connection not yet registered with opts
// (Preamble, Corked; Value is in its connOwn) and starts its clocks.
func (c *Conn) applyOptions(opts AttachOptions) {
	if opts.Preamble != nil {
		c.queue = append(c.queue, opts.Preamble)
		c.qbytes, c.qframes = len(opts.Preamble), 1
	}
	if opts.Preamble != nil || opts.Corked {
		// Held by this goroutine until uncorked: enqueues do not schedule.
		c.wstate = wReady
	}
	now := c.t.now()
	c.lastRead.Store(now)
	c.pingAt = now
}

// maxLoops is the most epoll loops a Transport runs (Config.Loops): a
// connection holds its loop's index in a byte (Conn.li).
const maxLoops = 256

// maxTake is the most connections a writer takes from the ready list at once.
const maxTake = 64

// schedule puts c on the ready list (Portable: wakes c's writer). The
// caller has moved c.wstate to wReady, so c is on the list at most once.
func (t *Transport) schedule(c *Conn) {
	if t.pt != nil {
		c.port().kick()
		return
	}
	t.readyMu.Lock()
	if t.readyHead > 0 && len(t.ready) == cap(t.ready) {
		n := copy(t.ready, t.ready[t.readyHead:])
		clear(t.ready[n:])
		t.ready, t.readyHead = t.ready[:n], 0
	}
	if len(t.ready) == t.readyHead {
		t.readySince = t.now()
	}
	t.ready = append(t.ready, c)
	help := t.helperWantedLocked()
	t.readyMu.Unlock()
	t.readyCond.Signal()
	if help {
		t.helperCond.Signal()
	}
}

// scheduleUrgent is schedule for a connection made ready by Send: it goes on
// the urgent list, which the writers serve first. While a loop is in a pass
// (a reply made by a handler on the loop, mostly) no writer is woken: the
// loop writes it at the end of its pass (loop.endPass).
func (t *Transport) scheduleUrgent(c *Conn) {
	if t.pt != nil {
		c.port().kick()
		return
	}
	t.readyMu.Lock()
	t.urgent = append(t.urgent, c)
	busy := t.loopsBusy.Load() > 0
	t.readyMu.Unlock()
	if !busy {
		t.readyCond.Signal()
	}
}

// scheduleMany puts cs on the ready list with one lock and wakes as many
// writers as there is work for. Like schedule, each connection's wstate was
// moved to wReady by the caller.
func (t *Transport) scheduleMany(cs []*Conn) {
	if t.pt != nil {
		for _, c := range cs {
			c.port().kick()
		}
		return
	}
	t.readyMu.Lock()
	if t.readyHead > 0 && len(t.ready)+len(cs) > cap(t.ready) {
		n := copy(t.ready, t.ready[t.readyHead:])
		clear(t.ready[n:])
		t.ready, t.readyHead = t.ready[:n], 0
	}
	if len(t.ready) == t.readyHead {
		t.readySince = t.now()
	}
	t.ready = append(t.ready, cs...)
	help := t.helperWantedLocked()
	t.readyMu.Unlock()
	if help {
		t.helperCond.Signal()
	}
	if len(cs) >= t.cfg.Writers {
		t.readyCond.Broadcast()
	} else {
		for range cs {
			t.readyCond.Signal()
		}
	}
}

// takeReady waits for ready connections and appends some of them to dst:
// the urgent ones first (at most maxTake), then a fair share of the ready
// list among the writers, so that urgent connections never starve it. At
// most maxTake in all, unless urgent ones alone were that many. It returns
// nil when the writers must stop.
func (t *Transport) takeReady(dst []*Conn) []*Conn {
	t.readyMu.Lock()
	defer t.readyMu.Unlock()
	for len(t.ready) == t.readyHead && len(t.urgent) == 0 {
		if t.stopWrite {
			return nil
		}
		t.readyCond.Wait()
	}
	if n := min(len(t.urgent), maxTake); n > 0 {
		dst = append(dst, t.urgent[:n]...)
		rest := copy(t.urgent, t.urgent[n:])
		clear(t.urgent[rest:])
		t.urgent = t.urgent[:rest]
		if rest == 0 && cap(t.urgent) > 1024 {
			t.urgent = nil
		}
	}
	avail := len(t.ready) - t.readyHead
	if avail == 0 {
		return dst
	}
	n := min(avail, max(1, min(maxTake, avail/t.cfg.Writers)))
	dst = append(dst, t.ready[t.readyHead:t.readyHead+n]...)
	clear(t.ready[t.readyHead : t.readyHead+n])
	t.readyHead += n
	if t.readyHead == len(t.ready) {
		t.ready, t.readyHead = t.ready[:0], 0
		if cap(t.ready) > 1<<16 {
			t.ready = nil
		}
	}
	return dst
}
