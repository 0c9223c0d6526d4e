package web

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
)

// Rate-limit defaults (Config): well above what a normal client, or a
// normal office behind one address, asks for; the REST rates match a
// WebSocket connection's (hub.requests_per_second 1000, burst 2000), so a
// backend publishing over REST is not held to less than over a socket.
const (
	DefaultHandshakeRate  = 50
	DefaultHandshakeBurst = 200
	DefaultRESTRate       = 2000
	DefaultRESTBurst      = 4000
	DefaultAuthRate       = 10
	DefaultAuthBurst      = 40
	DefaultPrincipalRate  = 1000
	DefaultPrincipalBurst = 2000
)

// Limits that refuse a request: the reason label of
// junction_limit_refusals_total.
const (
	limitConnections     = hub.LimitConnections     // hub.max_connections
	limitUserConnections = hub.LimitUserConnections // hub.max_connections_per_user
	limitHandshakeRate   = "handshake_rate"         // web.handshake_rate per client address
	limitRESTRate        = "rest_rate"              // web.rest_rate per client address
	limitAuthRate        = "auth_rate"              // web.auth_rate per client address
	limitPrincipalRate   = "principal_rate"         // web.principal_rate per principal
)

var limitReasons = []string{limitConnections, limitUserConnections, limitHandshakeRate, limitRESTRate, limitAuthRate, limitPrincipalRate}

// limits are the edge's rate limiters, nil when disabled.
type limits struct {
	handshake *auth.Limiter // per client address, on GET /ws
	rest      *auth.Limiter // per client address, on /api/
	auth      *auth.Limiter // per client address, on the auth endpoints, besides rest
	principal *auth.Limiter // per principal, on authenticated REST requests
	refused   *prometheus.CounterVec
}

func newLimits(cfg Config, reg prometheus.Registerer) *limits {
	pick := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	l := &limits{
		handshake: auth.NewLimiter(float64(pick(cfg.HandshakeRate, DefaultHandshakeRate)), pick(cfg.HandshakeBurst, DefaultHandshakeBurst), 0),
		rest:      auth.NewLimiter(float64(pick(cfg.RESTRate, DefaultRESTRate)), pick(cfg.RESTBurst, DefaultRESTBurst), 0),
		auth:      auth.NewLimiter(float64(pick(cfg.AuthRate, DefaultAuthRate)), pick(cfg.AuthBurst, DefaultAuthBurst), 0),
		principal: auth.NewLimiter(float64(pick(cfg.PrincipalRate, DefaultPrincipalRate)), pick(cfg.PrincipalBurst, DefaultPrincipalBurst), 0),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "junction_limit_refusals_total",
			Help: "Handshakes and REST requests refused by a limit (connections, user_connections, handshake_rate, rest_rate, auth_rate, principal_rate).",
		}, []string{"reason"}),
	}
	for _, r := range limitReasons {
		l.refused.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(l.refused)
	}
	return l
}

// ValidateLimits reports a negative burst, naming its key.
func (c Config) ValidateLimits() error {
	for key, v := range map[string]int{"web.handshake_burst": c.HandshakeBurst, "web.rest_burst": c.RESTBurst,
		"web.auth_burst": c.AuthBurst, "web.principal_burst": c.PrincipalBurst} {
		if v < 0 {
			return fmt.Errorf("%s %d: want a positive number (or 0 for the default)", key, v)
		}
	}
	return nil
}

// addressKey is the key a client address is rate-limited under
// (auth.ClientKey: IPv6 per /64), and false for loopback, which is not
// limited by address: a local process is the operator's, and a reverse
// proxy on the same host that is not in web.trusted_proxies would
// otherwise put every client in one bucket.
func (s *Server) addressKey(r *http.Request) (string, bool) {
	a := s.deps.Network.ClientAddr(r)
	if a.IsValid() && a.IsLoopback() {
		return "", false
	}
	return auth.ClientKey(a), true
}

// rateLimited is the error of a request over a rate limit, counted.
func (s *Server) rateLimited(reason string, wait time.Duration, what string) *protocol.Error {
	s.limits.refused.WithLabelValues(reason).Inc()
	return &protocol.Error{Code: protocol.CodeRateLimited, Message: "too many " + what + "; retry later",
		RetryAfterMs: max(wait.Milliseconds(), 1)}
}

// isAuthPath reports whether path is one of the endpoints that take a
// credential or a secret rather than a token: they are limited more
// strictly (web.auth_rate) on top of web.rest_rate.
func isAuthPath(path string) bool {
	return strings.HasPrefix(path, "/api/v1/auth/") || path == "/api/v1/devices/pair"
}

// limitREST applies the per-address limits to a REST request: rest_rate,
// and auth_rate on the auth endpoints. It returns the refusal, or nil.
func (s *Server) limitREST(r *http.Request) *protocol.Error {
	if !strings.HasPrefix(r.URL.Path, "/api/") {
		return nil
	}
	key, ok := s.addressKey(r)
	if !ok {
		return nil
	}
	if wait, ok := s.limits.rest.Allow(key); !ok {
		return s.rateLimited(limitRESTRate, wait, "requests from this address")
	}
	if isAuthPath(r.URL.Path) {
		if wait, ok := s.limits.auth.Allow(key); !ok {
			return s.rateLimited(limitAuthRate, wait, "authentication requests from this address")
		}
	}
	return nil
}

// limitPrincipal applies web.principal_rate to an authenticated REST
// request. Principals with scope admin (server backends, minted by the
// operator) are not limited per principal: their traffic is the
// deployment's own (the per-address rate still applies off loopback).
func (s *Server) limitPrincipal(p *auth.Principal) *protocol.Error {
	if p.HasScope(auth.ScopeAdmin) {
		return nil
	}
	if wait, ok := s.limits.principal.Allow(principalKey(p)); !ok {
		return s.rateLimited(limitPrincipalRate, wait, "requests for this credential")
	}
	return nil
}

// principalKey is what web.principal_rate counts under: the user (all of
// its devices and tokens together), or the app of a key bound to no user,
// or the credential itself.
func principalKey(p *auth.Principal) string {
	switch {
	case p.UserID != "":
		return "u/" + p.UserID
	case p.AppID != "":
		return "a/" + p.AppID
	}
	return "t/" + p.TokenID
}

// limitHandshake applies web.handshake_rate to a WebSocket handshake.
func (s *Server) limitHandshake(r *http.Request) *protocol.Error {
	key, ok := s.addressKey(r)
	if !ok {
		return nil
	}
	if wait, ok := s.limits.handshake.Allow(key); !ok {
		return s.rateLimited(limitHandshakeRate, wait, "handshakes from this address")
	}
	return nil
}
