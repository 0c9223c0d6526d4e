package ws

import (
	"net/http"
	"strings"
	"testing"
)

func handshakeRequest(mod func(r *http.Request)) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://example.com/ws", nil)
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "keep-alive, Upgrade")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") // RFC 6455 §1.3
	if mod != nil {
		mod(r)
	}
	return r
}

func TestServerHandshake(t *testing.T) {
	resp, err := ServerHandshake(handshakeRequest(nil), "junction.v1")
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n" // the RFC's worked example
	if string(resp) != want {
		t.Fatalf("response:\n%q\nwant\n%q", resp, want)
	}

	resp, err = ServerHandshake(handshakeRequest(func(r *http.Request) {
		r.Header.Set("Sec-WebSocket-Protocol", "other, junction.v1")
	}), "junction.v1")
	if err != nil || !strings.Contains(string(resp), "\r\nSec-WebSocket-Protocol: junction.v1\r\n") {
		t.Fatalf("offered subprotocol not selected: %q, %v", resp, err)
	}
	resp, _ = ServerHandshake(handshakeRequest(func(r *http.Request) {
		r.Header.Set("Sec-WebSocket-Protocol", "JUNCTION.V1")
	}), "junction.v1")
	if strings.Contains(string(resp), "Sec-WebSocket-Protocol") {
		t.Fatalf("subprotocols are case-sensitive, got %q", resp)
	}
}

func TestServerHandshakeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(r *http.Request)
		status int
	}{
		{"post", func(r *http.Request) { r.Method = http.MethodPost }, 405},
		{"http/1.0", func(r *http.Request) { r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.0", 1, 0 }, 400},
		{"no upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 400},
		{"upgrade to something else", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, 400},
		{"no connection upgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 400},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426},
		{"two versions", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Version", "13") }, 426},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400},
		{"short key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400},
		{"key not base64", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!!!") }, 400},
		{"key of 17 bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AQEBAQEBAQEBAQEBAQEBAQE=") }, 400},
		{"key of 18 bytes", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "AQEBAQEBAQEBAQEBAQEBAQEB") }, 400},
		{"key with a line break", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25j\nZQ=") }, 400},
		{"key unpadded", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ") }, 400},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") }, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ServerHandshake(handshakeRequest(tc.mod), "")
			he, ok := err.(*HandshakeError)
			if !ok || he.Status != tc.status || resp != nil {
				t.Fatalf("got %q, %v; want status %d", resp, err, tc.status)
			}
		})
	}
}

// FuzzServerHandshake drives the whole handshake validation with arbitrary
// method, protocol version and header values: it never panics, a refusal
// is a HandshakeError with 400, 405 or 426 and no response, and an
// acceptance is a 101 whose key is exactly 16 bytes of standard base64.
func FuzzServerHandshake(f *testing.F) {
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", "dGhlIHNhbXBsZSBub25jZQ==", "junction.v1")
	f.Add("GET", 1, 1, "websocket", "keep-alive, Upgrade", "13", "AQEBAQEBAQEBAQEBAQEBAQE=", "")
	f.Add("GET", 1, 1, "websocket", "Upgrade", "13", "AQEBAQEBAQEBAQEBAQEBAQEB", "")
	f.Add("POST", 1, 0, "h2c", "close", "8", "!!!!!!!!!!!!!!!!!!!!!!!!", "x, y")
	f.Add("GET", 2, 0, "WebSocket", "UPGRADE", "13", "dGhlIHNhbXBsZSBub25j\nZQ=", ",,,")
	f.Fuzz(func(t *testing.T, method string, major, minor int, upgrade, connection, version, key, protos string) {
		r := &http.Request{Method: method, ProtoMajor: major, ProtoMinor: minor, Proto: "HTTP/x", Header: http.Header{}}
		for name, v := range map[string]string{"Upgrade": upgrade, "Connection": connection,
			"Sec-Websocket-Version": version, "Sec-Websocket-Protocol": protos} {
			if v != "" {
				r.Header[name] = strings.Split(v, "\x00")
			}
		}
		if key != "" {
			r.Header["Sec-Websocket-Key"] = strings.Split(key, "\x00")
		}
		resp, err := ServerHandshake(r, "junction.v1")
		if err != nil {
			he, ok := err.(*HandshakeError)
			if !ok || resp != nil || he.Status != 400 && he.Status != 405 && he.Status != 426 {
				t.Fatalf("refusal %q, %v", resp, err)
			}
			return
		}
		if !strings.HasPrefix(string(resp), "HTTP/1.1 101 ") || !validKey(key) || r.Method != http.MethodGet {
			t.Fatalf("accepted key %q method %q: %q", key, method, resp)
		}
	})
}

func BenchmarkServerHandshake(b *testing.B) {
	r := handshakeRequest(func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "junction.v1") })
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ServerHandshake(r, "junction.v1"); err != nil {
			b.Fatal(err)
		}
	}
}
