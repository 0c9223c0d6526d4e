package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"
	"time"
	"unsafe"
)

func TestHasScope(t *testing.T) {
	tests := []struct {
		name   string
		scopes []string
		ask    string
		want   bool
	}{
		{"exact read", []string{ScopeRead}, ScopeRead, true},
		{"read does not give write", []string{ScopeRead}, ScopeWrite, false},
		{"write implies read", []string{ScopeWrite}, ScopeRead, true},
		{"write does not give rpc.serve", []string{ScopeWrite}, ScopeRPCServe, false},
		{"admin implies write", []string{ScopeAdmin}, ScopeWrite, true},
		{"admin implies rpc.serve", []string{ScopeAdmin}, ScopeRPCServe, true},
		{"admin implies custom", []string{ScopeAdmin}, "billing.read", true},
		{"rpc.serve exact", []string{ScopeRead, ScopeRPCServe}, ScopeRPCServe, true},
		{"none", nil, ScopeRead, false},
		{"empty ask", []string{ScopeAdmin}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Principal{Scopes: tt.scopes}
			if got := p.HasScope(tt.ask); got != tt.want {
				t.Fatalf("HasScope(%q) with %v: got %v, want %v", tt.ask, tt.scopes, got, tt.want)
			}
		})
	}
	var nilP *Principal
	if nilP.HasScope(ScopeRead) {
		t.Fatal("nil principal: got HasScope true, want false")
	}
}

func TestValidKind(t *testing.T) {
	for _, k := range Kinds {
		if !ValidKind(k) {
			t.Errorf("ValidKind(%q): got false, want true", k)
		}
	}
	for _, k := range []string{"", "Phone", "toaster", "phone "} {
		if ValidKind(k) {
			t.Errorf("ValidKind(%q): got true, want false", k)
		}
	}
}

func TestPrincipalInfo(t *testing.T) {
	exp := time.UnixMilli(1_800_000_000_123)
	tests := []struct {
		name string
		p    Principal
		want string
	}{
		{"device", Principal{UserID: "u", DeviceID: "d", Kind: "phone", SessionID: "s", TokenID: "j", Scopes: []string{"read"}, ExpiresAtMicros: ExpiryMicros(exp)},
			`{"userId":"u","deviceId":"d","kind":"phone","scopes":["read"],"expiresAtMs":1800000000123}`},
		{"app without expiry or scopes", Principal{AppID: "a"}, `{"appId":"a","scopes":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.p.Info())
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("got %s, want %s", b, tt.want)
			}
		})
	}
}

func TestPrincipalKey(t *testing.T) {
	tests := []struct {
		name string
		p    Principal
		want string
	}{
		{"device", Principal{UserID: "u1", DeviceID: "d1"}, "u:u1/d:d1"},
		{"user only", Principal{UserID: "u1"}, "u:u1/d:"},
		{"app", Principal{AppID: "a1"}, "app:a1"},
		// An app acting for a user: one key space per user, so that an
		// idempotency key reused for two users never answers one with the
		// other's result (it was "app:a1" before apps acted for users).
		{"app for a user", Principal{AppID: "a1", UserID: "u1"}, "app:a1/u:u1"},
		{"app for an escaped user", Principal{AppID: "a1", UserID: "u/1"}, "app:a1/u:u%2F1"},
		{"escaped", Principal{UserID: "a/d:b", DeviceID: "c"}, "u:a%2Fd:b/d:c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Key(); got != tt.want {
				t.Fatalf("got key %q, want %q", got, tt.want)
			}
		})
	}
	a := Principal{UserID: "a/d:b", DeviceID: "c"}
	b := Principal{UserID: "a", DeviceID: "b/d:c"}
	if a.Key() == b.Key() {
		t.Fatalf("got equal keys %q for distinct principals, want distinct", a.Key())
	}
	if x, y := (Principal{AppID: "a", UserID: "u1"}), (Principal{AppID: "a", UserID: "u2"}); x.Key() == y.Key() {
		t.Fatalf("got equal keys %q for one app acting for two users, want distinct", x.Key())
	}
}

func TestFailureReason(t *testing.T) {
	base := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"failure", fail(ReasonExpired, base), ReasonExpired},
		{"wrapped failure", fmt.Errorf("handshake: %w", fail(ReasonOrigin, base)), ReasonOrigin},
		{"plain error", base, ReasonOther},
		{"nil", nil, ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := FailureReason(tt.err); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
	f := fail(ReasonSignature, base)
	if !errors.Is(f, base) {
		t.Fatal("errors.Is(failure, base): got false, want true")
	}
	if got, want := f.Error(), "auth: signature: boom"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestPrincipalSize: every connection holds a Principal; 128 bytes is its
// size class (issue 11's idle target). A time.Time field would make it 144.
func TestPrincipalSize(t *testing.T) {
	if n := unsafe.Sizeof(Principal{}); n > 128 {
		t.Errorf("got unsafe.Sizeof(Principal{}) = %d, want <= 128", n)
	}
}

func TestExpiryMicros(t *testing.T) {
	exp := time.Date(2026, 12, 7, 14, 0, 0, 123456789, time.UTC)
	for _, tc := range []struct {
		name    string
		t       time.Time
		want    int64
		expired bool // at exp
	}{
		{"zero: never expires", time.Time{}, 0, false},
		{"a time", exp, exp.UnixMicro(), true},
		{"the epoch still expires", time.Unix(0, 0), -1, true},
		{"far future clamped", time.Unix(1<<53, 0), math.MaxInt64, false},
		{"far past clamped", time.Unix(-(1 << 53), 0), math.MinInt64, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ExpiryMicros(tc.t)
			if got != tc.want {
				t.Fatalf("got ExpiryMicros %d, want %d", got, tc.want)
			}
			p := &Principal{ExpiresAtMicros: got}
			if e := p.Expired(exp); e != tc.expired {
				t.Errorf("got Expired(%v) %v, want %v", exp, e, tc.expired)
			}
			if got == 0 && !p.ExpiresAt().IsZero() {
				t.Errorf("got ExpiresAt %v, want the zero time", p.ExpiresAt())
			}
			if got == tc.t.UnixMicro() && got != 0 && !p.ExpiresAt().Equal(tc.t.Truncate(time.Microsecond)) {
				t.Errorf("got ExpiresAt %v, want %v", p.ExpiresAt(), tc.t)
			}
		})
	}
	if p := (&Principal{ExpiresAtMicros: exp.UnixMicro()}); p.Expired(exp.Add(-time.Microsecond)) {
		t.Errorf("expired a microsecond before its expiry")
	}
}
