package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/junctionhq/junction/protocol"
)

// writeTimeout bounds one write to the socket; closeTimeout bounds the
// write of the close frame when a connection ends, and then the wait for
// the server's answering close (RFC 6455 §7.1.1: the client waits for the
// server to close first), so that once Close returns the server has taken
// the connection as closed: a call relayed to this client right after
// Close then waits for it like for any offline device, where it was sent to
// the closing connection and failed "target disconnected during the call".
const (
	writeTimeout = 10 * time.Second
	closeTimeout = time.Second
)

// FeatureBatch is the welcome feature by which a server says it accepts
// several frames per message from the client. Without it the client sends
// one frame per message.
const FeatureBatch = "batch"

// errConnDone is returned by enqueue when the connection ended.
var errConnDone = errors.New("client: connection ended")

// conn is one WebSocket connection. readLoop owns reading the socket and
// writeLoop owns writing it; every other goroutine only enqueues on out.
type conn struct {
	c      *Client
	log    *slog.Logger       // set once
	nc     net.Conn           // set once
	br     *bufio.Reader      // set once: bytes the dialer read past the handshake, or nil
	ctx    context.Context    // canceled when the connection ends or the client closes
	cancel context.CancelFunc // called by shutdown
	out    chan outMsg        // encoded frames and binary messages, drained by writeLoop
	ctrl   chan []byte        // ping payloads to answer with a pong, drained by writeLoop

	welcomed   chan struct{} // closed by readLoop when the welcome arrived
	writerDone chan struct{} // closed when writeLoop returns
	readDone   chan struct{} // closed when readLoop's reading ended
	exited     chan struct{} // closed when readLoop and writeLoop have both returned

	handshakeDeadline time.Time // set once: the welcome must arrive before it

	// Written by readLoop before welcomed is closed; read-only afterwards.
	welcome     protocol.Welcome
	hasWelcome  bool // owned by readLoop
	connectedAt time.Time
	maxFrame    atomic.Int64 // the server's limit on one inbound message
	maxBinary   atomic.Int64 // its limit on one inbound binary message; 0: none announced
	batch       atomic.Bool  // the server accepts several frames per message (feature "batch")

	// Written by readLoop; read by others only after exited is closed.
	closeCode     int           // code of the server's close frame, 0 when none
	shutdownSeen  bool          // the server announced server.shutdown
	shutdownAfter time.Duration // its reconnectAfterMs

	once     sync.Once
	err      error        // set by shutdown (once); read after exited
	sendCode atomic.Int32 // set by shutdown: close code writeLoop sends, 0 for none

	mu      sync.Mutex
	pending map[string]chan *protocol.Frame // guarded by mu: calls waiting for a response, by id
}

// connect dials the server, upgrades, and waits for the welcome event. ctx
// bounds the handshake only; the connection lives until it fails or the
// client closes.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.HandshakeTimeout)
	defer cancel()

	h := http.Header{}
	for k, v := range c.opts.Header {
		h[k] = slices.Clone(v)
	}
	token := c.opts.Token
	if c.opts.TokenFunc != nil {
		var err error
		token, err = c.opts.TokenFunc(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: get token: %w", err)
		}
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}

	var herr *HandshakeError // set by OnStatusError, during Dial
	d := ws.Dialer{
		Header:    ws.HandshakeHeaderHTTP(h),
		Protocols: []string{protocol.Subprotocol},
		NetDial:   c.opts.netDial,
		OnStatusError: func(status int, _ []byte, resp io.Reader) {
			herr = readHandshakeError(status, resp)
		},
	}
	nc, br, _, err := d.Dial(ctx, c.opts.URL)
	if err != nil {
		if herr != nil {
			return nil, herr
		}
		return nil, fmt.Errorf("client: dial %s: %w", c.opts.URL, err)
	}

	cn := &conn{
		c:          c,
		log:        c.log,
		nc:         nc,
		br:         br,
		out:        make(chan outMsg, c.opts.SendQueue),
		ctrl:       make(chan []byte, 4),
		welcomed:   make(chan struct{}),
		writerDone: make(chan struct{}),
		readDone:   make(chan struct{}),
		exited:     make(chan struct{}),
		pending:    map[string]chan *protocol.Frame{},
	}
	cn.ctx, cn.cancel = context.WithCancel(c.ctx)
	cn.handshakeDeadline, _ = ctx.Deadline()
	cn.maxFrame.Store(protocol.DefaultMaxFrameBytes)
	c.wg.Go(cn.writeLoop)
	c.wg.Go(cn.readLoop)

	select {
	case <-cn.welcomed:
		return cn, nil
	case <-cn.ctx.Done():
	case <-ctx.Done():
		cn.shutdown(fmt.Errorf("client: wait for welcome: %w", ctx.Err()), 0)
	}
	<-cn.exited
	select {
	case <-cn.welcomed:
		// The welcome came just before the end: the supervisor handles
		// the end like any other.
		return cn, nil
	default:
	}
	return nil, fmt.Errorf("client: wait for welcome: %w", cn.err)
}

// readHandshakeError decodes the HTTP response of a refused upgrade.
func readHandshakeError(status int, resp io.Reader) *HandshakeError {
	he := &HandshakeError{StatusCode: status}
	r, err := http.ReadResponse(bufio.NewReader(resp), nil)
	if err != nil {
		return he
	}
	defer r.Body.Close()
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		return he
	}
	var env protocol.ErrorBody
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Code != "" {
		he.Err = env.Error
	}
	return he
}

// shutdown ends the connection with err as its reason. code is the close
// code writeLoop sends before closing the socket, 0 to close it at once.
// Only the first call counts.
func (cn *conn) shutdown(err error, code int) {
	cn.once.Do(func() {
		cn.err = err
		cn.sendCode.Store(int32(code))
		cn.cancel()
		if code == 0 {
			cn.nc.Close() // wakes readLoop and a blocked writeLoop
		}
	})
}

// outMsg is one entry of a connection's send queue: an encoded protocol
// frame, or (binary) a whole binary message.
type outMsg struct {
	b      []byte
	binary bool
}

// enqueue queues an encoded frame for writeLoop, waiting while the queue is
// full. b must not be modified afterwards.
func (cn *conn) enqueue(ctx context.Context, b []byte) error {
	return cn.enqueueMsg(ctx, outMsg{b: b})
}

// enqueueMsg queues m for writeLoop, waiting while the queue is full.
func (cn *conn) enqueueMsg(ctx context.Context, m outMsg) error {
	select {
	case cn.out <- m:
		return nil
	case <-cn.ctx.Done():
		return errConnDone
	case <-ctx.Done():
		return ctx.Err()
	}
}

// readLoop reads the socket until the connection ends, then records why.
func (cn *conn) readLoop() {
	err := cn.read()
	close(cn.readDone)
	code := 0
	var ce *CloseError
	if errors.As(err, &ce) {
		// Echo the server's close code, as RFC 6455 asks, when it may be
		// sent on the wire.
		code = ce.Code
		if code == 0 || code == 1005 || code == 1006 || code == 1015 {
			code = protocol.CloseNormal
		}
	}
	cn.shutdown(err, code)
	<-cn.writerDone
	cn.nc.Close()
	if cn.br != nil {
		ws.PutReader(cn.br)
	}
	close(cn.exited)
}

func (cn *conn) read() error {
	src := io.Reader(cn.br)
	if cn.br == nil {
		src = bufio.NewReaderSize(cn.nc, 4096)
	}
	rd := &wsutil.Reader{
		Source:         src,
		State:          ws.StateClientSide,
		CheckUTF8:      true,
		MaxMessageSize: cn.c.opts.MaxMessageBytes,
		OnIntermediate: cn.control,
	}
	var msg bytes.Buffer
	for {
		window := cn.setReadDeadline()
		hdr, err := rd.NextFrame()
		if err != nil {
			if window > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("client: server silent for %v: %w", window, err)
			}
			return fmt.Errorf("client: read frame: %w", err)
		}
		if hdr.OpCode.IsControl() {
			if err := cn.control(hdr, rd); err != nil {
				return err
			}
			continue
		}
		if hdr.OpCode != ws.OpText {
			if !cn.hasWelcome || !cn.c.hasBinary.Load() {
				cn.log.Warn("client: ignoring a binary message", "bytes", hdr.Length)
				if err := rd.Discard(); err != nil {
					return fmt.Errorf("client: discard binary message: %w", err)
				}
				continue
			}
			// A fresh slice per message: the handler owns it.
			b, err := io.ReadAll(rd)
			if err != nil {
				return fmt.Errorf("client: read binary message: %w", err)
			}
			if err := cn.deliverItem(inItem{bin: b}); err != nil && !cn.ending(err) {
				return err
			}
			continue
		}
		msg.Reset()
		if _, err := msg.ReadFrom(rd); err != nil {
			return fmt.Errorf("client: read message: %w", err)
		}
		if err := cn.handleMessage(msg.Bytes()); err != nil && !cn.ending(err) {
			return err
		}
		if msg.Cap() > 1<<20 {
			msg = bytes.Buffer{} // do not keep a large buffer for an idle connection
		}
	}
}

// ending reports that err only says the connection is ending (its context
// is done): reading goes on, dropping what arrives, until the server
// answers the close frame or ends the connection (awaitServerClose).
func (cn *conn) ending(err error) bool {
	return errors.Is(err, errConnDone) && cn.ctx.Err() != nil
}

// setReadDeadline sets the deadline of the next frame: the handshake
// deadline until the welcome, then the heartbeat watchdog (heartbeatMs +
// heartbeatTimeoutMs of the welcome, during which a frame or a ping must
// arrive). It returns the watchdog window, 0 when there is none.
func (cn *conn) setReadDeadline() time.Duration {
	if !cn.hasWelcome {
		cn.nc.SetReadDeadline(cn.handshakeDeadline)
		return 0
	}
	hb := time.Duration(cn.welcome.HeartbeatMs) * time.Millisecond
	if hb <= 0 {
		cn.nc.SetReadDeadline(time.Time{})
		return 0
	}
	grace := time.Duration(cn.welcome.HeartbeatTimeoutMs) * time.Millisecond
	if grace <= 0 {
		grace = hb
	}
	cn.nc.SetReadDeadline(time.Now().Add(hb + grace))
	return hb + grace
}

// control handles a control frame: it answers a ping (through writeLoop) and
// turns a close frame into a *CloseError.
func (cn *conn) control(h ws.Header, r io.Reader) error {
	if h.Length > ws.MaxControlFramePayloadSize {
		return fmt.Errorf("client: control frame of %d bytes", h.Length)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return fmt.Errorf("client: read control frame: %w", err)
	}
	switch h.OpCode {
	case ws.OpPing:
		select {
		case cn.ctrl <- p:
		default: // writeLoop is behind: the server pings again
		}
	case ws.OpClose:
		code, reason := ws.ParseCloseFrameData(p)
		cn.closeCode = int(code)
		return &CloseError{Code: int(code), Reason: reason}
	}
	return nil
}

// handleMessage handles the frames of one text message.
func (cn *conn) handleMessage(msg []byte) error {
	var err error
	tap := cn.c.opts.OnFrame
	protocol.Split(msg, func(b []byte) {
		if err != nil {
			return
		}
		if tap != nil {
			tap(false, b)
		}
		f, derr := protocol.Decode(b)
		if derr != nil {
			cn.log.Warn("client: dropping an invalid frame", "err", derr)
			return
		}
		err = cn.handleFrame(f)
	})
	return err
}

func (cn *conn) handleFrame(f *protocol.Frame) error {
	if !cn.hasWelcome {
		if f.Type != protocol.TypeEvent || f.Event != protocol.EventWelcome {
			return errors.New("client: first frame is not the welcome event")
		}
		var w protocol.Welcome
		if len(f.Data) > 0 {
			if err := json.Unmarshal(f.Data, &w); err != nil {
				return fmt.Errorf("client: decode welcome: %w", err)
			}
		}
		cn.welcome = w
		cn.hasWelcome = true
		cn.connectedAt = time.Now()
		if w.Limits.MaxFrameBytes > 0 {
			cn.maxFrame.Store(int64(w.Limits.MaxFrameBytes))
			cn.maxBinary.Store(int64(w.Limits.MaxBinaryBytes))
		}
		cn.batch.Store(slices.Contains(w.Features, FeatureBatch))
		close(cn.welcomed)
		return cn.deliver(f)
	}
	switch f.Type {
	case protocol.TypeResponse:
		cn.resolve(f)
	case protocol.TypeRequest:
		cn.serve(f)
	case protocol.TypeEvent:
		switch f.Event {
		case protocol.EventShutdown:
			var s protocol.Shutdown
			if err := json.Unmarshal(f.Data, &s); err != nil {
				cn.log.Warn("client: bad server.shutdown data", "err", err)
			}
			cn.shutdownSeen = true
			cn.shutdownAfter = time.Duration(s.ReconnectAfterMs) * time.Millisecond
			cn.log.Info("client: server is shutting down", "reason", s.Reason, "reconnectAfter", cn.shutdownAfter)
		case protocol.EventTokenExpiring:
			cn.c.refreshToken(cn)
		}
		return cn.deliver(f)
	}
	return nil
}

// deliver hands an event to the dispatcher, waiting while its buffer is
// full. The wait does not count as server silence: the read deadline is set
// before each frame.
func (cn *conn) deliver(f *protocol.Frame) error {
	return cn.deliverItem(inItem{f: f})
}

// deliverItem hands an event or a binary message to the dispatcher,
// waiting while its buffer is full.
func (cn *conn) deliverItem(it inItem) error {
	select {
	case cn.c.events <- it:
		return nil
	case <-cn.ctx.Done():
		return errConnDone
	}
}

// resolve hands a response to the call waiting for it; a response nobody
// waits for (the call gave up) is dropped.
func (cn *conn) resolve(f *protocol.Frame) {
	cn.mu.Lock()
	ch := cn.pending[f.ID]
	delete(cn.pending, f.ID)
	cn.mu.Unlock()
	if ch == nil {
		cn.log.Debug("client: dropping a response nobody waits for", "id", f.ID)
		return
	}
	ch <- f // buffered, and only one response per id is delivered
}

// writeLoop owns writing the socket: it answers pings, writes queued frames
// (when the server announced FeatureBatch, those queued at the same moment
// are joined by '\n' into one message, up to the server's frame limit) and,
// when the connection ends, writes the close frame and closes the socket.
func (cn *conn) writeLoop() {
	defer close(cn.writerDone)
	defer cn.nc.Close()
	bw := bufio.NewWriterSize(cn.nc, 16<<10)
	tap := cn.c.opts.OnFrame
	var buf, carry []byte
	for {
		first := carry
		carry = nil
		if first == nil {
			var m outMsg
			select {
			case p := <-cn.ctrl:
				if err := cn.writeFrame(bw, ws.NewPongFrame(p), writeTimeout); err != nil {
					cn.shutdown(err, 0)
					return
				}
				continue
			case m = <-cn.out:
			case <-cn.ctx.Done():
				if cn.writeClose(bw) {
					cn.awaitServerClose()
				}
				return
			}
			if m.binary {
				if err := cn.writeFrame(bw, ws.NewBinaryFrame(m.b), writeTimeout); err != nil {
					cn.shutdown(err, 0)
					return
				}
				continue
			}
			first = m.b
		}
		limit := int(cn.maxFrame.Load())
		if tap != nil {
			tap(true, first)
		}
		buf = append(buf[:0], first...)
	batch:
		for cn.batch.Load() && len(buf) < limit {
			select {
			case m := <-cn.out:
				if m.binary {
					// Binary goes alone, after the text batched before it.
					if err := cn.writeFrame(bw, ws.NewTextFrame(buf), writeTimeout); err != nil {
						cn.shutdown(err, 0)
						return
					}
					buf = buf[:0]
					if err := cn.writeFrame(bw, ws.NewBinaryFrame(m.b), writeTimeout); err != nil {
						cn.shutdown(err, 0)
						return
					}
					break batch
				}
				b := m.b
				if len(buf)+1+len(b) > limit {
					carry = b
					break batch
				}
				if tap != nil {
					tap(true, b)
				}
				buf = append(buf, '\n')
				buf = append(buf, b...)
			default:
				break batch
			}
		}
		if len(buf) > 0 {
			if err := cn.writeFrame(bw, ws.NewTextFrame(buf), writeTimeout); err != nil {
				cn.shutdown(err, 0)
				return
			}
		}
		if cap(buf) > 1<<20 {
			buf = nil
		}
	}
}

// writeClose writes the close frame the connection's end asks for, if any.
func (cn *conn) writeClose(bw *bufio.Writer) bool {
	code := int(cn.sendCode.Load())
	if code == 0 && cn.c.ctx.Err() != nil {
		code = protocol.CloseNormal // the client is closing
	}
	if code == 0 {
		return false
	}
	body := ws.NewCloseFrameBody(ws.StatusCode(code), protocol.CloseReason(code))
	if err := cn.writeFrame(bw, ws.NewCloseFrame(body), closeTimeout); err != nil {
		cn.log.Debug("client: write close frame", "err", err)
		return false
	}
	return true
}

// awaitServerClose waits, at most closeTimeout, for the server to answer
// the close frame just written (or end the connection) before the socket
// is closed. readLoop has usually ended already when the server closed
// first.
func (cn *conn) awaitServerClose() {
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-cn.readDone:
	case <-t.C:
		cn.log.Debug("client: no close from the server in time; closing the socket")
	}
}

// writeFrame masks f's payload in place and writes f.
func (cn *conn) writeFrame(bw *bufio.Writer, f ws.Frame, timeout time.Duration) error {
	f = ws.MaskFrameInPlace(f)
	cn.nc.SetWriteDeadline(time.Now().Add(timeout))
	// The header goes through a stack buffer: ws.WriteHeader allocates one
	// per frame.
	var hdr [ws.MaxHeaderSize]byte
	bw.Write(appendHeader(hdr[:0], f.Header))
	bw.Write(f.Payload)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("client: write frame: %w", err)
	}
	return nil
}

// appendHeader appends the wire encoding of h (RFC 6455 §5.2), as
// ws.WriteHeader writes it.
func appendHeader(dst []byte, h ws.Header) []byte {
	b0 := byte(h.OpCode) | byte(h.Rsv<<4)
	if h.Fin {
		b0 |= 0x80
	}
	var b1 byte
	if h.Masked {
		b1 = 0x80
	}
	switch n := h.Length; {
	case n <= 125:
		dst = append(dst, b0, b1|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, b1|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if h.Masked {
		dst = append(dst, h.Mask[:]...)
	}
	return dst
}
