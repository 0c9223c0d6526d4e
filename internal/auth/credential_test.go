package auth

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCredentialFromRequest(t *testing.T) {
	tests := []struct {
		name       string
		url        string
		headers    [][2]string
		wantOK     bool
		wantValue  string
		wantSource string
	}{
		{"none", "/ws", nil, false, "", ""},
		{"header", "/ws", [][2]string{{"Authorization", "Bearer abc.def.ghi"}}, true, "abc.def.ghi", SourceHeader},
		{"header lowercase scheme", "/ws", [][2]string{{"Authorization", "bearer tok"}}, true, "tok", SourceHeader},
		{"header extra spaces", "/ws", [][2]string{{"Authorization", "  Bearer   tok  "}}, true, "tok", SourceHeader},
		{"subprotocol", "/ws", [][2]string{{"Sec-WebSocket-Protocol", "junction.v1, junction.bearer.tok"}}, true, "tok", SourceSubprotocol},
		{"subprotocol reversed order", "/ws", [][2]string{{"Sec-WebSocket-Protocol", "junction.bearer.tok,junction.v1"}}, true, "tok", SourceSubprotocol},
		{"subprotocol split headers", "/ws", [][2]string{{"Sec-WebSocket-Protocol", "junction.v1"}, {"Sec-WebSocket-Protocol", "junction.bearer.tok"}}, true, "tok", SourceSubprotocol},
		{"subprotocol beside the compact one", "/ws", [][2]string{{"Sec-WebSocket-Protocol", "junction.compact.v1, junction.bearer.tok"}}, true, "tok", SourceSubprotocol},
		{"query", "/ws?token=tok", nil, true, "tok", SourceQuery},
		{"header beats subprotocol and query", "/ws?token=q", [][2]string{{"Authorization", "Bearer h"}, {"Sec-WebSocket-Protocol", "junction.v1, junction.bearer.s"}}, true, "h", SourceHeader},
		{"subprotocol beats query", "/ws?token=q", [][2]string{{"Sec-WebSocket-Protocol", "junction.v1, junction.bearer.s"}}, true, "s", SourceSubprotocol},
		{"basic auth falls through to query", "/ws?token=q", [][2]string{{"Authorization", "Basic dXNlcjpwYXNz"}}, true, "q", SourceQuery},
		{"bearer without value falls through", "/ws?token=q", [][2]string{{"Authorization", "Bearer "}}, true, "q", SourceQuery},
		{"bearer alone", "/ws", [][2]string{{"Authorization", "Bearer"}}, false, "", ""},
		{"bearer with two values", "/ws", [][2]string{{"Authorization", "Bearer a b"}}, false, "", ""},
		{"bearer glued", "/ws", [][2]string{{"Authorization", "Bearertok"}}, false, "", ""},
		{"bearer subprotocol without junction.v1", "/ws?token=q", [][2]string{{"Sec-WebSocket-Protocol", "junction.bearer.s"}}, true, "q", SourceQuery},
		{"empty bearer subprotocol", "/ws", [][2]string{{"Sec-WebSocket-Protocol", "junction.v1, junction.bearer."}}, false, "", ""},
		{"bearer subprotocol with a space is not a token", "/ws?token=q", [][2]string{{"Sec-WebSocket-Protocol", "junction.v1, junction.bearer. tok"}}, true, "q", SourceQuery},
		{"first well-formed bearer subprotocol wins", "/ws", [][2]string{{"Sec-WebSocket-Protocol", "junction.v1, junction.bearer.a\tb, junction.bearer.c"}}, true, "c", SourceSubprotocol},
		{"first bearer subprotocol wins", "/ws", [][2]string{{"Sec-WebSocket-Protocol", "junction.v1, junction.bearer.a, junction.bearer.b"}}, true, "a", SourceSubprotocol},
		{"empty query", "/ws?token=", nil, false, "", ""},
		{"api key in header", "/ws", [][2]string{{"Authorization", "Bearer jk_abc_def"}}, true, "jk_abc_def", SourceHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.url, nil)
			for _, h := range tt.headers {
				r.Header.Add(h[0], h[1])
			}
			c, ok := CredentialFromRequest(r)
			if ok != tt.wantOK || c.Value != tt.wantValue || c.Source != tt.wantSource {
				t.Fatalf("got (%q, %q, %v), want (%q, %q, %v)", c.Value, c.Source, ok, tt.wantValue, tt.wantSource, tt.wantOK)
			}
		})
	}
}

func TestOffersSubprotocol(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   bool
	}{
		{"none", nil, false},
		{"only v1", []string{"junction.v1"}, true},
		{"pair", []string{"junction.v1, junction.bearer.x"}, true},
		{"only bearer", []string{"junction.bearer.x"}, false},
		{"other", []string{"chat, superchat"}, false},
		{"prefix only", []string{"junction.v10"}, false},
		{"second header", []string{"chat", " junction.v1 "}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			for _, v := range tt.values {
				r.Header.Add("Sec-WebSocket-Protocol", v)
			}
			if got := OffersSubprotocol(r); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOffersCompactSubprotocol(t *testing.T) {
	for _, tt := range []struct {
		value string
		want  bool
	}{
		{"", false}, {"junction.v1", false}, {"junction.compact.v1", true},
		{"junction.compact.v1, junction.bearer.x", true}, {"chat, junction.compact.v1", true}, {"junction.compact.v10", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		if tt.value != "" {
			r.Header.Add("Sec-WebSocket-Protocol", tt.value)
		}
		if got := OffersCompactSubprotocol(r); got != tt.want {
			t.Errorf("%q: got %v, want %v", tt.value, got, tt.want)
		}
	}
}

// TestSubprotocolChecksAllocateNothing: a handshake reads its
// Sec-WebSocket-Protocol offers up to three times (credential, plain and
// compact subprotocol); none of the reads allocates.
func TestSubprotocolChecksAllocateNothing(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/ws", nil)
	r.Header.Add("Sec-WebSocket-Protocol", "junction.v1, junction.bearer.tok")
	r.Header.Add("Sec-WebSocket-Protocol", "chat")
	allocs := testing.AllocsPerRun(100, func() {
		if !OffersSubprotocol(r) || OffersCompactSubprotocol(r) {
			t.Fatal("offers misread")
		}
		if cred, ok := subprotocolCredential(r); !ok || cred != "tok" {
			t.Fatalf("credential %q, %v; want tok", cred, ok)
		}
	})
	if allocs != 0 {
		t.Fatalf("got %v allocations per handshake's subprotocol checks, want 0", allocs)
	}
}

func TestCredentialRedacted(t *testing.T) {
	c := Credential{Value: "supersecret", Source: SourceHeader}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "cred", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %s %+v %#v", c, c, c, c), buf.String()} {
		if strings.Contains(s, "supersecret") {
			t.Fatalf("got %q, want the value redacted", s)
		}
	}
}
