package auth

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestNewOriginPolicyRejects(t *testing.T) {
	tests := []string{
		"",
		"example.com",
		"localhost:3000",
		"https://",
		"https://example.com/path",
		"https://example.com?q=1",
		"https://example.com#frag",
		"https://user@example.com",
		"https://*",
		"https://*.",
		"https://a.*.example.com",
		"https://*example.com",
		"https://example.com:",
		"https://exa mple.com",
		"*.example.com",
	}
	for _, entry := range tests {
		t.Run(entry, func(t *testing.T) {
			if _, err := NewOriginPolicy([]string{entry}); err == nil {
				t.Fatalf("NewOriginPolicy(%q): got nil error, want error", entry)
			}
		})
	}
}

func TestCheckHostName(t *testing.T) {
	for _, tt := range []struct {
		host string
		ok   bool
	}{
		{"gw.example.com", true}, {"GW.Example.COM", true}, {"*.example.com", true}, {"gw.example.com.", true},
		{"localhost", true}, {"127.0.0.1", true}, {"::1", true}, {"a-b.example", true},
		{"", false}, {"https://gw.example.com", false}, {"gw.example.com:7700", false}, {"gw.example.com/x", false},
		{"*", false}, {"*.", false}, {"a.*.example", false}, {"-a.example", false}, {"a-.example", false},
		{"a..example", false}, {"exa mple.com", false}, {"[::1]", false}, {"a_b.example", false},
	} {
		if err := CheckHostName(tt.host); (err == nil) != tt.ok {
			t.Errorf("CheckHostName(%q): got %v, want ok %v", tt.host, err, tt.ok)
		}
	}
	if _, err := NewOriginPolicy(nil, "https://gw.example.com"); err == nil {
		t.Errorf("NewOriginPolicy with host %q: got nil error", "https://gw.example.com")
	}
}

func TestOriginPolicy(t *testing.T) {
	allow := []string{"https://app.example.com", "http://localhost:3000", "https://*.example.org", "HTTPS://Upper.Example.NET:443", "capacitor://localhost", "https://[::1]:8443"}
	tests := []struct {
		name    string
		allowed []string
		host    string
		origins []string
		want    bool
	}{
		{"no origin", allow, "gw.example.com", nil, true},
		{"empty origin", allow, "gw.example.com", []string{""}, true},
		{"same origin", nil, "gw.example.com", []string{"https://gw.example.com"}, true},
		{"same origin case-insensitive", nil, "GW.example.com", []string{"https://gw.EXAMPLE.com"}, true},
		{"same origin explicit port", nil, "gw.example.com:7700", []string{"http://gw.example.com:7700"}, true},
		{"same origin default port in host", nil, "gw.example.com:443", []string{"https://gw.example.com"}, true},
		{"same host other port", nil, "gw.example.com:7700", []string{"http://gw.example.com:7701"}, false},
		{"same origin ipv6", nil, "[::1]:7700", []string{"http://[::1]:7700"}, true},
		{"cross origin refused by default", nil, "gw.example.com", []string{"https://evil.com"}, false},
		{"exact allowed", allow, "gw", []string{"https://app.example.com"}, true},
		{"exact with default port", allow, "gw", []string{"https://app.example.com:443"}, true},
		{"exact wrong scheme", allow, "gw", []string{"http://app.example.com"}, false},
		{"exact wrong port", allow, "gw", []string{"https://app.example.com:8443"}, false},
		{"exact suffix attack", allow, "gw", []string{"https://app.example.com.evil.com"}, false},
		{"exact prefix attack", allow, "gw", []string{"https://evilapp.example.com"}, false},
		{"localhost port", allow, "gw", []string{"http://localhost:3000"}, true},
		{"localhost other port", allow, "gw", []string{"http://localhost:3001"}, false},
		{"normalized entry", allow, "gw", []string{"https://upper.example.net"}, true},
		{"custom scheme", allow, "gw", []string{"capacitor://localhost"}, true},
		{"ipv6 entry", allow, "gw", []string{"https://[::1]:8443"}, true},
		{"wildcard subdomain", allow, "gw", []string{"https://a.example.org"}, true},
		{"wildcard deep subdomain", allow, "gw", []string{"https://a.b.example.org"}, true},
		{"wildcard excludes apex", allow, "gw", []string{"https://example.org"}, false},
		{"wildcard suffix attack", allow, "gw", []string{"https://evilexample.org"}, false},
		{"wildcard wrong scheme", allow, "gw", []string{"http://a.example.org"}, false},
		{"wildcard wrong port", allow, "gw", []string{"https://a.example.org:8443"}, false},
		{"null origin", allow, "gw", []string{"null"}, false},
		{"origin with path", allow, "gw", []string{"https://app.example.com/x"}, false},
		{"garbage origin", allow, "gw", []string{"%%%"}, false},
		{"wildcard in request origin", allow, "gw", []string{"https://*.example.org"}, false},
		{"two origin headers", allow, "gw", []string{"https://app.example.com", "https://evil.com"}, false},
		{"star allows any", []string{"*"}, "gw", []string{"https://evil.com"}, true},
		{"star allows null", []string{"*"}, "gw", []string{"null"}, true},
		// DNS rebinding: Host and Origin agree, but name no host the server knows.
		{"rebinding refused", nil, "evil.example", []string{"http://evil.example"}, false},
		{"rebinding with port refused", nil, "evil.example:7700", []string{"http://evil.example:7700"}, false},
		{"rebinding subdomain of a known host refused", nil, "x.gw.example.com", []string{"https://x.gw.example.com"}, false},
		{"rebinding trailing dot refused", nil, "evil.example.", []string{"http://evil.example."}, false},
		{"loopback address same origin", nil, "127.0.0.1:7700", []string{"http://127.0.0.1:7700"}, true},
		{"localhost same origin", nil, "localhost:7700", []string{"http://localhost:7700"}, true},
		{"dot localhost same origin", nil, "app.localhost:7700", []string{"http://app.localhost:7700"}, true},
		{"address same origin", nil, "192.0.2.7:7700", []string{"http://192.0.2.7:7700"}, true},
		{"wildcard public host", nil, "a.pub.example", []string{"https://a.pub.example"}, true},
		{"wildcard public host excludes apex", nil, "pub.example", []string{"https://pub.example"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewOriginPolicy(tt.allowed, "gw.example.com", "*.pub.example")
			if err != nil {
				t.Fatalf("NewOriginPolicy: %v", err)
			}
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.Host = tt.host
			for _, v := range tt.origins {
				r.Header.Add("Origin", v)
			}
			err = o.Check(r)
			if got := err == nil; got != tt.want {
				t.Fatalf("Check(Origin %q, Host %q): got allowed %v (%v), want %v", tt.origins, tt.host, got, err, tt.want)
			}
			if err != nil {
				assertReason(t, err, ReasonOrigin)
			}
		})
	}
}
