package hub

import (
	"strings"
	"testing"
)

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, topic string
		want           map[string]string // nil: no match
	}{
		{"user:{userId}", "user:alice", map[string]string{"userId": "alice"}},
		{"user:{userId}", "user:", nil},
		{"user:{userId}", "user:a:b", nil},
		{"user:{userId}", "users:a", nil},
		{"chat:{room}:thread:{thread}", "chat:r1:thread:t9", map[string]string{"room": "r1", "thread": "t9"}},
		{"chat:{room}:thread:{thread}", "chat:r1:thread:", nil},
		{"chat:{room}:thread:{thread}", "chat::thread:t", nil},
		{"chat:{room}-{part}", "chat:a-b-c", map[string]string{"room": "a", "part": "b-c"}},
		{"public:*", "public:a:b", map[string]string{}},
		{"public:*", "public:", nil},
		{"lobby:main", "lobby:main", map[string]string{}},
		{"lobby:main", "lobby:mainx", nil},
		{"x:pre{id}", "x:pre42", map[string]string{"id": "42"}},
		{"x:pre{id}", "x:pre", nil},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.topic, func(t *testing.T) {
			p, err := parsePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			params, ok := p.match(tt.topic)
			if ok != (tt.want != nil) {
				t.Fatalf("got match %v, want %v", ok, tt.want != nil)
			}
			tp := Topic{params: params}
			for k, v := range tt.want {
				if got := tp.Param(k); got != v {
					t.Fatalf("got %s=%q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestPatternErrors(t *testing.T) {
	for _, s := range []string{"", "user", ":x", "us er:{x}", "user:", "user:{", "user:{}", "user:{a b}", "user:{a}{b}", "user:*x", "user:}", "user:{a}:{a}", "user:a/b", "user:{a}*"} {
		if _, err := parsePattern(s); err == nil {
			t.Errorf("parsePattern(%q): got nil error, want one", s)
		}
	}
}

func TestNamespaceConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		ns   NamespaceConfig
		want string
	}{
		{"unknown rule", NamespaceConfig{Pattern: "a:{x}", Subscribe: []string{"everyone"}, Publish: []string{"none"}}, "unknown term"},
		{"unbound param", NamespaceConfig{Pattern: "a:{x}", Subscribe: []string{"user={y}"}, Publish: []string{"none"}}, "binds no parameter"},
		{"no rules", NamespaceConfig{Pattern: "a:{x}"}, "rules are required"},
		{"negative history", NamespaceConfig{Pattern: "a:{x}", Subscribe: []string{"any"}, Publish: []string{"any"}, HistorySize: -1}, "negative"},
		{"scope without name", NamespaceConfig{Pattern: "a:{x}", Subscribe: []string{"scope="}, Publish: []string{"any"}}, "scope=NAME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := compileNamespaces([]NamespaceConfig{tt.ns})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := compileNamespaces([]NamespaceConfig{{Pattern: "user:{userId}", Presence: true}}); err != nil {
		t.Fatalf("overriding a built-in's options: %v", err)
	}
	if _, err := compileNamespaces([]NamespaceConfig{{Pattern: "a:{x}", Subscribe: []string{"any"}, Publish: []string{"any"}}, {Pattern: "a:{y}", Subscribe: []string{"any"}, Publish: []string{"any"}}}); err == nil {
		t.Fatal("got nil error for a namespace declared twice")
	}
}

// FuzzTopicPattern checks that the parser and the matcher never panic, that
// a match binds non-empty values without ':' and that substituting the bound
// values back into the pattern gives the topic.
func FuzzTopicPattern(f *testing.F) {
	seeds := [][2]string{
		{"user:{userId}", "user:alice"},
		{"session:{sessionId}", "session:s-1"},
		{"chat:{room}:thread:{thread}", "chat:r:thread:t"},
		{"chat:{room}-{part}", "chat:a-b-c"},
		{"public:*", "public:x:y"},
		{"lobby:main", "lobby:main"},
		{"x:{a}.{b}", "x:1.2.3"},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pat, topic string) {
		p, err := parsePattern(pat)
		if err != nil {
			return
		}
		params, ok := p.match(topic)
		if !ok {
			return
		}
		var b strings.Builder
		for i, name := range p.params {
			b.WriteString(p.lits[i])
			if name == "*" {
				b.WriteString(topic[b.Len():])
				continue
			}
			v := Topic{params: params}.Param(name)
			if v == "" || strings.Contains(v, ":") {
				t.Fatalf("pattern %q topic %q: bad value %q for %s", pat, topic, v, name)
			}
			b.WriteString(v)
		}
		b.WriteString(p.lits[len(p.lits)-1])
		if b.String() != topic {
			t.Fatalf("pattern %q topic %q: rebuilt %q", pat, topic, b.String())
		}
	})
}
