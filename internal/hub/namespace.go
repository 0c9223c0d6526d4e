package hub

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/junctionhq/junction/internal/auth"
	"github.com/junctionhq/junction/protocol"
)

// NamespaceConfig declares a channel namespace: the topics it covers, who may
// subscribe and publish, and the stream options of its topics.
//
// A topic is "namespace:rest". Pattern is the namespace name (letters,
// digits, '_' and '-'), a ':' and the rest of the topic, where {param}
// binds one or more characters other than ':' and a final '*' matches any
// non-empty rest. "session:{sessionId}" binds sessionId;
// "chat:{roomId}:thread:{threadId}" binds two parameters.
//
// Rules (Subscribe, Publish) are lists of alternatives; a principal may act
// when any alternative holds. An alternative is one or more terms joined by
// " & ", all of which must hold:
//
//	any              any authenticated principal
//	user={param}     the principal's user id equals the bound parameter
//	device={param}   the principal's device id equals the bound parameter
//	owner            the namespace's owner lookup (RegisterOwnerLookup) names the principal's user as the owner
//	scope=NAME       the principal holds scope NAME (admin implies every scope, write implies read)
//	none             nobody
//
// A principal with scope admin passes every rule (server backends).
//
// Four namespaces are built in and always present; a declared namespace
// with the same name overrides their options, and their rules when it
// declares rules, except admin, which may not be declared:
//
//	user:{userId}      subscribe: user={userId}                 publish: user={userId} & scope=write
//	device:{deviceId}  subscribe: device={deviceId}, owner      publish: device={deviceId} & scope=write, owner & scope=write
//	public:{name}      subscribe: any                           publish: scope=write
//	admin:{stream}     subscribe: scope=admin                   publish: nobody, admins included (the server publishes admin:stats)
//
// device: a device's own connection (its device id equals the parameter)
// may use its channel; so may the device's owner's other devices when an
// owner lookup is registered under the name "device" (cmd/junction
// registers account's, which returns the user owning the device). Without a lookup the owner
// alternative never holds.
type NamespaceConfig struct {
	Pattern   string   `yaml:"pattern" doc:"topic pattern, e.g. session:{sessionId}"`
	Subscribe []string `yaml:"subscribe" doc:"rules allowing a subscription (any holds)"`
	Publish   []string `yaml:"publish" doc:"rules allowing a publication (any holds)"`
	// Presence enables the presence set and channel.join/channel.leave events.
	Presence bool `yaml:"presence" doc:"keep a presence set and send join/leave events"`
	// HistorySize publications are kept for HistoryTTL after the last one,
	// for resume and channel.history. 0 keeps none (resume then always
	// answers recovered=false). HistoryTTL defaults to 10 minutes.
	HistorySize int           `yaml:"history_size" doc:"publications kept per topic for resume and history (default 0)"`
	HistoryTTL  time.Duration `yaml:"history_ttl" doc:"how long history is kept after the last publication (default 10m)"`
	// Snapshot names a SnapshotProvider registered with RegisterSnapshot.
	Snapshot string `yaml:"snapshot" doc:"name of the snapshot provider sent on subscribe"`
	// Owner names the OwnerLookup the "owner" rule uses; default: the
	// namespace name.
	Owner string `yaml:"owner" doc:"name of the owner lookup used by the owner rule (default: the namespace name)"`
}

// builtinNamespaces are always present; see NamespaceConfig.
func builtinNamespaces() []NamespaceConfig {
	return []NamespaceConfig{
		{Pattern: "user:{userId}", Subscribe: []string{"user={userId}"}, Publish: []string{"user={userId} & scope=write"}},
		{Pattern: "device:{deviceId}", Subscribe: []string{"device={deviceId}", "owner"}, Publish: []string{"device={deviceId} & scope=write", "owner & scope=write"}},
		{Pattern: "public:{name}", Subscribe: []string{"any"}, Publish: []string{"scope=write"}},
		adminNamespace(),
	}
}

// reservedNamespace is the built-in namespace a configuration may not
// declare: the server's admin streams (admin_stats.go), on which nobody
// publishes but the server, admins included.
const reservedNamespace = "admin"

// defaultHistoryTTL applies when a namespace keeps history without a TTL.
const defaultHistoryTTL = 10 * time.Minute

// Topic is a topic matched against its namespace, with its bound parameters.
type Topic struct {
	Name      string // the whole topic, "session:abc"
	Namespace string // "session"
	params    []string
}

// Param returns the value bound to the pattern parameter name, or "".
func (t Topic) Param(name string) string {
	for i := 0; i+1 < len(t.params); i += 2 {
		if t.params[i] == name {
			return t.params[i+1]
		}
	}
	return ""
}

// Params returns the bound parameters as a new map.
func (t Topic) Params() map[string]string {
	m := make(map[string]string, len(t.params)/2)
	for i := 0; i+1 < len(t.params); i += 2 {
		m[t.params[i]] = t.params[i+1]
	}
	return m
}

// OwnerLookup tells the "owner" rule who owns the resource a topic names
// (a session, a device). It is registered per namespace with
// RegisterOwnerLookup and must be safe for concurrent use.
type OwnerLookup interface {
	// Owner returns the user id owning the resource named by t's
	// parameters, or "" when there is no such resource (the rule then
	// fails with forbidden, never revealing whether the resource exists).
	Owner(ctx context.Context, t Topic) (userID string, err error)
}

// OwnerFunc adapts a function to OwnerLookup.
type OwnerFunc func(ctx context.Context, t Topic) (string, error)

// Owner implements OwnerLookup.
func (f OwnerFunc) Owner(ctx context.Context, t Topic) (string, error) { return f(ctx, t) }

// pattern is a parsed topic pattern.
type pattern struct {
	src  string
	name string   // namespace name, the literal before the first ':'
	lits []string // lits[i] precedes params[i]; len(lits) == len(params)+1
	// params[i] is a parameter name, or "*" for the trailing wildcard.
	params []string
}

// parsePattern parses "name:rest" (see NamespaceConfig).
func parsePattern(s string) (*pattern, error) {
	name, rest, ok := strings.Cut(s, ":")
	if !ok || name == "" {
		return nil, fmt.Errorf("pattern %q: want name:rest", s)
	}
	for i := 0; i < len(name); i++ {
		if !nameChar(name[i]) {
			return nil, fmt.Errorf("pattern %q: namespace name may hold only letters, digits, '_' and '-'", s)
		}
	}
	if rest == "" {
		return nil, fmt.Errorf("pattern %q: nothing after ':'", s)
	}
	p := &pattern{src: s, name: name}
	lit := name + ":"
	for i := 0; i < len(rest); {
		c := rest[i]
		switch {
		case c == '{':
			end := strings.IndexByte(rest[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("pattern %q: unclosed {", s)
			}
			pn := rest[i+1 : i+end]
			if pn == "" {
				return nil, fmt.Errorf("pattern %q: empty parameter name", s)
			}
			for j := 0; j < len(pn); j++ {
				if !nameChar(pn[j]) {
					return nil, fmt.Errorf("pattern %q: bad parameter name %q", s, pn)
				}
			}
			if len(p.params) > 0 && lit == "" {
				return nil, fmt.Errorf("pattern %q: parameters must be separated by literal text", s)
			}
			for _, q := range p.params {
				if q == pn {
					return nil, fmt.Errorf("pattern %q: parameter %q bound twice", s, pn)
				}
			}
			p.lits = append(p.lits, lit)
			p.params = append(p.params, pn)
			lit = ""
			i += end + 1
		case c == '*':
			if i != len(rest)-1 {
				return nil, fmt.Errorf("pattern %q: '*' must be last", s)
			}
			if len(p.params) > 0 && lit == "" {
				return nil, fmt.Errorf("pattern %q: '*' must follow literal text", s)
			}
			p.lits = append(p.lits, lit)
			p.params = append(p.params, "*")
			lit = ""
			i++
		case c == '}':
			return nil, fmt.Errorf("pattern %q: unexpected }", s)
		case topicChar(c):
			lit += string(c)
			i++
		default:
			return nil, fmt.Errorf("pattern %q: character %q is not allowed in topics", s, c)
		}
	}
	p.lits = append(p.lits, lit)
	return p, nil
}

// match reports whether topic matches p and returns the bound parameters as
// name, value pairs. A parameter binds the shortest non-empty run of
// characters other than ':' that lets the next literal follow.
func (p *pattern) match(topic string) ([]string, bool) {
	if !strings.HasPrefix(topic, p.lits[0]) {
		return nil, false
	}
	rest := topic[len(p.lits[0]):]
	var out []string
	for i, name := range p.params {
		next := p.lits[i+1]
		if name == "*" {
			if rest == "" {
				return nil, false
			}
			rest = ""
			break
		}
		var val string
		if next == "" {
			val, rest = rest, ""
		} else {
			j := strings.Index(rest[min(1, len(rest)):], next)
			if j < 0 {
				return nil, false
			}
			j++ // the search started at 1: a value is never empty
			val, rest = rest[:j], rest[j+len(next):]
		}
		if val == "" || strings.IndexByte(val, ':') >= 0 {
			return nil, false
		}
		out = append(out, name, val)
	}
	if len(p.params) == 0 {
		return nil, rest == ""
	}
	if rest != "" {
		return nil, false
	}
	return out, true
}

func nameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// topicChar reports whether c may appear in a topic: letters, digits and
// _ - . : @ = ~ +. '/' is excluded so that a topic is one URL path segment;
// '$' is reserved for the hub's internal topics.
func topicChar(c byte) bool {
	if nameChar(c) {
		return true
	}
	switch c {
	case '.', ':', '@', '=', '~', '+':
		return true
	}
	return false
}

// ValidateTopic checks a topic's syntax: 1 to protocol.MaxTopicLength bytes
// of allowed characters (see NamespaceConfig). Its error is a bad_request
// naming the field "topic".
func ValidateTopic(topic string) error {
	switch {
	case topic == "":
		return protocol.FieldError("topic", "required")
	case len(topic) > protocol.MaxTopicLength:
		return protocol.FieldError("topic", "longer than %d bytes", protocol.MaxTopicLength)
	}
	for i := 0; i < len(topic); i++ {
		if !topicChar(topic[i]) {
			return protocol.FieldError("topic", "character %q is not allowed (letters, digits and _ - . : @ = ~ +)", topic[i])
		}
	}
	return nil
}

// action is what a principal wants to do on a topic.
type action int

const (
	actSubscribe action = iota // subscribe, and read presence and history
	actPublish
)

// appScope is the scope an app principal needs for a.
func (a action) appScope() string {
	if a == actPublish {
		return auth.ScopeWrite
	}
	return auth.ScopeRead
}

func (a action) String() string {
	if a == actPublish {
		return "publish to"
	}
	return "subscribe to"
}

type termKind int

const (
	termAny termKind = iota
	termNone
	termUser
	termDevice
	termOwner
	termScope
)

type term struct {
	kind termKind
	arg  string // parameter name (user, device) or scope
}

// rule is one alternative: every term must hold.
type rule []term

func parseRule(s string, p *pattern) (rule, error) {
	var r rule
	for _, part := range strings.Split(s, "&") {
		part = strings.TrimSpace(part)
		key, val, hasVal := strings.Cut(part, "=")
		var t term
		switch key {
		case "any":
			t.kind = termAny
		case "none":
			t.kind = termNone
		case "owner":
			t.kind = termOwner
		case "user", "device":
			if !hasVal || len(val) < 3 || val[0] != '{' || val[len(val)-1] != '}' {
				return nil, fmt.Errorf("rule %q: want %s={param}", s, key)
			}
			t.arg = val[1 : len(val)-1]
			found := false
			for _, pn := range p.params {
				found = found || pn == t.arg
			}
			if !found {
				return nil, fmt.Errorf("rule %q: pattern %q binds no parameter %q", s, p.src, t.arg)
			}
			t.kind = termUser
			if key == "device" {
				t.kind = termDevice
			}
		case "scope":
			if val == "" {
				return nil, fmt.Errorf("rule %q: want scope=NAME", s)
			}
			t.kind, t.arg = termScope, val
		default:
			return nil, fmt.Errorf("rule %q: unknown term %q (any, none, owner, user={p}, device={p}, scope=NAME)", s, part)
		}
		if hasVal && (t.kind == termAny || t.kind == termNone || t.kind == termOwner) {
			return nil, fmt.Errorf("rule %q: %s takes no value", s, key)
		}
		r = append(r, t)
	}
	return r, nil
}

// namespace is a compiled NamespaceConfig.
type namespace struct {
	cfg       NamespaceConfig
	pat       *pattern
	subscribe []rule
	publish   []rule
	snapshot  SnapshotProvider // resolved at Start
	owner     OwnerLookup      // resolved at Start; nil when none registered
}

// compileNamespaces merges the declared namespaces over the built-in ones
// and compiles them, keyed by namespace name.
func compileNamespaces(declared []NamespaceConfig) (map[string]*namespace, error) {
	byName := map[string]NamespaceConfig{}
	var order []string
	for _, nc := range builtinNamespaces() {
		name, _, _ := strings.Cut(nc.Pattern, ":")
		byName[name] = nc
		order = append(order, name)
	}
	seen := map[string]bool{}
	for _, nc := range declared {
		name, _, _ := strings.Cut(nc.Pattern, ":")
		if seen[name] {
			return nil, fmt.Errorf("namespace %q declared twice", name)
		}
		seen[name] = true
		if name == reservedNamespace {
			return nil, fmt.Errorf("namespace %q is reserved for the server's admin streams", name)
		}
		if base, ok := byName[name]; ok {
			if nc.Subscribe == nil {
				nc.Subscribe = base.Subscribe
			}
			if nc.Publish == nil {
				nc.Publish = base.Publish
			}
		} else {
			order = append(order, name)
		}
		byName[name] = nc
	}
	out := make(map[string]*namespace, len(byName))
	for _, name := range order {
		nc := byName[name]
		ns, err := compileNamespace(nc)
		if err != nil {
			return nil, fmt.Errorf("namespace %q: %w", name, err)
		}
		out[ns.pat.name] = ns
	}
	return out, nil
}

func compileNamespace(nc NamespaceConfig) (*namespace, error) {
	pat, err := parsePattern(nc.Pattern)
	if err != nil {
		return nil, err
	}
	if nc.HistorySize < 0 || nc.HistoryTTL < 0 {
		return nil, errors.New("history_size and history_ttl must not be negative")
	}
	if nc.Snapshot == SnapshotRetained && nc.HistorySize == 0 {
		return nil, errors.New("snapshot retained needs history_size >= 1 (the last publication is read from history)")
	}
	if nc.HistorySize > 0 && nc.HistoryTTL == 0 {
		nc.HistoryTTL = defaultHistoryTTL
	}
	if nc.Owner == "" {
		nc.Owner = pat.name
	}
	ns := &namespace{cfg: nc, pat: pat}
	if len(nc.Subscribe) == 0 || len(nc.Publish) == 0 {
		return nil, errors.New("subscribe and publish rules are required (use none to allow nobody but admins)")
	}
	for _, s := range nc.Subscribe {
		r, err := parseRule(s, pat)
		if err != nil {
			return nil, err
		}
		ns.subscribe = append(ns.subscribe, r)
	}
	for _, s := range nc.Publish {
		r, err := parseRule(s, pat)
		if err != nil {
			return nil, err
		}
		ns.publish = append(ns.publish, r)
	}
	return ns, nil
}

// resolve validates a topic and finds its namespace: bad_request for bad
// syntax, not_found when no namespace matches.
func (cs *channels) resolve(topic string) (*namespace, Topic, error) {
	if err := ValidateTopic(topic); err != nil {
		return nil, Topic{}, err
	}
	name, _, ok := strings.Cut(topic, ":")
	nss := cs.namespaces
	if r := cs.reloaded.Load(); r != nil {
		nss = *r
	}
	ns := nss[name]
	if !ok || ns == nil {
		return nil, Topic{}, protocol.Errorf(protocol.CodeNotFound, "no namespace matches topic %q", topic)
	}
	params, ok := ns.pat.match(topic)
	if !ok {
		return nil, Topic{}, protocol.Errorf(protocol.CodeNotFound, "topic %q does not match the pattern %s", topic, ns.pat.src)
	}
	return ns, Topic{Name: topic, Namespace: name, params: params}, nil
}

// authorize checks that p may act on t: forbidden when no rule holds. An
// owner lookup failure is an internal error.
func (ns *namespace) authorize(ctx context.Context, p *auth.Principal, t Topic, a action) error {
	if p == nil {
		return protocol.Errorf(protocol.CodeUnauthorized, "not authenticated")
	}
	if a == actPublish && ns.pat.name == reservedNamespace {
		return protocol.Errorf(protocol.CodeForbidden, "only the server publishes to %q", t.Name)
	}
	if p.HasScope(auth.ScopeAdmin) {
		return nil
	}
	// An app acts only within the scopes it holds (acting for a user: those
	// the user granted), whatever the namespace's rules say: reading needs
	// read, publishing write. Fails closed.
	if p.AppID != "" && !p.HasScope(a.appScope()) {
		return protocol.Errorf(protocol.CodeForbidden, "not allowed to %s %q: the app does not hold scope %q", a, t.Name, a.appScope())
	}
	rules := ns.subscribe
	if a == actPublish {
		rules = ns.publish
	}
	owner, ownerLooked := "", false
	for _, r := range rules {
		ok := true
		for _, tm := range r {
			switch tm.kind {
			case termAny:
			case termNone:
				ok = false
			case termUser:
				ok = p.UserID != "" && p.UserID == t.Param(tm.arg)
			case termDevice:
				ok = p.DeviceID != "" && p.DeviceID == t.Param(tm.arg)
			case termScope:
				ok = p.HasScope(tm.arg)
			case termOwner:
				if ns.owner == nil || p.UserID == "" {
					ok = false
					break
				}
				if !ownerLooked {
					var err error
					owner, err = ns.owner.Owner(ctx, t)
					if err != nil {
						return fmt.Errorf("owner lookup for %s: %w", t.Name, err)
					}
					ownerLooked = true
				}
				ok = owner != "" && owner == p.UserID
			}
			if !ok {
				break
			}
		}
		if ok {
			return nil
		}
	}
	return protocol.Errorf(protocol.CodeForbidden, "not allowed to %s %q", a, t.Name)
}
