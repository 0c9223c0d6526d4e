package ws

import (
	"encoding/binary"
	"math/rand/v2"
	"unicode/utf8"

	gws "github.com/gobwas/ws"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa
)

const (
	maxControlPayload = 125
	maxCloseReason    = maxControlPayload - 2
	maxHeaderLen      = 14 // 2 + 8 (extended length) + 4 (mask)
)

// pingFrame is the prepared unmasked ping a RoleServer heartbeat queues; it is
// shared by every connection.
var pingFrame = PrepareFrame(opPing, nil)

// PrepareText returns a complete unmasked text frame (header and payload, FIN
// set) carrying payload. The result is what Conn.Send expects on a RoleServer
// connection; prepare a publication once and Send the same slice to every
// subscriber. The returned slice must not be modified after it is queued.
func PrepareText(payload []byte) []byte {
	return PrepareFrame(opText, payload)
}

// FrameHeaderRoom is how many bytes a buffer given to PrepareTextAt
// reserves in front of its payload: the longest unmasked frame header.
const FrameHeaderRoom = 10

// PrepareTextAt is PrepareText for a payload written into b after
// FrameHeaderRoom reserved bytes: the header goes in place just before the
// payload, so a frame built there is not copied once more. It returns the
// frame, a subslice of b (the same bytes as PrepareText's).
func PrepareTextAt(b []byte) []byte {
	n := len(b) - FrameHeaderRoom
	at := FrameHeaderRoom - headerLen(n, false)
	putHeader(b[at:], opText, n, nil)
	return b[at:len(b):len(b)]
}

// PreparedPayload returns the payload of a frame made by PrepareFrame or
// PrepareText (unmasked, FIN set), aliasing it; nil when frame is not one.
// A codec that translates prepared frames for one connection reads them
// back with it.
func PreparedPayload(frame []byte) []byte {
	if len(frame) < 2 || frame[1]&0x80 != 0 {
		return nil
	}
	n, h := int(frame[1]&0x7f), 2
	switch n {
	case 126:
		if len(frame) < 4 {
			return nil
		}
		n, h = int(binary.BigEndian.Uint16(frame[2:4])), 4
	case 127:
		if len(frame) < 10 {
			return nil
		}
		n, h = int(binary.BigEndian.Uint64(frame[2:10])), 10
	}
	if n < 0 || len(frame)-h != n {
		return nil
	}
	return frame[h:]
}

// PrepareClose returns a complete unmasked close frame carrying code and
// reason. The reason is truncated to the 123 bytes a control frame allows
// (at a UTF-8 boundary). A code of 0 produces a close frame without a
// status, which RFC 6455 reports to the peer as 1005.
func PrepareClose(code int, reason string) []byte {
	return PrepareFrame(opClose, closePayload(code, reason))
}

// PrepareFrame returns a complete unmasked frame with opcode op (0x1 text,
// 0x8 close, 0x9 ping, 0xa pong, ...), FIN set, carrying payload.
func PrepareFrame(op byte, payload []byte) []byte {
	b := make([]byte, headerLen(len(payload), false)+len(payload))
	n := putHeader(b, op, len(payload), nil)
	copy(b[n:], payload)
	return b
}

// prepareMasked returns a complete masked frame with a fresh random mask, as
// RFC 6455 §5.3 requires of every frame a client sends (RoleClient, the load
// generator's: see there why it stays).
func prepareMasked(op byte, payload []byte) []byte {
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b := make([]byte, headerLen(len(payload), true)+len(payload))
	n := putHeader(b, op, len(payload), &mask)
	copy(b[n:], payload)
	gws.Cipher(b[n:], mask, 0)
	return b
}

// headerLen returns the length of a frame header for a payload of n bytes.
func headerLen(n int, masked bool) int {
	h := 2
	switch {
	case n > 0xffff:
		h += 8
	case n > 125:
		h += 2
	}
	if masked {
		h += 4
	}
	return h
}

// putHeader writes a FIN frame header into b, which must be large enough,
// and returns its length.
func putHeader(b []byte, op byte, n int, mask *[4]byte) int {
	b[0] = 0x80 | op
	var i int
	switch {
	case n > 0xffff:
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
		i = 10
	case n > 125:
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
		i = 4
	default:
		b[1] = byte(n)
		i = 2
	}
	if mask != nil {
		b[1] |= 0x80
		copy(b[i:], mask[:])
		i += 4
	}
	return i
}

// closePayload returns the payload of a close frame: the code in network
// order followed by the reason, truncated to fit a control frame.
func closePayload(code int, reason string) []byte {
	if code == 0 {
		return nil
	}
	if len(reason) > maxCloseReason {
		reason = reason[:maxCloseReason]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := make([]byte, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	copy(p[2:], reason)
	return p
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 §7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
