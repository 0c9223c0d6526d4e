//go:build linux

package bench

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// rawConnector is one connect worker's state for connectRaw: the request it
// sends (with a fresh Sec-WebSocket-Key patched in each time) and its read
// buffer. Blocking sockets on the worker's thread, without the runtime's
// poller: the connect scenario measures the server, and the load client
// shares its two cores, so every microsecond the client spends is one the
// server cannot have.
type rawConnector struct {
	req    []byte // the handshake request
	keyAt  int    // offset of the 24-byte Sec-WebSocket-Key value in req
	sub    []byte // --subscribe: the masked channel.subscribe frame sent after the welcome
	buf    []byte
	target unix.SockaddrInet4
}

// newRawConnector prepares worker's connector, or returns nil when the
// target is not an IPv4 address (the portable path is used then).
func (r *benchRun) newRawConnector(worker int) (*rawConnector, error) {
	n := r.d.node(worker)
	ap, err := netip.ParseAddrPort(n.target)
	if err != nil || !ap.Addr().Is4() {
		return nil, nil
	}
	tok, err := r.d.tokens(worker)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	const key = "AAAAAAAAAAAAAAAAAAAAAA=="
	req := "GET " + n.u.RequestURI() + " HTTP/1.1\r\nHost: " + n.u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Protocol: junction.v1\r\nAuthorization: Bearer " + tok + "\r\n\r\n"
	c := &rawConnector{req: []byte(req), keyAt: len(req) - len(key) - len("\r\nSec-WebSocket-Protocol: junction.v1\r\nAuthorization: Bearer \r\n\r\n") - len(tok), buf: make([]byte, 16<<10)}
	if string(c.req[c.keyAt:c.keyAt+len(key)]) != key {
		return nil, errors.New("bench: raw connector: key offset")
	}
	c.target = unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	if r.cfg.Subscribe {
		c.sub = subscribeFrame(r.cfg.Topic)
	}
	return c, nil
}

// wsAcceptGUID is RFC 6455's handshake GUID.
const wsAcceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// connectRaw is connectOnce on a blocking socket: connect, the upgrade with
// a fresh key whose accept value is checked, the welcome, with --subscribe
// a channel.subscribe and its answer, the close handshake (the server
// closes first, so TIME_WAIT stays on its side).
func (r *benchRun) connectRaw(c *rawConnector) (err error) {
	t0 := time.Now()
	var nonce [16]byte
	binary.LittleEndian.PutUint64(nonce[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(nonce[8:], rand.Uint64())
	base64.StdEncoding.Encode(c.req[c.keyAt:c.keyAt+24], nonce[:])
	sum := sha1.Sum(append(c.req[c.keyAt:c.keyAt+24:c.keyAt+24], wsAcceptGUID...))
	var accept [28]byte
	base64.StdEncoding.Encode(accept[:], sum[:])

	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	// Every blocking call below gives up after 10 s.
	tv := unix.Timeval{Sec: 10}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setsockopt: %w", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv); err != nil {
		return fmt.Errorf("setsockopt: %w", err)
	}
	if len(r.d.sources) > 0 {
		src := r.d.sources[r.d.next.Add(1)%uint64(len(r.d.sources))]
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			return fmt.Errorf("bind %s: %w", src, err)
		}
	}
	if err := connectFD(fd, &c.target); err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	if err := writeAll(fd, c.req); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	// The response head, then the first frame: the welcome; with
	// --subscribe, then the subscription's answer (events before it, such
	// as the subscription's own channel events, are skipped).
	n, pos, welcomed := 0, -1, false // pos: start of the next unread frame once the head is read
	for done := false; !done; {
		if pos < 0 {
			if i := bytes.Index(c.buf[:n], []byte("\r\n\r\n")); i >= 0 {
				pos = i + 4
				if err := checkUpgrade(c.buf[:pos], accept[:]); err != nil {
					return fmt.Errorf("handshake: %w", err)
				}
			}
		}
		for pos >= 0 && !done {
			msg, size, ok, err := frameAt(c.buf[pos:n])
			if err != nil {
				return fmt.Errorf("read welcome or subscription: %w", err)
			}
			if !ok {
				break
			}
			pos += size
			switch {
			case !welcomed:
				if !bytes.HasPrefix(msg, eventWelcome) {
					return fmt.Errorf("first frame is not the welcome: %.200s", msg)
				}
				welcomed = true
				if c.sub == nil {
					done = true
				} else if err := writeAll(fd, c.sub); err != nil {
					return fmt.Errorf("send subscribe: %w", err)
				}
			default:
				if id, ok, isRes := responseID(msg); isRes && string(id) == subscribeID {
					if !ok {
						return fmt.Errorf("subscribe: %.200s", msg)
					}
					done = true
				}
			}
		}
		if done {
			break
		}
		if n == len(c.buf) {
			if pos <= 0 {
				return errors.New("read welcome: response too long")
			}
			n = copy(c.buf, c.buf[pos:n])
			pos = 0
		}
		m, err := readSome(fd, c.buf[n:])
		if err != nil {
			return fmt.Errorf("read welcome or subscription: %w", err)
		}
		n += m
	}
	r.hist.record(int64(time.Since(t0)))
	r.m.conns.Add(1)
	defer r.m.conns.Add(-1)
	if err := writeAll(fd, clientCloseFrame); err != nil {
		return fmt.Errorf("send close: %w", err)
	}
	for { // the close echo, then the end
		if _, err := readSome(fd, c.buf); err != nil {
			return nil
		}
	}
}

// checkUpgrade checks a handshake response head: 101 and the expected
// Sec-WebSocket-Accept.
func checkUpgrade(head, accept []byte) error {
	if !bytes.HasPrefix(head, []byte("HTTP/1.1 101 ")) {
		line, _, _ := bytes.Cut(head, []byte("\r\n"))
		return fmt.Errorf("unexpected response %q", line)
	}
	if !bytes.Contains(head, append([]byte("Sec-Websocket-Accept: "), accept...)) &&
		!bytes.Contains(head, append([]byte("Sec-WebSocket-Accept: "), accept...)) {
		return errors.New("missing or wrong Sec-WebSocket-Accept")
	}
	return nil
}

// firstFrame returns the payload of the unmasked text frame at the start of
// b, ok false while it is incomplete.
func firstFrame(b []byte) (payload []byte, ok bool, err error) {
	payload, _, ok, err = frameAt(b)
	return payload, ok, err
}

// frameAt is firstFrame that also returns the frame's size in b.
func frameAt(b []byte) (payload []byte, size int, ok bool, err error) {
	if len(b) < 2 {
		return nil, 0, false, nil
	}
	op, n, hl := b[0]&0x0f, int(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return nil, 0, false, nil
		}
		n, hl = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		return nil, 0, false, errors.New("frame too long")
	}
	if len(b) < hl+n {
		return nil, 0, false, nil
	}
	p := b[hl : hl+n]
	switch op {
	case 0x1:
		return p, hl + n, true, nil
	case 0x8:
		code := 0
		if len(p) >= 2 {
			code = int(binary.BigEndian.Uint16(p))
		}
		return nil, 0, false, errors.New("closed by server: " + strconv.Itoa(code) + " " + string(p[min(2, len(p)):]))
	}
	return nil, 0, false, fmt.Errorf("unexpected opcode %d", op)
}

// connectFD connects the blocking socket fd to sa. With a send timeout set,
// a signal (the runtime's preemption signal, frequent under load) interrupts
// connect with EINTR while the kernel goes on connecting; connect again then
// waits for that attempt, or answers EISCONN when it has succeeded already.
func connectFD(fd int, sa unix.Sockaddr) error {
	interrupted := false
	for {
		err := unix.Connect(fd, sa)
		switch {
		case errors.Is(err, unix.EINTR):
			interrupted = true
			continue
		case interrupted && errors.Is(err, unix.EISCONN):
			return nil
		}
		return err
	}
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return err
		}
		b = b[n:]
	}
	return nil
}

// readSome reads once; io.EOF-like errors when the peer closed.
func readSome(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, errors.New("timed out")
		case err != nil:
			return 0, err
		case n == 0:
			return 0, errors.New("connection closed")
		}
		return n, nil
	}
}
