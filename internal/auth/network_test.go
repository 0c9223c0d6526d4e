package auth

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
)

func TestLockdownRanges(t *testing.T) {
	tests := []struct {
		remote string
		want   bool
	}{
		{"127.0.0.1:1234", true},
		{"127.8.9.10:1", true},
		{"[::1]:1234", true},
		{"10.0.0.1:1", true},
		{"10.255.255.255:1", true},
		{"172.16.0.1:1", true},
		{"172.31.255.255:1", true},
		{"172.32.0.1:1", false},
		{"172.15.255.255:1", false},
		{"192.168.1.10:1", true},
		{"192.169.0.1:1", false},
		{"169.254.1.1:1", true},
		{"100.64.0.1:1", true},
		{"100.127.255.255:1", true},
		{"100.128.0.1:1", false},
		{"100.63.255.255:1", false},
		{"8.8.8.8:53", false},
		{"203.0.113.9:1", false},
		{"[fd00::1]:1", true},
		{"[fc00::1]:1", true},
		{"[fe80::1]:1", true},
		{"[fe80::1%eth0]:1", true},
		{"[fd7a:115c:a1e0::1]:1", true},
		{"[2001:db8::1]:1", false},
		{"[2606:4700::1111]:443", false},
		{"[::ffff:10.0.0.1]:1", true},
		{"[::ffff:127.0.0.1]:1", true},
		{"[::ffff:100.64.0.1]:1", true},
		{"[::ffff:8.8.8.8]:1", false},
		{"10.0.0.1", true}, // no port
		{"", false},
		{"garbage", false},
		{"@", false}, // unix socket
	}
	for _, tt := range tests {
		t.Run(tt.remote, func(t *testing.T) {
			p := NewNetworkPolicy(true, nil)
			r := httptest.NewRequest(http.MethodGet, "/ws", nil)
			r.RemoteAddr = tt.remote
			if got := p.Allowed(r); got != tt.want {
				t.Fatalf("Allowed(%q) in lockdown: got %v, want %v", tt.remote, got, tt.want)
			}
			p.SetLockdown(false)
			if !p.Allowed(r) {
				t.Fatalf("Allowed(%q) without lockdown: got false, want true", tt.remote)
			}
		})
	}
}

func TestLockdownToggle(t *testing.T) {
	p := NewNetworkPolicy(false, nil)
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "8.8.8.8:1"
	steps := []struct {
		set  bool
		want bool
	}{{true, false}, {false, true}, {true, false}}
	for i, s := range steps {
		p.SetLockdown(s.set)
		if got := p.Lockdown(); got != s.set {
			t.Fatalf("step %d: got Lockdown %v, want %v", i, got, s.set)
		}
		if got := p.Allowed(r); got != s.want {
			t.Fatalf("step %d: got Allowed %v, want %v", i, got, s.want)
		}
	}
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24"), netip.MustParsePrefix("fd00::/64")}
	tests := []struct {
		name   string
		remote string
		xff    []string
		want   string // "" for the zero Addr
	}{
		{"direct", "203.0.113.5:1", nil, "203.0.113.5"},
		{"xff ignored from untrusted", "203.0.113.5:1", []string{"10.0.0.7"}, "203.0.113.5"},
		{"xff spoofed loopback from untrusted", "8.8.8.8:1", []string{"127.0.0.1"}, "8.8.8.8"},
		{"trusted proxy without xff", "10.0.0.2:1", nil, "10.0.0.2"},
		{"trusted proxy single hop", "10.0.0.2:1", []string{"198.51.100.4"}, "198.51.100.4"},
		{"rightmost untrusted hop", "10.0.0.2:1", []string{"127.0.0.1, 198.51.100.4"}, "198.51.100.4"},
		{"skips trusted hops", "10.0.0.2:1", []string{"1.1.1.1, 198.51.100.4, 10.0.0.3"}, "198.51.100.4"},
		{"several headers", "10.0.0.2:1", []string{"1.1.1.1", "198.51.100.4, 10.0.0.3"}, "198.51.100.4"},
		{"all trusted gives leftmost", "10.0.0.2:1", []string{"10.0.0.9, 10.0.0.3"}, "10.0.0.9"},
		{"hop with port", "10.0.0.2:1", []string{"198.51.100.4:5555"}, "198.51.100.4"},
		{"ipv6 hop", "10.0.0.2:1", []string{"2001:db8::1"}, "2001:db8::1"},
		{"bracketed ipv6 hop with port", "10.0.0.2:1", []string{"[2001:db8::1]:80"}, "2001:db8::1"},
		{"mapped hop", "10.0.0.2:1", []string{"::ffff:198.51.100.4"}, "198.51.100.4"},
		{"trusted ipv6 proxy", "[fd00::5]:1", []string{"198.51.100.4"}, "198.51.100.4"},
		{"mapped trusted proxy", "[::ffff:10.0.0.2]:1", []string{"198.51.100.4"}, "198.51.100.4"},
		{"garbage hop", "10.0.0.2:1", []string{"unknown"}, ""},
		{"garbage left of real client is ignored", "10.0.0.2:1", []string{"garbage, 198.51.100.4"}, "198.51.100.4"},
		{"empty entries skipped", "10.0.0.2:1", []string{" , 198.51.100.4 ,"}, "198.51.100.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewNetworkPolicy(false, trusted)
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			got := p.ClientAddr(r)
			if tt.want == "" {
				if got.IsValid() {
					t.Fatalf("got %v, want the zero Addr", got)
				}
				return
			}
			if got != netip.MustParseAddr(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLockdownThroughProxy(t *testing.T) {
	tests := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     string
		want    bool
	}{
		{"lan client through trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "127.0.0.1:1", "192.168.1.5", true},
		{"internet client through trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "127.0.0.1:1", "8.8.8.8", false},
		{"internet client spoofing lan through trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "127.0.0.1:1", "192.168.1.5, 8.8.8.8", false},
		{"internet client spoofing xff directly", nil, "8.8.8.8:1", "127.0.0.1", false},
		{"garbage xff from trusted proxy", []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, "127.0.0.1:1", "nonsense", false},
		{"untrusted lan proxy with xff", nil, "192.168.1.1:1", "8.8.8.8", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewNetworkPolicy(true, tt.trusted)
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			r.Header.Set("X-Forwarded-For", tt.xff)
			if got := p.Allowed(r); got != tt.want {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestLockdownPersists: lockdown turned on at run time is recorded in the
// data directory and is on again for a policy that reads it; turning it
// off removes the record.
func TestLockdownPersists(t *testing.T) {
	dir := t.TempDir()
	p := NewNetworkPolicy(false, nil)
	if err := p.PersistLockdown(dir); err != nil || p.Lockdown() {
		t.Fatalf("fresh directory: lockdown %v, err %v; want off, nil", p.Lockdown(), err)
	}
	if err := p.SetLockdown(true); err != nil {
		t.Fatalf("SetLockdown(true): %v", err)
	}
	again := NewNetworkPolicy(false, nil)
	if err := again.PersistLockdown(dir); err != nil || !again.Lockdown() {
		t.Fatalf("after a restart: lockdown %v, err %v; want on, nil", again.Lockdown(), err)
	}
	if err := again.SetLockdown(false); err != nil {
		t.Fatalf("SetLockdown(false): %v", err)
	}
	third := NewNetworkPolicy(false, nil)
	if err := third.PersistLockdown(dir); err != nil || third.Lockdown() {
		t.Fatalf("after turning it off and a restart: lockdown %v, err %v; want off, nil", third.Lockdown(), err)
	}
	// Turning it on fails closed: on in memory even when it cannot be recorded.
	bad := NewNetworkPolicy(false, nil)
	if err := bad.PersistLockdown(filepath.Join(dir, "missing", "dir")); err != nil {
		t.Fatal(err)
	}
	if err := bad.SetLockdown(true); err == nil || !bad.Lockdown() {
		t.Fatalf("unrecordable SetLockdown(true): err %v, lockdown %v; want an error and on", err, bad.Lockdown())
	}
}
