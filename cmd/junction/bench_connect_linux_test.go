package main

import (
	"strings"
	"testing"
)

func TestRawConnectParsing(t *testing.T) {
	accept := []byte("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
	for _, tc := range []struct {
		head, want string
	}{
		{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", ""},
		{"HTTP/1.1 101 Switching Protocols\r\nSec-Websocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n", ""},
		{"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: wrong\r\n\r\n", "Sec-WebSocket-Accept"},
		{"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", "401 Unauthorized"},
	} {
		err := checkUpgrade([]byte(tc.head), accept)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkUpgrade(%.30q) = %v, want %q", tc.head, err, tc.want)
		}
	}
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		in       string
		payload  string
		complete bool
		err      string
	}{
		{"", "", false, ""},
		{"\x81", "", false, ""},
		{"\x81\x05hel", "", false, ""},
		{"\x81\x05hello+more", "hello", true, ""},
		{"\x81\x7e\x01\x2c" + long, long, true, ""},
		{"\x81\x7e\x01", "", false, ""},
		{"\x88\x06\x0f\xa0auth", "", false, "closed by server: 4000 auth"},
		{"\x82\x00", "", false, "opcode 2"},
		{"\x81\x7f", "", false, "too long"},
	} {
		p, ok, err := firstFrame([]byte(tc.in))
		if string(p) != tc.payload || ok != tc.complete || (tc.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("firstFrame(%.10q) = %.10q, %v, %v; want %.10q, %v, %q", tc.in, p, ok, err, tc.payload, tc.complete, tc.err)
		}
	}
}
