package web

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"net/http"
	"reflect"
	"testing"

	"github.com/junctionhq/junction/internal/ws"
)

var headCorpus = []string{
	"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:7700\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: junction.v1\r\nAuthorization: Bearer a.b.c\r\n\r\n",
	"GET /ws?token=abc&x=%20 HTTP/1.1\r\nhost: example.com\r\nupgrade:websocket\r\nconnection:  keep-alive, Upgrade \t\r\nx-custom-thing: 1\r\nX-Custom-Thing: 2\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
	"GET /ws HTTP/1.1\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x\r\n continued\r\n\r\n",
	"GET /ws HTTP/1.1\nHost: x\n\n",
	"GET http://x/ws HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /ws HTTP/1.0\r\nHost: x\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x\r\nPragma: no-cache\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x\r\nV: caf\xc3\xa9\r\n\r\n",
	"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: x y\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 0\r\n\r\n",
}

// TestParseHead: the common handshake takes the fast path; what it declines
// is left to http.ReadRequest.
func TestParseHead(t *testing.T) {
	for i, in := range headCorpus {
		got := parseHead([]byte(in))
		if (got != nil) != (i < 2) {
			t.Errorf("%q: fast path %v, want %v", in, got != nil, i < 2)
		}
		checkHead(t, []byte(in))
	}
}

// FuzzParseHead: whenever parseHead accepts a head, http.ReadRequest accepts
// it too and reads the same request.
func FuzzParseHead(f *testing.F) {
	for _, in := range headCorpus {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkHead(t, b)
	})
}

func checkHead(t *testing.T, b []byte) {
	t.Helper()
	fast := parseHead(b)
	if fast == nil {
		return
	}
	slow, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%q: parseHead accepted what http.ReadRequest refuses: %v", b, err)
	}
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"method", fast.Method, slow.Method},
		{"url", fast.URL, slow.URL},
		{"proto", [3]any{fast.Proto, fast.ProtoMajor, fast.ProtoMinor}, [3]any{slow.Proto, slow.ProtoMajor, slow.ProtoMinor}},
		{"header", fast.Header, slow.Header},
		{"host", fast.Host, slow.Host},
		{"request uri", fast.RequestURI, slow.RequestURI},
		{"close", fast.Close, slow.Close},
		{"content length", fast.ContentLength, slow.ContentLength},
		{"body", fast.Body, slow.Body},
		{"transfer encoding", fast.TransferEncoding, slow.TransferEncoding},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Fatalf("%q: %s: parseHead %#v, http.ReadRequest %#v", b, c.what, c.got, c.want)
		}
	}
}

// FuzzHandshakeHead runs the front door's whole validation of a WebSocket
// handshake on arbitrary bytes: the fast head parser or http.ReadRequest
// with headRefusal, then ws.ServerHandshake. Nothing panics; what passes
// is answered 101 only for a key of exactly 16 bytes in base64.
func FuzzHandshakeHead(f *testing.F) {
	for _, in := range headCorpus {
		f.Add([]byte(in))
	}
	for _, key := range []string{"dGhlIHNhbXBsZSBub25jZQ==", "AQEBAQEBAQEBAQEBAQEBAQE=", "AQEBAQEBAQEBAQEBAQEBAQEB", "c2hvcnQ="} {
		f.Add([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"))
		f.Add([]byte("GET /ws HTTP/1.1\r\nHost : x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key : " + key + "\r\n\r\n"))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := parseHead(b)
		if req == nil {
			var err error
			if req, err = http.ReadRequest(bufio.NewReader(bytes.NewReader(b))); err != nil || headRefusal(req) != "" {
				return
			}
		}
		resp, err := ws.ServerHandshake(req, "junction.v1")
		if err != nil {
			if resp != nil {
				t.Fatalf("%q: refused (%v) with a response %q", b, err, resp)
			}
			return
		}
		keys := req.Header.Values("Sec-Websocket-Key")
		raw, derr := base64.StdEncoding.DecodeString(keys[0])
		if !bytes.HasPrefix(resp, []byte("HTTP/1.1 101 ")) || len(keys) != 1 || derr != nil || len(raw) != 16 {
			t.Fatalf("%q: accepted with key %q: %q", b, keys, resp)
		}
	})
}
