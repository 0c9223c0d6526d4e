package ws

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strings"
)

// HandshakeError is a refused WebSocket opening handshake: the HTTP status to
// answer (400, 405 or 426, as RFC 6455 §4.2.2 asks) and why.
type HandshakeError struct {
	Status int
	Reason string
}

func (e *HandshakeError) Error() string { return "ws: bad handshake: " + e.Reason }

// acceptGUID is the magic string of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// ServerHandshake checks a client's opening handshake (RFC 6455 §4.2.1) and
// returns the complete "101 Switching Protocols" response to write. When
// subprotocol is non-empty and the client offered it, the response selects
// it. It writes nothing: the caller sends the response, typically in the
// same write as the first frames.
func ServerHandshake(r *http.Request, subprotocol string) ([]byte, error) {
	if r.Method != http.MethodGet {
		return nil, &HandshakeError{Status: http.StatusMethodNotAllowed, Reason: "method " + r.Method + ", want GET"}
	}
	if !r.ProtoAtLeast(1, 1) {
		return nil, &HandshakeError{Status: http.StatusBadRequest, Reason: "protocol " + r.Proto + ", want HTTP/1.1"}
	}
	if !headerHasToken(r.Header, "Upgrade", "websocket", true) {
		return nil, &HandshakeError{Status: http.StatusBadRequest, Reason: "missing Upgrade: websocket"}
	}
	if !headerHasToken(r.Header, "Connection", "upgrade", true) {
		return nil, &HandshakeError{Status: http.StatusBadRequest, Reason: "missing Connection: upgrade"}
	}
	if v := r.Header.Values("Sec-Websocket-Version"); len(v) != 1 || v[0] != "13" {
		return nil, &HandshakeError{Status: http.StatusUpgradeRequired, Reason: "Sec-WebSocket-Version must be 13"}
	}
	keys := r.Header.Values("Sec-Websocket-Key")
	if len(keys) != 1 {
		return nil, &HandshakeError{Status: http.StatusBadRequest, Reason: "want exactly one Sec-WebSocket-Key"}
	}
	if !validKey(keys[0]) {
		return nil, &HandshakeError{Status: http.StatusBadRequest, Reason: "Sec-WebSocket-Key is not 16 bytes in base64"}
	}

	resp := make([]byte, 0, 160)
	resp = append(resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	resp = appendAcceptKey(resp, keys[0])
	resp = append(resp, "\r\n"...)
	if subprotocol != "" && headerHasToken(r.Header, "Sec-Websocket-Protocol", subprotocol, false) {
		resp = append(resp, "Sec-WebSocket-Protocol: "...)
		resp = append(resp, subprotocol...)
		resp = append(resp, "\r\n"...)
	}
	return append(resp, "\r\n"...), nil
}

// validKey reports whether key is the base64 (RFC 4648 §4, padded) of
// exactly 16 bytes, as RFC 6455 §4.1 asks. Twenty-four characters may
// decode to up to 18 bytes ("AQEBAQEBAQEBAQEBAQEBAQE=" is 17), so the
// buffer has room for that many and the length is checked after.
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var nonce [18]byte // base64.StdEncoding.DecodedLen(24)
	n, err := base64.StdEncoding.Decode(nonce[:], []byte(key))
	return err == nil && n == 16
}

// appendAcceptKey appends the Sec-WebSocket-Accept value for key.
func appendAcceptKey(dst []byte, key string) []byte {
	h := sha1.New()
	h.Write([]byte(key))
	h.Write([]byte(acceptGUID))
	var sum [sha1.Size]byte
	return base64.StdEncoding.AppendEncode(dst, h.Sum(sum[:0]))
}

// headerHasToken reports whether a comma-separated header (all its values)
// contains token, compared case-insensitively when fold is set.
func headerHasToken(h http.Header, name, token string, fold bool) bool {
	for _, v := range h[name] {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			t = strings.TrimSpace(t)
			if t == token || fold && strings.EqualFold(t, token) {
				return true
			}
		}
	}
	return false
}
