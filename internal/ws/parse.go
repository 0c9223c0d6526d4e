package ws

import (
	"encoding/binary"
	"fmt"

	gws "github.com/gobwas/ws"

	"github.com/junctionhq/junction/protocol"
)

// closeError is a protocol violation found by the parser: the connection is
// closed with code and reason.
type closeError struct {
	code   int
	reason string
}

func (e *closeError) Error() string {
	return fmt.Sprintf("ws: close %d: %s", e.code, e.reason)
}

var (
	errUnmasked     = &closeError{protocol.CloseProtocolError, "client frames must be masked"}
	errMasked       = &closeError{protocol.CloseProtocolError, "server frames must not be masked"}
	errReserved     = &closeError{protocol.CloseProtocolError, "reserved bits set"}
	errOpcode       = &closeError{protocol.CloseProtocolError, "reserved opcode"}
	errControlLen   = &closeError{protocol.CloseProtocolError, "control frame too long"}
	errControlFrag  = &closeError{protocol.CloseProtocolError, "fragmented control frame"}
	errContinuation = &closeError{protocol.CloseProtocolError, "unexpected continuation frame"}
	errInterleaved  = &closeError{protocol.CloseProtocolError, "new message inside a fragmented message"}
	errLength       = &closeError{protocol.CloseProtocolError, "invalid payload length"}
	errBinary       = &closeError{protocol.CloseUnsupportedData, "binary messages are not supported"}
	errTooBig       = &closeError{protocol.CloseTooBig, "message too big"}
	errBinaryTooBig = &closeError{protocol.CloseTooBig, "binary message too big"}
	errCloseLen     = &closeError{protocol.CloseProtocolError, "invalid close payload"}
	errCloseCode    = &closeError{protocol.CloseProtocolError, "invalid close code"}
)

// frameFunc receives one complete text message (op opText, reassembled if it
// was fragmented), one complete binary message (opBinary, only when the
// parser's maxBinary is set) or one control frame (opPing, opPong, opClose), unmasked.
// payload is valid only during the call. Returning false stops parsing; the
// unparsed bytes are dropped.
type frameFunc func(op byte, payload []byte) bool

// parser is an incremental RFC 6455 frame parser. It holds memory only while
// a frame or a fragmented message is incomplete: an idle connection's parser
// holds no buffer. All fields are owned by the goroutine that feeds it (the
// connection's read loop).
type parser struct {
	// max limits a text message's payload after reassembly; maxBinary a
	// binary message's, 0 refusing binary messages (1003). int32 keeps
	// Conn in its size class (conn_size_test.go).
	max, maxBinary int32

	partial []byte  // bytes of an incomplete frame, nil when none
	msg     *[]byte // payload of a fragmented message so far, nil outside one (a pointer: fragments are rare, and Conn keeps its size class)
	server  bool    // frames must be masked (true) or unmasked (false)
	frag    bool    // inside a fragmented message
	fragOp  byte    // the fragmented message's opcode (opText or opBinary)
	failed  bool    // a violation was reported; everything after it is ignored
}

// msgLen returns the length of the fragmented message so far.
func (p *parser) msgLen() int {
	if p.msg == nil {
		return 0
	}
	return len(*p.msg)
}

// feed parses data, the next bytes read from the connection, calling fn for
// each complete message or control frame. data may be modified (unmasked in
// place) and is not retained. It returns a *closeError on a protocol
// violation, after which feed ignores further input.
func (p *parser) feed(data []byte, fn frameFunc) error {
	if p.failed {
		return nil
	}
	buf := data
	fromPartial := p.partial != nil
	if fromPartial {
		p.partial = append(p.partial, data...)
		buf = p.partial
	}
	off, err := p.parse(buf, fn)
	if err != nil {
		p.failed = true
		p.partial, p.msg = nil, nil
		return err
	}
	rest := buf[off:]
	switch {
	case len(rest) == 0:
		p.partial = nil
	case fromPartial && off == 0:
		// Still incomplete; keep growing the same buffer.
	case fromPartial && cap(p.partial) <= 4096:
		p.partial = p.partial[:copy(p.partial, rest)]
	default:
		// Copy the tail out of the shared read buffer (or out of a large
		// partial buffer, which is released).
		p.partial = append(make([]byte, 0, max(len(rest), 64)), rest...)
	}
	return nil
}

// parse consumes complete frames from b and returns how many bytes it used.
func (p *parser) parse(b []byte, fn frameFunc) (int, error) {
	off := 0
	for {
		h := b[off:]
		if len(h) < 2 {
			return off, nil
		}
		fin := h[0]&0x80 != 0
		if h[0]&0x70 != 0 {
			return off, errReserved
		}
		op := h[0] & 0x0f
		masked := h[1]&0x80 != 0
		if masked != p.server {
			if p.server {
				return off, errUnmasked
			}
			return off, errMasked
		}
		hl := 2
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			hl += 2
		case 127:
			hl += 8
		}
		if masked {
			hl += 4
		}
		// Validate what the first two bytes tell before waiting for more, so
		// a bad frame is rejected without buffering its payload.
		switch op {
		case opText:
			if p.frag {
				return off, errInterleaved
			}
		case opBinary:
			if p.frag {
				return off, errInterleaved
			}
			if p.maxBinary <= 0 {
				return off, errBinary
			}
		case opContinuation:
			if !p.frag {
				return off, errContinuation
			}
		case opClose, opPing, opPong:
			if !fin {
				return off, errControlFrag
			}
			if n > maxControlPayload {
				return off, errControlLen
			}
		default:
			return off, errOpcode
		}
		if len(h) < hl {
			return off, nil
		}
		switch n {
		case 126:
			n = uint64(binary.BigEndian.Uint16(h[2:]))
		case 127:
			n = binary.BigEndian.Uint64(h[2:])
			if n>>63 != 0 {
				return off, errLength
			}
		}
		limit, tooBig := uint64(p.max), errTooBig
		if op == opBinary || op == opContinuation && p.fragOp == opBinary {
			limit, tooBig = uint64(p.maxBinary), errBinaryTooBig
		}
		if op == opContinuation {
			limit -= uint64(p.msgLen()) // p.msgLen() <= the message's limit always holds
		}
		if op <= opBinary && n > limit {
			return off, tooBig
		}
		if uint64(len(h)-hl) < n {
			return off, nil
		}
		payload := h[hl : hl+int(n)]
		if masked {
			var mask [4]byte
			copy(mask[:], h[hl-4:hl])
			gws.Cipher(payload, mask, 0)
		}
		off += hl + int(n)

		switch op {
		case opText, opBinary:
			if !fin {
				p.frag, p.fragOp = true, op
				p.msg = new([]byte)
				*p.msg = append([]byte(nil), payload...)
				continue
			}
			if !fn(op, payload) {
				return len(b), nil
			}
		case opContinuation:
			*p.msg = append(*p.msg, payload...)
			if !fin {
				continue
			}
			msg := *p.msg
			p.msg, p.frag = nil, false
			if !fn(p.fragOp, msg) {
				return len(b), nil
			}
		case opClose:
			if len(payload) == 1 {
				return off, errCloseLen
			}
			if len(payload) >= 2 && !validCloseCode(int(binary.BigEndian.Uint16(payload))) {
				return off, errCloseCode
			}
			fn(opClose, payload)
			// Nothing after a close frame is read (RFC 6455 §5.5.1).
			p.failed = true
			return len(b), nil
		default:
			if !fn(op, payload) {
				return len(b), nil
			}
		}
	}
}
