package auth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
)

// OriginPolicy is the browser Origin check that guards WebSocket upgrades and
// cookie-less cross-site calls. A request without an Origin header is allowed
// (it does not come from a browser); a same-origin request (the Origin's
// host:port equals the request's Host) is allowed when the Host names this
// server (see KnownHost); any other Origin must match an entry of the
// allow-list. OriginPolicy is immutable and safe for concurrent use.
//
// Same-origin alone is not enough: with DNS rebinding a hostile page at
// http://evil.example:7700 gets evil.example resolved to this server, and
// its requests carry Host: evil.example:7700 and Origin:
// http://evil.example:7700, which agree. Only a Host the server knows as
// its own makes the two agreeing mean anything.
type OriginPolicy struct {
	any      bool            // "*" was listed
	exact    map[string]bool // "scheme://host:port", normalized
	wild     []originEntry   // "scheme://*.suffix:port"
	hosts    map[string]bool // host names (lower case) same-origin trusts besides loopback and addresses
	hostWild []string        // ".suffix" of the "*.suffix" entries of hosts
}

// originEntry is a normalized origin; for a wildcard entry host is the
// suffix without the leading "*." .
type originEntry struct {
	scheme, host, port string
}

// NewOriginPolicy returns a policy allowing the listed origins besides same
// origin. An entry is "*" (any origin), an exact origin such as
// "https://app.example.com" or "http://localhost:3000", or a wildcard such
// as "https://*.example.com", which matches every subdomain of example.com
// at any depth but not example.com itself. Entries are case-insensitive; a
// default port (80 for http, 443 for https) may be written or omitted.
// Entries with a path, query, fragment or user info are rejected.
//
// hosts are the host names that name this server (web.public_hosts and the
// listen address's host): a name such as "gw.example.com", or "*.example.com"
// for every subdomain; an IP address, "localhost" and names under
// ".localhost" are always known (CheckHostName says what is accepted).
func NewOriginPolicy(allowed []string, hosts ...string) (*OriginPolicy, error) {
	o := &OriginPolicy{exact: make(map[string]bool), hosts: make(map[string]bool)}
	for _, h := range hosts {
		if err := CheckHostName(h); err != nil {
			return nil, fmt.Errorf("origin policy: host %q: %w", h, err)
		}
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if suffix, ok := strings.CutPrefix(h, "*"); ok {
			o.hostWild = append(o.hostWild, suffix)
			continue
		}
		o.hosts[h] = true
	}
	for _, raw := range allowed {
		s := strings.TrimSpace(raw)
		if s == "*" {
			o.any = true
			continue
		}
		e, wildcard, err := parseOrigin(s, true)
		if err != nil {
			return nil, fmt.Errorf("origin policy: entry %q: %w", raw, err)
		}
		if wildcard {
			o.wild = append(o.wild, e)
		} else {
			o.exact[e.String()] = true
		}
	}
	return o, nil
}

func (e originEntry) String() string {
	return e.scheme + "://" + net.JoinHostPort(e.host, e.port)
}

// parseOrigin parses and normalizes a serialized origin
// ("scheme://host[:port]"). When allowWildcard is set the host may start with
// "*." and wildcard reports it.
func parseOrigin(s string, allowWildcard bool) (e originEntry, wildcard bool, err error) {
	if s == "" {
		return e, false, errors.New("empty")
	}
	host := s
	if allowWildcard {
		// url.Parse refuses '*' in a host; take the wildcard off first.
		if scheme, rest, ok := strings.Cut(s, "://*."); ok {
			wildcard = true
			host = scheme + "://" + rest
		}
	}
	u, err := url.Parse(host)
	if err != nil {
		return e, false, fmt.Errorf("parse: %w", err)
	}
	switch {
	case u.Scheme == "" || u.Host == "":
		return e, false, errors.New("want scheme://host[:port]")
	case u.User != nil:
		return e, false, errors.New("user info not allowed")
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "", u.Opaque != "":
		return e, false, errors.New("path, query or fragment not allowed")
	}
	e.scheme = strings.ToLower(u.Scheme)
	e.host = strings.ToLower(u.Hostname())
	e.port = u.Port()
	if e.host == "" || strings.Contains(e.host, "*") {
		return e, false, errors.New("bad host")
	}
	if strings.HasSuffix(u.Host, ":") {
		return e, false, errors.New("empty port")
	}
	if e.port == "" {
		e.port = defaultPort(e.scheme)
	}
	return e, wildcard, nil
}

// defaultPort returns the port a scheme implies, or "" when it implies none.
func defaultPort(scheme string) string {
	switch scheme {
	case "http", "ws":
		return "80"
	case "https", "wss":
		return "443"
	}
	return ""
}

// Check returns nil when r may proceed and a *Failure with ReasonOrigin
// otherwise. Several Origin headers are refused.
func (o *OriginPolicy) Check(r *http.Request) error {
	values := r.Header.Values("Origin")
	switch {
	case len(values) == 0 || len(values) == 1 && values[0] == "":
		return nil
	case len(values) > 1:
		return fail(ReasonOrigin, errors.New("check origin: several origin headers"))
	case o.any:
		return nil
	}
	origin, wildcard, err := parseOrigin(values[0], false)
	if err != nil || wildcard {
		return fail(ReasonOrigin, fmt.Errorf("check origin: malformed origin %q", values[0]))
	}
	if sameHost(origin, r.Host) && o.KnownHost(origin.host) || o.exact[origin.String()] {
		return nil
	}
	for _, w := range o.wild {
		if origin.scheme == w.scheme && origin.port == w.port && strings.HasSuffix(origin.host, "."+w.host) {
			return nil
		}
	}
	return fail(ReasonOrigin, fmt.Errorf("check origin: %q is not allowed", values[0]))
}

// KnownHost reports whether host (a name or an address, without port or
// brackets) names this server for the same-origin check: an IP address (a
// page can only have it as its origin if it was served from it), "localhost"
// or a name under ".localhost" (RFC 6761: resolved to loopback, never by
// DNS), or one of the policy's hosts.
func (o *OriginPolicy) KnownHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "" {
		return false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || o.hosts[host] {
		return true
	}
	for _, suffix := range o.hostWild {
		if strings.HasSuffix(host, suffix) && len(host) > len(suffix) {
			return true
		}
	}
	return false
}

// CheckHostName reports whether h can name this server in web.public_hosts:
// a DNS name of letters, digits, hyphens and dots (labels of 1 to 63
// bytes, not starting or ending with a hyphen), optionally "*." followed by
// such a name, or an IP address. No scheme, port or path.
func CheckHostName(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	name := strings.TrimSuffix(strings.TrimPrefix(h, "*."), ".")
	if name == "" || len(name) > 253 {
		return errors.New("want a host name such as gw.example.com or *.example.com (no scheme, port or path)")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("want a host name such as gw.example.com or *.example.com (no scheme, port or path)")
		}
		for i := 0; i < len(label); i++ {
			c := label[i] | 0x20
			if !('a' <= c && c <= 'z' || '0' <= label[i] && label[i] <= '9' || label[i] == '-') {
				return errors.New("want a host name such as gw.example.com or *.example.com (no scheme, port or path)")
			}
		}
	}
	return nil
}

// sameHost reports whether origin names the request's Host. A Host without a
// port takes the origin scheme's default port, so that
// "https://example.com" matches Host "example.com" and "example.com:443".
func sameHost(origin originEntry, host string) bool {
	if host == "" {
		return false
	}
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = strings.Trim(host, "[]"), ""
	}
	if port == "" {
		port = defaultPort(origin.scheme)
	}
	return strings.EqualFold(h, origin.host) && port == origin.port
}
