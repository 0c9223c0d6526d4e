package auth

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/junctionhq/junction/protocol"
)

// FuzzCredentialFromRequest feeds attacker-written Authorization,
// Sec-WebSocket-Protocol (several headers, one per line) and query strings
// to CredentialFromRequest. A credential it returns must come from the
// source it names, from the first source that holds one (header, then
// subprotocol, then query), be non-empty without spaces at either end, and
// never appear in the credential's String, %#v or log value.
func FuzzCredentialFromRequest(f *testing.F) {
	for _, s := range [][3]string{
		{"Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln", "", ""},
		{"bearer  jk_abc.def ", "", ""},
		{"Basic YWxhZGRpbjpvcGVuc2VzYW1l", "junction.v1, junction.bearer.tok123", "token=q"},
		{"Bearer a b", "junction.bearer.tok123\njunction.v1", ""},
		{"", "junction.bearer.tok123", "token=%20q%20&x=1"},
		{"", "junction.v1,junction.bearer.", "token=a&token=b"},
		{"", "", "token=%zz"},
		{"Bearer\ttok", "junction.v1, junction.bearer.a, junction.bearer.b", "token="},
	} {
		f.Add(s[0], s[1], s[2])
	}
	extract := func(authz, protos, query string) (Credential, bool, *http.Request) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/ws", RawQuery: query}}
		if authz != "" {
			r.Header.Set("Authorization", authz)
		}
		for p := range strings.SplitSeq(protos, "\n") {
			if p != "" {
				r.Header.Add("Sec-WebSocket-Protocol", p)
			}
		}
		c, ok := CredentialFromRequest(r)
		return c, ok, r
	}
	f.Fuzz(func(t *testing.T, authz, protos, query string) {
		c, ok, r := extract(authz, protos, query)
		if !ok {
			if c != (Credential{}) {
				t.Fatalf("no credential, but got %#v", c.Value)
			}
			return
		}
		if c.Value == "" || c.Value != strings.TrimSpace(c.Value) {
			t.Fatalf("credential %q: empty or padded", c.Value)
		}
		// Each source alone, then the preference among them.
		_, fromHeader, _ := extract(authz, "", "")
		_, fromProto, _ := extract("", protos, "")
		want := SourceQuery
		switch {
		case fromHeader:
			want = SourceHeader
		case fromProto:
			want = SourceSubprotocol
		}
		if c.Source != want {
			t.Fatalf("source %q, want %q", c.Source, want)
		}
		switch c.Source {
		case SourceHeader:
			if strings.ContainsAny(c.Value, " \t") || !strings.Contains(authz, c.Value) {
				t.Fatalf("header credential %q not a token of %q", c.Value, authz)
			}
			// The canonical form gives it back.
			if v, ok := bearer("Bearer " + c.Value); !ok || v != c.Value {
				t.Fatalf("Bearer %q gives %q, %v", c.Value, v, ok)
			}
		case SourceSubprotocol:
			offers := slices.Collect(subprotocols(r))
			if !slices.Contains(offers, protocol.Subprotocol) || !slices.Contains(offers, protocol.BearerSubprotocolPrefix+c.Value) {
				t.Fatalf("subprotocol credential %q not offered with %s in %q", c.Value, protocol.Subprotocol, offers)
			}
			if !OffersSubprotocol(r) {
				t.Fatalf("a subprotocol credential without OffersSubprotocol")
			}
		case SourceQuery:
			if c.Value != strings.TrimSpace(r.URL.Query().Get("token")) {
				t.Fatalf("query credential %q, token parameter %q", c.Value, r.URL.Query().Get("token"))
			}
		}
		// Redaction, for values that cannot occur in the redacted text.
		if len(c.Value) >= 4 {
			var logs bytes.Buffer
			slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "cred", c)
			for _, s := range []string{c.String(), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), logs.String()} {
				if strings.Contains(s, c.Value) && !strings.Contains("credential("+c.Source+", redacted) REDACTED source value cred msg level INFO time", c.Value) {
					t.Fatalf("credential %q shows in %q", c.Value, s)
				}
			}
		}
	})
}

// FuzzClientAddr feeds attacker-written X-Forwarded-For headers (one per
// line) and peer addresses to NetworkPolicy.ClientAddr, with 10.0.0.0/8 and
// fd00::/8 as trusted proxies. The result must match a reference walk of
// the hops, be unmapped and zoneless, and not move when the client prepends
// hops of its own: only what trusted proxies appended is believed.
func FuzzClientAddr(f *testing.F) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	p := NewNetworkPolicy(true, trusted)
	for _, s := range [][2]string{
		{"10.0.0.1:443", "203.0.113.7"},
		{"10.0.0.1:443", "198.51.100.1, 203.0.113.7, 10.0.0.2"},
		{"10.0.0.1:443", "127.0.0.1\n203.0.113.7:5555"},
		{"[fd00::1]:443", "[2001:db8::1]:80, fd00::2"},
		{"10.0.0.1:443", "::ffff:192.168.1.9, 10.1.1.1"},
		{"10.0.0.1:443", "unknown, 10.0.0.3"},
		{"10.0.0.1:443", "fe80::1%eth0"},
		{"203.0.113.9:1", "127.0.0.1"},
		{"10.0.0.1:443", ", ,10.0.0.5,"},
		{"not an address", "127.0.0.1"},
		{"10.0.0.1:443", "[1.2.3.4]:80, 1.2.3.4:99999"},
		{"10.0.0.1:443", "[::1], [fe80::1%25eth0]:80"},
	} {
		f.Add(s[0], s[1])
	}
	request := func(remote, xff string) *http.Request {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		for h := range strings.SplitSeq(xff, "\n") {
			r.Header.Add("X-Forwarded-For", h)
		}
		return r
	}
	isTrusted := func(a netip.Addr) bool {
		return slices.ContainsFunc(trusted, func(p netip.Prefix) bool { return p.Contains(a) })
	}
	// parse is the reference hop parser: ip, ip:port or [ip]:port.
	parse := func(s string) netip.Addr {
		host := s
		if h, _, err := splitHostPortLoose(s); err == nil {
			host = h
		}
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
		if err != nil {
			return netip.Addr{}
		}
		return a.Unmap().WithZone("")
	}
	reference := func(remote, xff string) netip.Addr {
		peer := parse(remote)
		if !peer.IsValid() || !isTrusted(peer) {
			return peer
		}
		var hops []string
		for h := range strings.SplitSeq(xff, "\n") {
			for part := range strings.SplitSeq(h, ",") {
				if part = strings.TrimSpace(part); part != "" {
					hops = append(hops, part)
				}
			}
		}
		addr := peer
		for _, hop := range slices.Backward(hops) {
			a := parse(hop)
			if !a.IsValid() {
				return netip.Addr{}
			}
			addr = a
			if !isTrusted(a) {
				break
			}
		}
		return addr
	}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		got := p.ClientAddr(request(remote, xff))
		if got.IsValid() && (got.Is4In6() || got.Zone() != "") {
			t.Fatalf("ClientAddr %v: mapped or zoned", got)
		}
		// ClientAddr may be stricter than the reference (it refuses some
		// malformed forms the loose reference reads, such as "[[::]:0"),
		// which can only make a request less trusted; it must never find an
		// address the reference does not, or another one.
		if want := reference(remote, xff); got != want && (got.IsValid() || !want.IsValid()) {
			t.Fatalf("ClientAddr(%q, X-Forwarded-For %q) = %v, reference %v", remote, xff, got, want)
		}
		if p.Allowed(request(remote, xff)) != LocalAddr(got) {
			t.Fatalf("Allowed disagrees with LocalAddr(%v) under lockdown", got)
		}
		// A client prepending a hop cannot change an address found among
		// the hops (an untrusted hop, or a malformed one).
		if got.IsValid() && isTrusted(got) || !strings.Contains(xff, ",") && strings.TrimSpace(xff) == "" {
			return
		}
		for _, spoof := range []string{"127.0.0.1", "192.168.0.1, ", "garbage"} {
			if again := p.ClientAddr(request(remote, spoof+", "+xff)); again != got {
				t.Fatalf("prepending %q to %q moved the client from %v to %v", spoof, xff, got, again)
			}
		}
	})
}

// splitHostPortLoose splits "host:port" and "[host]:port" with a numeric
// port, the forms a hop may take.
func splitHostPortLoose(s string) (string, string, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("no port")
	}
	host, port := s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") != strings.HasSuffix(host, "]") {
		return "", "", fmt.Errorf("brackets")
	}
	if strings.Contains(strings.Trim(host, "[]"), ":") && !strings.HasPrefix(host, "[") {
		return "", "", fmt.Errorf("an IPv6 address without brackets has no port")
	}
	if port == "" || len(port) > 5 || strings.Trim(port, "0123456789") != "" {
		return "", "", fmt.Errorf("port")
	}
	if n := atoiPort(port); n > 65535 {
		return "", "", fmt.Errorf("port range")
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), port, nil
}

func atoiPort(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
