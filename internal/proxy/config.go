package proxy

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/delivery"
	"github.com/junctionhq/junction/internal/hub"
	"github.com/junctionhq/junction/protocol"
	"github.com/junctionhq/junction/webhook"
)

// Defaults of BackendConfig's zero fields.
const (
	DefaultTimeout          = 5 * time.Second
	DefaultMaxConcurrency   = 64
	DefaultBreakerThreshold = 5
	DefaultBreakerOpen      = 5 * time.Second
	DefaultBreakerMaxOpen   = time.Minute
	DefaultMaxResponseBytes = 1 << 20
	// BusyRetryAfter is the retryAfterMs of an unavailable error answered
	// because a backend's concurrency limit (and queue) is full.
	BusyRetryAfter = 250 * time.Millisecond
	// FailureRetryAfter is the retryAfterMs of an unavailable error answered
	// for a backend that timed out, could not be reached or failed (5xx),
	// unless it said otherwise (Retry-After, or its error's retryAfterMs).
	FailureRetryAfter = time.Second
)

// Config is the proxy section of the configuration: the backends and what
// goes to them. The whole section is reloadable (docs/proxy.md).
type Config struct {
	Backends   []BackendConfig `yaml:"backends" doc:"backends requests are forwarded to (file only)"`
	Methods    []MethodRoute   `yaml:"methods" doc:"method routes: a method name or prefix (chat.*) and its backend (file only)"`
	Namespaces []NamespaceHook `yaml:"namespaces" doc:"namespace hooks: the backends asked on subscribe and publish (file only)"`
	Connect    string          `yaml:"connect" doc:"name of the backend asked on every WebSocket connect, which may refuse it or attach info (default none)"`
}

// BackendConfig is one backend.
type BackendConfig struct {
	Name   string `yaml:"name"`   // letters, digits, '_' and '-'; the metrics' backend label
	URL    string `yaml:"url"`    // absolute http(s) URL every request is POSTed to
	Secret string `yaml:"secret"` // whsec_… Standard Webhooks secret the requests are signed with
	// Timeout bounds one request, from sending to the whole answer read;
	// default 5s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConcurrency requests run at once; default 64.
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxQueue requests may wait (at most Timeout) for one of them to end;
	// beyond, unavailable at once. Default 0: no queue.
	MaxQueue int `yaml:"max_queue"`
	// Retries is the number of extra attempts after a connect error, a
	// timeout, a 5xx or a 429, for backends whose requests are idempotent;
	// default 0 (one attempt).
	Retries int `yaml:"retries"`
	// The circuit breaker: after BreakerThreshold failures in a row
	// (connect error, timeout, 5xx, 429) requests answer unavailable at
	// once for BreakerOpen, then one probe goes; a failed probe doubles the
	// period up to BreakerMaxOpen. Defaults 5, 5s, 1m.
	BreakerThreshold int           `yaml:"breaker_threshold"`
	BreakerOpen      time.Duration `yaml:"breaker_open"`
	BreakerMaxOpen   time.Duration `yaml:"breaker_max_open"`
	// MaxResponseBytes bounds an answer's body; default 1 MiB.
	MaxResponseBytes int `yaml:"max_response_bytes"`
}

func (b BackendConfig) withDefaults() BackendConfig {
	if b.Timeout <= 0 {
		b.Timeout = DefaultTimeout
	}
	if b.MaxConcurrency <= 0 {
		b.MaxConcurrency = DefaultMaxConcurrency
	}
	if b.BreakerThreshold <= 0 {
		b.BreakerThreshold = DefaultBreakerThreshold
	}
	if b.BreakerOpen <= 0 {
		b.BreakerOpen = DefaultBreakerOpen
	}
	if b.BreakerMaxOpen <= 0 {
		b.BreakerMaxOpen = max(DefaultBreakerMaxOpen, b.BreakerOpen)
	}
	if b.MaxResponseBytes <= 0 {
		b.MaxResponseBytes = DefaultMaxResponseBytes
	}
	return b
}

// MethodRoute sends the requests of one method, or of every method with a
// prefix, to a backend.
type MethodRoute struct {
	// Method is a method name ("billing.refund") or a prefix ending in
	// ".*" ("chat.*").
	Method  string `yaml:"method"`
	Backend string `yaml:"backend"`
	// Scope the caller needs; default "authenticated" (any principal).
	Scope string `yaml:"scope"`
}

// NamespaceHook names the backends asked when a client subscribes to, or
// publishes on, a topic of a namespace, after the namespace's rules
// allowed it.
type NamespaceHook struct {
	Namespace string `yaml:"namespace"` // the namespace name ("chat" for chat:{room})
	Subscribe string `yaml:"subscribe"` // backend asked on subscribe: allow or refuse
	Publish   string `yaml:"publish"`   // backend asked on publish: allow, refuse or rewrite the data
}

// Validate checks the section without a hub: names, URLs, secrets, limits,
// and that every route and hook names a declared backend.
func (c Config) Validate() error {
	_, err := compile(c, nil)
	return err
}

// state is a compiled Config: immutable once built.
type state struct {
	backends  map[string]*backend
	exact     map[string]*route
	prefixes  []*route // longest prefix first
	subscribe map[string]*backend
	publish   map[string]*backend
	connect   *backend
	specs     []protocol.ProxiedSpec
}

// route is one compiled MethodRoute, with the hub method that serves it.
type route struct {
	spec    protocol.ProxiedSpec
	prefix  string // "chat." for "chat.*", "" for an exact name
	backend *backend
	method  *hub.Method // set by Proxy.build
}

// compile validates c and builds its state; reserved, when not nil,
// reports the methods of the hub's table, which no route may cover. prev
// is the running state: a backend whose settings did not change keeps its
// concurrency slots.
func compile(c Config, reserved func() []string, prev ...*state) (*state, error) {
	st := &state{backends: map[string]*backend{}, exact: map[string]*route{},
		subscribe: map[string]*backend{}, publish: map[string]*backend{}}
	for i, bc := range c.Backends {
		where := fmt.Sprintf("proxy.backends[%d]", i)
		if bc.Name == "" || !validName(bc.Name) {
			return nil, fmt.Errorf("%s: name %q: want letters, digits, '_' and '-'", where, bc.Name)
		}
		where = fmt.Sprintf("proxy backend %q", bc.Name)
		if st.backends[bc.Name] != nil {
			return nil, fmt.Errorf("%s declared twice", where)
		}
		u, err := url.Parse(bc.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return nil, fmt.Errorf("%s: url %q: want an absolute http(s) URL without user info", where, bc.URL)
		}
		secret, err := webhook.ParseSecret(bc.Secret)
		if err != nil {
			return nil, fmt.Errorf("%s: secret: want a whsec_ secret (junction prints one with 'openssl rand -base64 32' prefixed by whsec_): %w", where, err)
		}
		for name, v := range map[string]int{"max_concurrency": bc.MaxConcurrency, "max_queue": bc.MaxQueue, "retries": bc.Retries,
			"breaker_threshold": bc.BreakerThreshold, "max_response_bytes": bc.MaxResponseBytes} {
			if v < 0 {
				return nil, fmt.Errorf("%s: %s %d: must not be negative", where, name, v)
			}
		}
		for name, v := range map[string]time.Duration{"timeout": bc.Timeout, "breaker_open": bc.BreakerOpen, "breaker_max_open": bc.BreakerMaxOpen} {
			if v < 0 {
				return nil, fmt.Errorf("%s: %s %v: must not be negative", where, name, v)
			}
		}
		if bc.Retries > 10 {
			return nil, fmt.Errorf("%s: retries %d: at most 10", where, bc.Retries)
		}
		bc = bc.withDefaults()
		var b *backend
		if len(prev) > 0 && prev[0] != nil {
			if old := prev[0].backends[bc.Name]; old != nil && old.cfg == bc {
				b = old
			}
		}
		if b == nil {
			b = newBackend(bc, secret)
		}
		st.backends[bc.Name] = b
	}
	lookup := func(what, name string) (*backend, error) {
		b := st.backends[name]
		if b == nil {
			return nil, fmt.Errorf("%s: no backend %q declared in proxy.backends", what, name)
		}
		return b, nil
	}
	var table []string
	if reserved != nil {
		table = reserved()
	}
	for i, rc := range c.Methods {
		what := fmt.Sprintf("proxy.methods[%d] (%s)", i, rc.Method)
		b, err := lookup(what, rc.Backend)
		if err != nil {
			return nil, err
		}
		if rc.Scope == "" {
			rc.Scope = hub.ScopeAuthenticated
		}
		r := &route{spec: protocol.ProxiedSpec{Method: rc.Method, Scope: rc.Scope}, backend: b}
		name, isPrefix := strings.CutSuffix(rc.Method, "*")
		if isPrefix {
			if !strings.HasSuffix(name, ".") || !validMethod(strings.TrimSuffix(name, ".")) {
				return nil, fmt.Errorf("%s: a prefix route is NAME.* (letters, digits, '_', '-' and '.'), as chat.*", what)
			}
			r.prefix = name
		} else if !validMethod(name) {
			return nil, fmt.Errorf("%s: want a method name (letters, digits, '_', '-' and '.') or a prefix NAME.*", what)
		}
		for _, m := range table {
			if (isPrefix && strings.HasPrefix(m, r.prefix)) || (!isPrefix && m == name) {
				return nil, fmt.Errorf("%s: covers the server's own method %q (routes serve only methods the server does not have)", what, m)
			}
		}
		for _, o := range st.prefixes {
			if o.prefix == r.prefix && isPrefix {
				return nil, fmt.Errorf("%s: route declared twice", what)
			}
		}
		if !isPrefix {
			if st.exact[name] != nil {
				return nil, fmt.Errorf("%s: route declared twice", what)
			}
			st.exact[name] = r
		} else {
			st.prefixes = append(st.prefixes, r)
		}
		st.specs = append(st.specs, r.spec)
	}
	slices.SortStableFunc(st.prefixes, func(a, b *route) int { return len(b.prefix) - len(a.prefix) })
	for i, hc := range c.Namespaces {
		what := fmt.Sprintf("proxy.namespaces[%d] (%s)", i, hc.Namespace)
		if !validName(hc.Namespace) {
			return nil, fmt.Errorf("%s: namespace: want the namespace's name (letters, digits, '_' and '-')", what)
		}
		if hc.Subscribe == "" && hc.Publish == "" {
			return nil, fmt.Errorf("%s: names no backend for subscribe or publish", what)
		}
		if _, dup := st.subscribe[hc.Namespace]; dup {
			return nil, fmt.Errorf("%s: namespace hooked twice", what)
		}
		if _, dup := st.publish[hc.Namespace]; dup {
			return nil, fmt.Errorf("%s: namespace hooked twice", what)
		}
		if hc.Subscribe != "" {
			b, err := lookup(what+" subscribe", hc.Subscribe)
			if err != nil {
				return nil, err
			}
			st.subscribe[hc.Namespace] = b
		}
		if hc.Publish != "" {
			b, err := lookup(what+" publish", hc.Publish)
			if err != nil {
				return nil, err
			}
			st.publish[hc.Namespace] = b
		}
	}
	if c.Connect != "" {
		b, err := lookup("proxy.connect", c.Connect)
		if err != nil {
			return nil, err
		}
		st.connect = b
	}
	return st, nil
}

// target is the delivery target of a backend: operator-configured, so it
// may be on loopback or a private network (Internal).
func (b *backend) target() delivery.Target {
	c := b.cfg
	return delivery.Target{
		ID: c.Name, URL: c.URL, Secrets: []webhook.Secret{b.secret}, Internal: true,
		Policy: delivery.Policy{
			Timeout:     c.Timeout,
			Budget:      time.Duration(c.Retries+1)*c.Timeout + time.Duration(c.Retries)*time.Second,
			MaxAttempts: c.Retries + 1,
			BaseDelay:   100 * time.Millisecond, MaxDelay: time.Second,
			BreakerThreshold: c.BreakerThreshold, BreakerOpen: c.BreakerOpen, BreakerMaxOpen: c.BreakerMaxOpen,
			WhenOpen: delivery.OpenFailFast,
		},
	}
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func validMethod(s string) bool {
	if s == "" || len(s) > protocol.MaxMethodLength || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if !validName(part) {
			return false
		}
	}
	return true
}
